"""A plain-Python model of candles, written for the tests from the rules in the issue.

It shares no code with the service: buckets come from ``datetime`` arithmetic in the
day-start zone, candles from loops over ticks sorted by (time, arrival order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from market_data_services.storage import candles

#: 2024-03-04 09:00 UTC, a Monday: the tests' first tick minute.
T0 = int(datetime(2024, 3, 4, 9, 0, tzinfo=UTC).timestamp() * 1000)
#: One minute in milliseconds.
MIN = 60_000

MINUTES = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240, "1d": 1440}

Candle = tuple[float, float, float, float, float, int]


@dataclass(frozen=True)
class RefTick:
    symbol: str
    ts: int
    order: int  # arrival order among equal (symbol, ts)
    bid: float
    ask: float
    volume: float | None = None


def _ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))


def day_bounds(ts: int, hour: int, minute: int, zone: tzinfo) -> tuple[int, int]:
    local = datetime.fromtimestamp(ts / 1000, zone)
    day = local.date()
    for candidate in (day + timedelta(days=1), day, day - timedelta(days=1)):
        start = datetime(candidate.year, candidate.month, candidate.day, hour, minute, tzinfo=zone)
        if _ms(start) <= ts:
            following = candidate + timedelta(days=1)
            end = datetime(
                following.year, following.month, following.day, hour, minute, tzinfo=zone
            )
            return _ms(start), _ms(end)
    raise AssertionError("unreachable")


def bucket(ts: int, timeframe: str, hour: int = 0, minute: int = 0, zone: tzinfo = UTC) -> int:
    if timeframe == "1m":
        return ts - ts % 60_000
    start, _ = day_bounds(ts, hour, minute, zone)
    if timeframe == "1d":
        return start
    size = MINUTES[timeframe] * 60_000
    return start + (ts - start) // size * size


def price(tick: RefTick, basis: str) -> float:
    if basis == "bid":
        return tick.bid
    if basis == "ask":
        return tick.ask
    return (tick.bid + tick.ask) / 2


def expected_candles(
    ticks: Iterable[RefTick],
    *,
    basis: str = "mid",
    hour: int = 0,
    minute: int = 0,
    zone: tzinfo = UTC,
    timeframes: Iterable[str] = tuple(MINUTES),
) -> dict[tuple[str, str, int], Candle]:
    ordered = sorted(ticks, key=lambda t: (t.symbol, t.ts, t.order))
    result: dict[tuple[str, str, int], Candle] = {}
    for timeframe in timeframes:
        for tick in ordered:
            key = (tick.symbol, timeframe, bucket(tick.ts, timeframe, hour, minute, zone))
            p = price(tick, basis)
            volume = 1.0 if tick.volume is None else tick.volume
            if key not in result:
                result[key] = (p, p, p, p, volume, 1)
            else:
                o, h, low, _, v, n = result[key]
                result[key] = (o, max(h, p), min(low, p), p, v + volume, n + 1)
    return result


def stored_candles(engine: Engine) -> dict[tuple[str, str, int], Candle]:
    with engine.connect() as connection:
        rows = connection.execute(select(candles)).all()
    return {
        (r.symbol, r.timeframe, r.ts_open): (r.open, r.high, r.low, r.close, r.volume, r.tick_count)
        for r in rows
    }


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set_ms(self, ms: int) -> None:
        self.now = ms / 1000


def as_records(ticks: Iterable[RefTick]) -> list[tuple[Any, ...]]:
    return [(t.symbol, t.ts, t.bid, t.ask, t.volume) for t in ticks]
