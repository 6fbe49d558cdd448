"""Retail sentiment: ``SentimentAggregatorService`` turns readings into smoothed sentiment
and a contrarian signal.

The ingestion names below moved to ``market_data_services.ingest.sentiment`` (issue 11);
they are re-exported here so that imports written before still work. New code imports
them from ``market_data_services.ingest``.
"""

from market_data_services.aggregators.sentiment.service import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_HISTORY_MAX_READINGS,
    SERVICE_NAME,
    SETTING_KEY,
    ContrarianThresholds,
    SentimentAggregatorService,
    SettingsMismatchError,
    stored_sentiment_symbols,
)
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
