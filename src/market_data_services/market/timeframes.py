"""Which bucket a moment falls in, for every timeframe, on numpy arrays of epoch ms.

The trading day starts at a configured local time (``DayStart``). Every intraday bucket
is counted from the start of its day, so 1h and 4h buckets nest in the daily candle; a
day that DST makes 23 or 25 hours long ends with a shorter last bucket where the
timeframe does not divide it (a 25 h day has six 4 h buckets and one of 1 h). One-minute
buckets are plain UTC minutes: every day start is a whole minute in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from market_data_services.timeutil import DayStart

IntArray = npt.NDArray[np.int64]

MINUTE_MS = 60_000
DAY_MS = 86_400_000

#: The specification's table: each timeframe and its length in minutes.
TF_RULES: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "1m": MappingProxyType({"minutes": 1}),
        "5m": MappingProxyType({"minutes": 5}),
        "15m": MappingProxyType({"minutes": 15}),
        "30m": MappingProxyType({"minutes": 30}),
        "1h": MappingProxyType({"minutes": 60}),
        "4h": MappingProxyType({"minutes": 240}),
        "1d": MappingProxyType({"minutes": 1440}),
    }
)
TIMEFRAMES: tuple[str, ...] = tuple(TF_RULES)
#: Every timeframe above one minute, built from one-minute candles.
HIGHER_TIMEFRAMES: tuple[str, ...] = TIMEFRAMES[1:]


class Bucketing:
    """Bucket starts and ends for one day start."""

    def __init__(self, day_start: DayStart) -> None:
        self.day_start = day_start
        self._fixed_offset = day_start.offset_ms if day_start.is_fixed else None

    def _days(self, ts: IntArray) -> tuple[IntArray, IntArray]:
        """Start and end of the trading day that contains each moment."""
        if self._fixed_offset is not None:
            start = ts - (ts - self._fixed_offset) % DAY_MS
            return start, start + DAY_MS
        if len(ts) == 0:
            return ts.copy(), ts.copy()
        low, high = int(ts.min()), int(ts.max())
        if (high - low) // DAY_MS <= 4 * len(ts):
            # Dense: every day start in the span, then a binary search per moment.
            bounds = np.array(self.day_start.boundaries(low, high), dtype=np.int64)
        else:
            # Sparse (say, one late tick months back): only the days that are needed.
            needed: set[int] = set()
            for moment in np.unique(ts).tolist():
                day = self.day_start.day_of(moment)
                needed.update((self.day_start.at(day), self.day_start.at(day + timedelta(days=1))))
            bounds = np.array(sorted(needed), dtype=np.int64)
        index = np.searchsorted(bounds, ts, side="right") - 1
        return bounds[index], bounds[index + 1]

    def starts(self, timeframe: str, ts: IntArray) -> IntArray:
        """The start of the ``timeframe`` bucket containing each moment in ``ts``."""
        if timeframe == "1m":
            result: IntArray = ts - ts % MINUTE_MS
            return result
        day, _ = self._days(ts)
        if timeframe == "1d":
            return day
        size = TF_RULES[timeframe]["minutes"] * MINUTE_MS
        result = day + (ts - day) // size * size
        return result

    def ends(self, timeframe: str, starts: IntArray) -> IntArray:
        """The end (exclusive) of each bucket that starts at ``starts``."""
        if timeframe == "1m":
            result: IntArray = starts + MINUTE_MS
            return result
        _, next_day = self._days(starts)
        if timeframe == "1d":
            return next_day
        size = TF_RULES[timeframe]["minutes"] * MINUTE_MS
        result = np.minimum(starts + size, next_day)
        return result


__all__ = [
    "DAY_MS",
    "HIGHER_TIMEFRAMES",
    "MINUTE_MS",
    "TF_RULES",
    "TIMEFRAMES",
    "Bucketing",
]
