"""A small database of derived data for the readers' tests: real ticks through the real
candle service (with a fixed wall clock, so the newest minute is still open), and book
and sentiment metrics rows as their services store them."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from market_data_services import AggregatorService
from market_data_services.ingest import write_ticks
from market_data_services.market.timeframes import MINUTE_MS
from market_data_services.storage import dom_metrics, sentiment_metrics, upsert

#: 2026-11-30T04:00:00Z.
T0 = 1_796_011_200_000
#: A tick every 20 s from T0 to 04:10:20: ten whole minutes and the open 04:10.
TICK_COUNT = 32
#: The candle service's wall clock: 04:10:30, so 04:10 (1m), 04:10 (5m), 04:00 (1h) are open.
NOW_S = (T0 + 10 * MINUTE_MS + 30_000) / 1000
BOOK_ROWS = 7
SENTIMENT_ROWS = 5


@dataclass(frozen=True)
class Tick:
    ts: int
    bid: float
    ask: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


def ticks() -> list[Tick]:
    return [
        Tick(T0 + i * 20_000, round(1.1 + i * 1e-4, 5), round(1.1002 + i * 1e-4, 5))
        for i in range(TICK_COUNT)
    ]


def fill(engine: Engine) -> None:
    """EUR/USD ticks and candles; EUR/USD book metrics from T0; EUR/USD sentiment metrics
    hourly up to T0."""
    write_ticks(
        engine,
        [("EUR/USD", t.ts, t.bid, t.ask, None) for t in ticks()],
        wall_clock=lambda: NOW_S,
    )
    service = AggregatorService(
        engine, symbols=["EUR/USD"], wall_clock=lambda: NOW_S, registry=CollectorRegistry()
    )
    assert service.run_once().value == "succeeded"
    book = [
        (
            "EUR/USD",
            T0 + i * 1_250,
            1.1,
            1.1002,
            0.0002,
            1.818,
            1.1001,
            1.10011,
            0.1,
            0.2,
            5.0,
            6.0,
            i,
        )
        for i in range(BOOK_ROWS)
    ]
    sentiment = [
        (
            "EUR/USD",
            T0 - (SENTIMENT_ROWS - 1 - i) * 3_600_000,
            0.6 + i / 100,
            0.6,
            0.01 * i,
            0.6,
            0.64,
            (i % 3) - 1,
        )
        for i in range(SENTIMENT_ROWS)
    ]
    with engine.begin() as connection:
        upsert(connection, dom_metrics, book, columns=[c.name for c in dom_metrics.columns])
        upsert(
            connection,
            sentiment_metrics,
            sentiment,
            columns=[c.name for c in sentiment_metrics.columns],
        )
