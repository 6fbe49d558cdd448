"""A sparse history (fewer ticks than minutes, as a thin symbol or a long quiet span has)
is built on SQLite from its ticks read once in order, not minute by minute. The candles
must be the ones the per-minute aggregate and the reference give, tick for tick."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from market_data_services import AggregatorService
from market_data_services.ingest import write_ticks
from market_data_services.storage import create_engine, upgrade
from market_data_services.storage.reads import aggregate_minutes
from tests.aggregators.candles.reference import (
    MIN,
    T0,
    FakeClock,
    RefTick,
    as_records,
    expected_candles,
    stored_candles,
)

PRICES = [1.0995, 1.1, 1.10005, 1.1001, 1.1003, 1.1010]


def sparse_ticks(
    count: int, *, symbol: str = "EUR/USD", with_volume: bool = False
) -> list[RefTick]:
    """``count`` ticks over about 20 minutes each, in bursts: a minute with several ticks
    (three of them at the same millisecond, told apart by their order), then quiet."""
    rng = np.random.default_rng(count)
    result: list[RefTick] = []
    ts = T0
    while len(result) < count:
        ts += int(rng.integers(1, 40)) * MIN + int(rng.integers(0, MIN // 2))
        burst = int(rng.integers(1, 5))
        for k in range(burst):
            bid = PRICES[int(rng.integers(0, len(PRICES)))]
            ask = round(bid + 0.0001 * int(rng.integers(1, 3)), 5)
            volume = round(float(rng.random()) * 3, 3) if with_volume else None
            # The first three of a burst share a millisecond: only their order tells
            # open from close.
            stamp = ts + max(0, k - 2) * 1_000
            result.append(RefTick(symbol, stamp, k, bid, ask, volume))
    return result[:count]


def backfill(engine: Engine, ticks: list[RefTick], **options: object) -> AggregatorService:
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(0)
    clock.set_ms(max(t.ts for t in ticks) + 3 * 86_400_000)
    service = AggregatorService(
        engine,
        symbols=sorted({t.symbol for t in ticks}),
        wall_clock=clock,
        registry=CollectorRegistry(),
        **options,  # type: ignore[arg-type]
    )
    service.backfill()
    return service


@pytest.mark.parametrize("basis", ["mid", "bid", "ask"])
def test_a_sparse_backfill_gives_the_reference_candles(engine: Engine, basis: str) -> None:
    ticks = sparse_ticks(400)
    backfill(engine, ticks, price_basis=basis)
    assert stored_candles(engine) == expected_candles(ticks, basis=basis)


def test_a_sparse_history_with_volumes_sums_them_as_the_reference(engine: Engine) -> None:
    # Fractional volumes: a sum depends on the order of adding, so these minutes are left
    # to the database's own sum(), which adds in tick order as the reference does. (Higher
    # timeframes add one-minute volumes, not ticks: compared at one minute.)
    ticks = sparse_ticks(300, with_volume=True)
    backfill(engine, ticks)
    minutes = {k: v for k, v in stored_candles(engine).items() if k[1] == "1m"}
    assert minutes == expected_candles(ticks, timeframes=("1m",))
    assert len(minutes) > 100


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    created = create_engine(f"sqlite:///{tmp_path / 'sparse.sqlite'}")
    upgrade(created)
    return created


def test_the_sparse_read_runs_and_equals_the_per_minute_aggregate(sqlite_engine: Engine) -> None:
    ticks = sparse_ticks(500)
    write_ticks(sqlite_engine, as_records(ticks))
    low = T0
    high = max(t.ts for t in ticks) // MIN * MIN + MIN
    every_minute = np.arange(low, high, MIN, dtype=np.int64)
    with_ticks = np.unique(np.array([t.ts // MIN * MIN for t in ticks], dtype=np.int64))
    assert len(with_ticks) < len(every_minute) // 5  # sparse, and not one contiguous run
    statements: list[str] = []
    with sqlite_engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.set_trace_callback(statements.append)
        from_ticks = aggregate_minutes(connection, "EUR/USD", every_minute, "mid")
        driver.set_trace_callback(None)
        # Explicit minutes (not a contiguous run) always take the per-minute aggregate.
        per_minute = aggregate_minutes(connection, "EUR/USD", with_ticks, "mid")
    assert any("IS NOT NULL" in s for s in statements), "the sparse read did not run"
    for name in ("ts_open", "open", "high", "low", "close", "volume", "count"):
        assert np.array_equal(getattr(from_ticks, name), getattr(per_minute, name)), name
    assert int(from_ticks.count.sum()) == len(ticks)
