"""Which tables a retention may be set for, and the check of a policy.

Apart from ``service.py``, which follows the progress of the services that aggregate
each raw table: the configuration checks ``[services.retention]`` at every command's
start, and should not import the services for that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from market_data_services.market.timeframes import TIMEFRAMES
from market_data_services.storage.arrival import RAW_TABLES

#: Rows per delete transaction.
DEFAULT_BATCH_SIZE = 5_000
#: One-minute candles are what a late tick's higher buckets are rolled up from.
MIN_CANDLES_1M_SECONDS = 2 * 86_400.0
#: Every name a retention may be set for: the raw tables and ``candles_<timeframe>``.
RETENTION_TABLES = RAW_TABLES + tuple(f"candles_{tf}" for tf in TIMEFRAMES)


def check_policies(drop_after_seconds: Mapping[str, float]) -> dict[str, float]:
    """The policies, checked: known names, finite positive seconds."""
    checked: dict[str, float] = {}
    for name, seconds in drop_after_seconds.items():
        if name not in RETENTION_TABLES:
            valid = ", ".join(RETENTION_TABLES)
            raise ValueError(f"no retention for {name!r}: valid tables are {valid}")
        value = float(seconds)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"retention of {name} must be > 0 seconds, got {seconds!r}")
        if name == "candles_1m" and value < MIN_CANDLES_1M_SECONDS:
            raise ValueError(
                f"retention of candles_1m must be >= {MIN_CANDLES_1M_SECONDS:g} seconds "
                f"(two days: a late tick rebuilds its day from them), got {value:g}"
            )
        checked[name] = value
    return checked


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MIN_CANDLES_1M_SECONDS",
    "RAW_TABLES",
    "RETENTION_TABLES",
    "check_policies",
]
