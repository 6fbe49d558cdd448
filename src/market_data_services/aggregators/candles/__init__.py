"""Candles: ``AggregatorService`` builds OHLC candles for every timeframe from the ticks."""

from market_data_services.aggregators.candles.service import (
    PRICE_BASES,
    SERVICE_NAME,
    TF_RULES,
    TIMEFRAMES,
    AggregatorService,
    BackfillProgress,
    PassReport,
    SettingsMismatchError,
    all_stored_symbols,
    candle_metrics,
    check_price_basis,
)

__all__ = [
    "PRICE_BASES",
    "SERVICE_NAME",
    "TF_RULES",
    "TIMEFRAMES",
    "AggregatorService",
    "BackfillProgress",
    "PassReport",
    "SettingsMismatchError",
    "all_stored_symbols",
    "candle_metrics",
    "check_price_basis",
]
