"""Property tests: how ticks arrive must not change the candles."""

from __future__ import annotations

import itertools
from datetime import UTC, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sqlalchemy import delete
from sqlalchemy.engine import Engine

from market_data_services import AggregatorService
from market_data_services.ingest import write_ticks
from market_data_services.market.timeframes import Bucketing
from market_data_services.runtime import IterationOutcome
from market_data_services.storage import candles, service_progress
from market_data_services.storage import settings as settings_table
from market_data_services.storage import ticks as ticks_table
from market_data_services.timeutil import DayStart
from tests.aggregators.candles.reference import (
    MINUTES,
    T0,
    FakeClock,
    RefTick,
    as_records,
    bucket,
    expected_candles,
    stored_candles,
)

PRICES = [1.0995, 1.1, 1.10005, 1.1001, 1.1003, 1.1010]


@st.composite
def tick_streams(draw: st.DrawFn) -> list[RefTick]:
    """Ticks in stream order: times never go back, repeats allowed, some crossed."""
    count = draw(st.integers(1, 60))
    symbols = draw(st.sampled_from([["EUR/USD"], ["EUR/USD", "GBP/USD"]]))
    ts = T0 + draw(st.integers(0, 3_600_000))
    seen: dict[tuple[str, int], int] = {}
    stream = []
    for _ in range(count):
        ts += draw(st.sampled_from([0, 0, 1, 250, 7_000, 59_999, 60_000, 900_000, 4_000_000]))
        symbol = draw(st.sampled_from(symbols))
        bid = draw(st.sampled_from(PRICES))
        ask = bid + draw(st.sampled_from([-0.0001, 0.0, 0.0001, 0.0002]))
        volume = draw(st.one_of(st.none(), st.integers(0, 5).map(float)))
        order = seen[(symbol, ts)] = seen.get((symbol, ts), -1) + 1
        stream.append(RefTick(symbol, ts, order, bid, ask, volume))
    return stream


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[RefTick], list[list[RefTick]], list[int]]:
    """A stream, the same ticks shuffled into batches (ticks with equal symbol and time
    keep their order), and how far past its newest tick the clock is at each batch."""
    stream = draw(tick_streams())
    keys = draw(st.lists(st.floats(0, 1), min_size=len(stream), max_size=len(stream)))
    shuffled = [stream[i] for i in sorted(range(len(stream)), key=keys.__getitem__)]
    # Put each group of equal (symbol, ts) back in stream order, in the group's slots.
    groups: dict[tuple[str, int], list[RefTick]] = {}
    for tick in stream:
        groups.setdefault((tick.symbol, tick.ts), []).append(tick)
    taken = {key: iter(group) for key, group in groups.items()}
    arrival = [next(taken[(t.symbol, t.ts)]) for t in shuffled]
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(arrival) - 1)), max_size=6)))
    bounds = [0, *cuts, len(arrival)]
    batches = [arrival[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    delays = draw(st.lists(st.integers(0, 600_000), min_size=len(batches), max_size=len(batches)))
    return stream, batches, delays


def empty_tables(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in (ticks_table, candles, service_progress, settings_table):
            connection.execute(delete(table))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=arrivals())
def test_any_split_and_arrival_order_gives_the_candles_of_one_batch(
    engine: Engine, case: tuple[list[RefTick], list[list[RefTick]], list[int]]
) -> None:
    stream, batches, delays = case
    empty_tables(engine)
    clock = FakeClock(0)
    service = AggregatorService(
        engine, symbols=["EUR/USD", "GBP/USD"], wall_clock=clock, registry=CollectorRegistry()
    )
    newest = 0
    for batch, delay in zip(batches, delays, strict=True):
        write_ticks(engine, as_records(batch))
        newest = max(newest, *(t.ts for t in batch))
        clock.set_ms(newest + delay)  # the service runs some time after the newest tick
        assert service.run_once() is IterationOutcome.SUCCEEDED
    clock.set_ms(newest + 3 * 86_400_000)  # every bucket has closed
    assert service.run_once() is IterationOutcome.SUCCEEDED
    assert stored_candles(engine) == expected_candles(stream)


ZONES: list[tzinfo] = [
    UTC,
    ZoneInfo("America/New_York"),
    ZoneInfo("Europe/London"),
    ZoneInfo("Australia/Lord_Howe"),  # DST moves the clock by 30 minutes
    ZoneInfo("Asia/Kolkata"),
    timezone(timedelta(hours=-5), "UTC-05:00"),
]


@settings(max_examples=150, deadline=None)
@given(
    moments=st.lists(st.integers(1_600_000_000_000, 1_800_000_000_000), min_size=1, max_size=40),
    zone=st.sampled_from(ZONES),
    hour=st.sampled_from([0, 1, 17, 23]),
    minute=st.sampled_from([0, 30]),
)
def test_bucket_starts_match_calendar_arithmetic(
    moments: list[int], zone: tzinfo, hour: int, minute: int
) -> None:
    bucketing = Bucketing(DayStart(hour=hour, minute=minute, zone=zone))
    ts = np.array(moments, dtype=np.int64)
    for timeframe in MINUTES:
        starts = bucketing.starts(timeframe, ts)
        expected = [bucket(m, timeframe, hour, minute, zone) for m in moments]
        assert starts.tolist() == expected, timeframe
        ends = bucketing.ends(timeframe, starts)
        assert (starts <= ts).all() and (ts < ends).all()
