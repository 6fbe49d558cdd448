"""Derived data: one subpackage per service (``candles``, ``dom``, ``sentiment``), the book
and sentiment services on ``PerSymbolService`` (``base.py``), and ``retention``, which
deletes old rows once they are aggregated.

The ingestion names below (``ingest_ticks``, ``write_dom``, ``IngestReport``, ...) moved to
``market_data_services.ingest`` (issue 11); they are re-exported here so that imports
written before still work. New code imports them from ``market_data_services.ingest``.
"""

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
from market_data_services.ingest.dom import BookSnapshot, NotABookFileError, ingest_dom, write_dom
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
