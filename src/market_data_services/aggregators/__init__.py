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
    "IngestReport",
    "NotATickFileError",
    "PassReport",
    "Rejection",
    "SettingsMismatchError",
    "Tick",
    "ingest_ticks",
    "write_ticks",
]
