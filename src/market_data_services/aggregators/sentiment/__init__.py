"""Retail sentiment: ``SentimentAggregatorService`` turns readings into smoothed sentiment
and a contrarian signal.

The ingestion names below moved to ``market_data_services.ingest.sentiment`` (issue 11);
they are re-exported here so that imports written before still work. New code imports
them from ``market_data_services.ingest``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_services._lazy import lazy_exports

if TYPE_CHECKING:
    from market_data_services.aggregators.sentiment.service import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_HISTORY_MAX_READINGS,
        SERVICE_NAME,
        SETTING_KEY,
        SentimentAggregatorService,
        SettingsMismatchError,
        stored_sentiment_symbols,
    )
    from market_data_services.aggregators.sentiment.signal import ContrarianThresholds
    from market_data_services.ingest.sentiment import (
        DEFAULT_SUM_TOLERANCE,
        LAYOUTS,
        REJECT_REASONS,
        SENTIMENT_WRITE_LOCK_KEY,
        ImplausibleTimeError,
        NotASentimentFileError,
        SentimentFile,
        SentimentReading,
        ingest_sentiment,
        inspect_sentiment_files,
        sentiment_ingest_metrics,
        write_sentiment,
    )

#: public name -> the module it comes from, imported on first use (PEP 562): the service
#: module does not import the ingestion these names re-export.
_EXPORTS = {
    "DEFAULT_BATCH_SIZE": "market_data_services.aggregators.sentiment.service",
    "DEFAULT_HISTORY_MAX_READINGS": "market_data_services.aggregators.sentiment.service",
    "SERVICE_NAME": "market_data_services.aggregators.sentiment.service",
    "SETTING_KEY": "market_data_services.aggregators.sentiment.service",
    "ContrarianThresholds": "market_data_services.aggregators.sentiment.signal",
    "SentimentAggregatorService": "market_data_services.aggregators.sentiment.service",
    "SettingsMismatchError": "market_data_services.aggregators.sentiment.service",
    "stored_sentiment_symbols": "market_data_services.aggregators.sentiment.service",
    "DEFAULT_SUM_TOLERANCE": "market_data_services.ingest.sentiment",
    "LAYOUTS": "market_data_services.ingest.sentiment",
    "REJECT_REASONS": "market_data_services.ingest.sentiment",
    "SENTIMENT_WRITE_LOCK_KEY": "market_data_services.ingest.sentiment",
    "ImplausibleTimeError": "market_data_services.ingest.sentiment",
    "NotASentimentFileError": "market_data_services.ingest.sentiment",
    "SentimentFile": "market_data_services.ingest.sentiment",
    "SentimentReading": "market_data_services.ingest.sentiment",
    "ingest_sentiment": "market_data_services.ingest.sentiment",
    "inspect_sentiment_files": "market_data_services.ingest.sentiment",
    "sentiment_ingest_metrics": "market_data_services.ingest.sentiment",
    "write_sentiment": "market_data_services.ingest.sentiment",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_HISTORY_MAX_READINGS",
    "DEFAULT_SUM_TOLERANCE",
    "LAYOUTS",
    "REJECT_REASONS",
    "SENTIMENT_WRITE_LOCK_KEY",
    "SERVICE_NAME",
    "SETTING_KEY",
    "ContrarianThresholds",
    "ImplausibleTimeError",
    "NotASentimentFileError",
    "SentimentAggregatorService",
    "SentimentFile",
    "SentimentReading",
    "SettingsMismatchError",
    "ingest_sentiment",
    "inspect_sentiment_files",
    "sentiment_ingest_metrics",
    "stored_sentiment_symbols",
    "write_sentiment",
]
