"""Derived data: one subpackage per service (``candles``, ``dom``, ``sentiment``), the book
and sentiment services on ``PerSymbolService`` (``base.py``), and ``retention``, which
deletes old rows once they are aggregated.

The ingestion names below (``ingest_ticks``, ``write_dom``, ``IngestReport``, ...) moved to
``market_data_services.ingest`` (issue 11); they are re-exported here so that imports
written before still work. New code imports them from ``market_data_services.ingest``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_services._lazy import lazy_exports

if TYPE_CHECKING:
    from market_data_services.aggregators.base import PerSymbolService
    from market_data_services.aggregators.candles import (
        PRICE_BASES,
        TF_RULES,
        TIMEFRAMES,
        AggregatorService,
        BackfillProgress,
        PassReport,
        SettingsMismatchError,
    )
    from market_data_services.aggregators.dom import DOMAggregatorService
    from market_data_services.aggregators.retention import RetentionService
    from market_data_services.aggregators.sentiment import (
        ContrarianThresholds,
        SentimentAggregatorService,
    )
    from market_data_services.ingest.dom import (
        BookSnapshot,
        NotABookFileError,
        ingest_dom,
        write_dom,
    )
    from market_data_services.ingest.sentiment import (
        NotASentimentFileError,
        SentimentReading,
        ingest_sentiment,
        write_sentiment,
    )
    from market_data_services.ingest.ticks import (
        REJECT_REASONS,
        IngestReport,
        NotATickFileError,
        Rejection,
        Tick,
        ingest_ticks,
        write_ticks,
    )

#: public name -> the module it comes from, imported on first use (PEP 562): a command
#: that needs one service (mds backfill --kind candles) does not import the others, nor
#: the ingestion they re-export.
_EXPORTS = {
    "PerSymbolService": "market_data_services.aggregators.base",
    "PRICE_BASES": "market_data_services.aggregators.candles",
    "TF_RULES": "market_data_services.aggregators.candles",
    "TIMEFRAMES": "market_data_services.aggregators.candles",
    "AggregatorService": "market_data_services.aggregators.candles",
    "BackfillProgress": "market_data_services.aggregators.candles",
    "PassReport": "market_data_services.aggregators.candles",
    "SettingsMismatchError": "market_data_services.aggregators.candles",
    "DOMAggregatorService": "market_data_services.aggregators.dom",
    "RetentionService": "market_data_services.aggregators.retention",
    "ContrarianThresholds": "market_data_services.aggregators.sentiment",
    "SentimentAggregatorService": "market_data_services.aggregators.sentiment",
    "BookSnapshot": "market_data_services.ingest.dom",
    "NotABookFileError": "market_data_services.ingest.dom",
    "ingest_dom": "market_data_services.ingest.dom",
    "write_dom": "market_data_services.ingest.dom",
    "NotASentimentFileError": "market_data_services.ingest.sentiment",
    "SentimentReading": "market_data_services.ingest.sentiment",
    "ingest_sentiment": "market_data_services.ingest.sentiment",
    "write_sentiment": "market_data_services.ingest.sentiment",
    "REJECT_REASONS": "market_data_services.ingest.ticks",
    "IngestReport": "market_data_services.ingest.ticks",
    "NotATickFileError": "market_data_services.ingest.ticks",
    "Rejection": "market_data_services.ingest.ticks",
    "Tick": "market_data_services.ingest.ticks",
    "ingest_ticks": "market_data_services.ingest.ticks",
    "write_ticks": "market_data_services.ingest.ticks",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "PRICE_BASES",
    "REJECT_REASONS",
    "TF_RULES",
    "TIMEFRAMES",
    "AggregatorService",
    "BackfillProgress",
    "BookSnapshot",
    "ContrarianThresholds",
    "DOMAggregatorService",
    "IngestReport",
    "NotABookFileError",
    "NotASentimentFileError",
    "NotATickFileError",
    "PassReport",
    "PerSymbolService",
    "Rejection",
    "RetentionService",
    "SentimentAggregatorService",
    "SentimentReading",
    "SettingsMismatchError",
    "Tick",
    "ingest_dom",
    "ingest_sentiment",
    "ingest_ticks",
    "write_dom",
    "write_sentiment",
    "write_ticks",
]
