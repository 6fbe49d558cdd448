"""The market-data services: candles, order book and sentiment, and the feeds."""

from market_data_services.aggregators.candles import (
    PRICE_BASES,
    TF_RULES,
    TIMEFRAMES,
    AggregatorService,
    BackfillProgress,
    PassReport,
    SettingsMismatchError,
)
from market_data_services.aggregators.dom import (
    BookSnapshot,
    DOMAggregatorService,
    NotABookFileError,
    ingest_dom,
    write_dom,
)
from market_data_services.aggregators.sentiment import (
    ContrarianThresholds,
    NotASentimentFileError,
    SentimentAggregatorService,
    SentimentReading,
    ingest_sentiment,
    write_sentiment,
)
from market_data_services.aggregators.ticks import (
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
    "Rejection",
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
