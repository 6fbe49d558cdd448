"""Candles as numpy columns: one symbol and timeframe, sorted by bucket start."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from market_data_services.market.timeframes import Bucketing

#: Which price of a tick a candle is built from.
PRICE_BASES = ("mid", "bid", "ask")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_OHLC = ("open", "high", "low", "close")
_RECORD = np.dtype(
    [
        ("ts_open", np.int64),
        ("open", np.float64),
        ("high", np.float64),
        ("low", np.float64),
        ("close", np.float64),
        ("volume", np.float64),
        ("count", np.int64),
    ]
)


@dataclass(frozen=True, slots=True)
class MinuteCandles:
    """Candles of one symbol and timeframe as columns, sorted by ``ts_open``."""

    ts_open: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    count: IntArray

    @classmethod
    def empty(cls) -> MinuteCandles:
        ints = np.empty(0, dtype=np.int64)
        floats = np.empty(0, dtype=np.float64)
        return cls(
            ts_open=ints,
            open=floats,
            high=floats,
            low=floats,
            close=floats,
            volume=floats,
            count=ints,
        )

    @classmethod
    def from_records(cls, records: Iterable[Sequence[Any]], scale: float = 1.0) -> MinuteCandles:
        """From (ts_open, open, high, low, close, volume, count) tuples, converted in one
        pass in C (``np.fromiter`` into a record array): no Python object per value."""
        table = np.fromiter(records, dtype=_RECORD)
        if not len(table):
            return cls.empty()
        prices = [table[name] * scale if scale != 1.0 else table[name].copy() for name in _OHLC]
        return cls(
            ts_open=table["ts_open"].copy(),
            open=prices[0],
            high=prices[1],
            low=prices[2],
            close=prices[3],
            volume=table["volume"].copy(),
            count=table["count"].copy(),
        )

    @classmethod
    def from_ticks(cls, ts: IntArray, price: FloatArray, scale: float = 1.0) -> MinuteCandles:
        """One-minute candles of ticks without volumes, given in (ts, seq) order: open and
        close are a minute's first and last price, volume its tick count (as
        ``sum(coalesce(volume, 1))`` gives it). ``price * scale`` is the price, as in
        ``from_records``. Times are not negative, so ``//`` finds a minute's start."""
        if not len(ts):
            return cls.empty()
        minute = ts // 60_000 * 60_000
        firsts = np.flatnonzero(np.concatenate(([True], minute[1:] != minute[:-1])))
        lasts = np.concatenate((firsts[1:], [len(ts)])) - 1
        prices = [
            price[firsts],
            np.maximum.reduceat(price, firsts),
            np.minimum.reduceat(price, firsts),
            price[lasts],
        ]
        if scale != 1.0:
            prices = [p * scale for p in prices]
        count = (lasts - firsts + 1).astype(np.int64)
        return cls(
            ts_open=minute[firsts],
            open=prices[0],
            high=prices[1],
            low=prices[2],
            close=prices[3],
            volume=count.astype(np.float64),
            count=count,
        )

    @classmethod
    def from_rows(cls, rows: list[Any], scale: float = 1.0) -> MinuteCandles:
        """Rows of (ts_open, open, high, low, close, volume, count)."""
        if not rows:
            return cls.empty()
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        values = np.array([r[1:6] for r in rows], dtype=np.float64)
        count = np.fromiter((r[6] for r in rows), dtype=np.int64, count=len(rows))
        if scale != 1.0:
            values[:, :4] *= scale
        return cls(
            ts_open=ts,
            open=values[:, 0].copy(),
            high=values[:, 1].copy(),
            low=values[:, 2].copy(),
            close=values[:, 3].copy(),
            volume=values[:, 4].copy(),
            count=count,
        )

    def to_rows(self) -> list[tuple[int, float, float, float, float, float, int]]:
        """Rows of (ts_open, open, high, low, close, volume, count), as ``from_rows`` takes."""
        return list(
            zip(
                self.ts_open.tolist(),
                self.open.tolist(),
                self.high.tolist(),
                self.low.tolist(),
                self.close.tolist(),
                self.volume.tolist(),
                self.count.tolist(),
                strict=True,
            )
        )

    def __len__(self) -> int:
        return int(self.ts_open.shape[0])

    def select(self, mask: npt.NDArray[np.bool_]) -> MinuteCandles:
        return MinuteCandles(
            ts_open=self.ts_open[mask],
            open=self.open[mask],
            high=self.high[mask],
            low=self.low[mask],
            close=self.close[mask],
            volume=self.volume[mask],
            count=self.count[mask],
        )

    @staticmethod
    def merge(stored: MinuteCandles, fresh: MinuteCandles) -> MinuteCandles:
        """Both sets, ``fresh`` winning where both have a minute; sorted by time."""
        if not len(stored):
            return fresh
        if not len(fresh):
            return stored
        keep = ~np.isin(stored.ts_open, fresh.ts_open)
        parts = [stored.select(keep), fresh]
        ts = np.concatenate([p.ts_open for p in parts])
        order = np.argsort(ts, kind="stable")

        def join(name: str) -> Any:
            return np.concatenate([getattr(p, name) for p in parts])[order]

        return MinuteCandles(
            ts_open=ts[order],
            open=join("open"),
            high=join("high"),
            low=join("low"),
            close=join("close"),
            volume=join("volume"),
            count=join("count"),
        )


def roll_up(bucketing: Bucketing, timeframe: str, base: MinuteCandles) -> MinuteCandles:
    """Candles of ``timeframe`` from one-minute candles sorted by time."""
    if not len(base):
        return MinuteCandles.empty()
    starts = bucketing.starts(timeframe, base.ts_open)
    first = np.flatnonzero(np.concatenate(([True], starts[1:] != starts[:-1])))
    last = np.concatenate((first[1:], [len(starts)])) - 1
    return MinuteCandles(
        ts_open=starts[first],
        open=base.open[first],
        high=np.maximum.reduceat(base.high, first),
        low=np.minimum.reduceat(base.low, first),
        close=base.close[last],
        volume=np.add.reduceat(base.volume, first),
        count=np.add.reduceat(base.count, first),
    )


__all__ = ["PRICE_BASES", "MinuteCandles", "roll_up"]
