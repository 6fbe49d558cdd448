from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from market_data_services import AggregatorService
from market_data_services.aggregators import TF_RULES, SettingsMismatchError
from market_data_services.aggregators.candles import service as candle_service_module
from market_data_services.ingest import write_ticks
from market_data_services.runtime import IterationOutcome
from market_data_services.storage import Timeouts, candles, create_engine, service_progress, upgrade
from market_data_services.timeutil import parse_zone
from tests.aggregators.candles.reference import (
    MIN,
    T0,
    FakeClock,
    RefTick,
    as_records,
    expected_candles,
    stored_candles,
)


def ticks_every(start: int, count: int, step_ms: int, symbol: str = "EUR/USD") -> list[RefTick]:
    """A wandering price: bid 1.1 +/- a few pips, ask a pip above."""
    result = []
    for i in range(count):
        bid = round(1.1 + ((i * 7919) % 23 - 11) / 10_000, 5)
        result.append(RefTick(symbol, start + i * step_ms, 0, bid, round(bid + 0.0001, 5)))
    return result


def service(engine: Engine, clock: FakeClock, **options: object) -> AggregatorService:
    options.setdefault("symbols", ["EUR/USD"])
    options.setdefault("registry", CollectorRegistry())
    return AggregatorService(engine, wall_clock=clock, **options)  # type: ignore[arg-type]


def run(svc: AggregatorService) -> None:
    outcome = svc.run_once()
    assert outcome is IterationOutcome.SUCCEEDED, svc.get_metrics()["recent_errors"]


def test_candles_of_every_timeframe_follow_the_ticks(engine: Engine) -> None:
    ticks = ticks_every(T0 - 3 * 3_600_000, 2_000, 7_777)  # 06:00 to 10:19 UTC
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(T0 / 1000 + 2 * 86_400)
    run(service(engine, clock))
    assert stored_candles(engine) == expected_candles(ticks)


@pytest.mark.parametrize("basis", ["bid", "ask"])
def test_price_basis_picks_bid_or_ask(engine: Engine, basis: str) -> None:
    ticks = ticks_every(T0, 300, 1_000)
    write_ticks(engine, as_records(ticks))
    run(service(engine, FakeClock(T0 / 1000 + 86_400 * 2), price_basis=basis))
    assert stored_candles(engine) == expected_candles(ticks, basis=basis)


def test_volume_is_summed_where_the_feed_has_it(engine: Engine) -> None:
    ticks = [
        RefTick("EUR/USD", T0 + i * 10_000, 0, 1.1, 1.2, float(i % 4) if i % 3 else None)
        for i in range(30)
    ]
    write_ticks(engine, as_records(ticks))
    run(service(engine, FakeClock(T0 / 1000 + 86_400 * 2)))
    assert stored_candles(engine) == expected_candles(ticks)


def test_no_candle_for_buckets_without_ticks(engine: Engine) -> None:
    friday = T0 + 4 * 86_400_000
    ticks = ticks_every(friday, 10, 1_000) + ticks_every(friday + 3 * 86_400_000, 10, 1_000)
    write_ticks(engine, as_records(ticks))
    run(service(engine, FakeClock(friday / 1000 + 86_400 * 5)))
    days = sorted(ts for (_, tf, ts) in stored_candles(engine) if tf == "1d")
    assert days == [friday - friday % 86_400_000, friday + 3 * 86_400_000 - friday % 86_400_000]
    assert len([k for k in stored_candles(engine) if k[1] == "1m"]) == 2


def test_equal_timestamps_open_and_close_in_arrival_order(engine: Engine) -> None:
    ticks = [
        RefTick("EUR/USD", T0, 0, 1.10, 1.11),
        RefTick("EUR/USD", T0, 1, 1.20, 1.21),
        RefTick("EUR/USD", T0 + 59_999, 0, 1.30, 1.31),
        RefTick("EUR/USD", T0 + 59_999, 1, 1.05, 1.06),
    ]
    write_ticks(engine, as_records(ticks))
    run(service(engine, FakeClock(T0 / 1000 + 3600), price_basis="bid"))
    assert stored_candles(engine)[("EUR/USD", "1m", T0)] == (1.10, 1.30, 1.05, 1.05, 4.0, 4)


def test_a_bucket_is_written_only_after_it_closed_plus_lateness(engine: Engine) -> None:
    write_ticks(engine, as_records(ticks_every(T0, 6, 10_000)))
    clock = FakeClock(0)
    svc = service(engine, clock, lateness_seconds=2.0)
    clock.set_ms(T0 + MIN + 1_999)
    run(svc)
    assert stored_candles(engine) == {}
    clock.set_ms(T0 + MIN + 2_000)
    run(svc)
    assert set(stored_candles(engine)) == {("EUR/USD", "1m", T0)}
    clock.set_ms(T0 + 5 * MIN + 2_000)
    run(svc)
    assert ("EUR/USD", "5m", T0) in stored_candles(engine)


def test_restart_resumes_and_fills_every_bucket_missed_while_down(engine: Engine) -> None:
    first, later = ticks_every(T0, 120, 5_000), ticks_every(T0 + 3_600_000, 240, 5_000)
    clock = FakeClock(0)
    write_ticks(engine, as_records(first))
    clock.set_ms(T0 + 11 * MIN)
    run(service(engine, clock))
    # Down for hours; ticks keep arriving. A new instance (a restart) takes over.
    write_ticks(engine, as_records(later))
    clock.set_ms(T0 + 2 * 86_400_000)
    restarted = service(engine, clock)
    run(restarted)
    assert stored_candles(engine) == expected_candles(first + later)
    assert restarted.last_pass().minutes_built < 60  # only what arrived since the watermark


def test_pending_buckets_survive_a_restart(engine: Engine) -> None:
    ticks = ticks_every(T0, 50, 1_000)  # T0 .. T0+49s: the 1h bucket is open
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(0)
    clock.set_ms(T0 + 10 * MIN)
    run(service(engine, clock))
    assert ("EUR/USD", "1h", T0) not in stored_candles(engine)
    clock.set_ms(T0 + 2 * 3_600_000)
    run(service(engine, clock))  # a new instance, no new ticks
    assert (
        stored_candles(engine)[("EUR/USD", "1h", T0)]
        == expected_candles(ticks)[("EUR/USD", "1h", T0)]
    )


def test_a_late_tick_rewrites_its_bucket_and_every_bucket_above(engine: Engine) -> None:
    ticks = ticks_every(T0, 600, 1_000)
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(T0 / 1000 + 2 * 86_400)
    svc = service(engine, clock)
    run(svc)
    late = RefTick("EUR/USD", T0 + 90_500, 0, 1.5, 1.5001)  # a new high, long after
    write_ticks(engine, as_records([late]))
    run(svc)
    candles = stored_candles(engine)
    assert candles == expected_candles([*ticks, late])
    high = (late.bid + late.ask) / 2
    assert {tf for (_, tf, _), c in candles.items() if c[1] == high} == set(TF_RULES)


def test_running_a_pass_again_changes_nothing(engine: Engine) -> None:
    write_ticks(engine, as_records(ticks_every(T0, 500, 3_000)))
    clock = FakeClock(T0 / 1000 + 86_400 * 2)
    svc = service(engine, clock)
    run(svc)
    before = stored_candles(engine)
    run(svc)
    svc.backfill()
    assert stored_candles(engine) == before


def test_new_york_day_start_opens_days_at_5pm_across_dst(engine: Engine) -> None:
    start = int(datetime(2024, 3, 8, 12, 0, tzinfo=UTC).timestamp() * 1000)  # EST
    ticks = ticks_every(start, 5 * 24 * 6, 600_000)  # every 10 minutes, 5 days
    write_ticks(engine, as_records(ticks))
    zone = ZoneInfo("America/New_York")
    run(
        service(
            engine,
            FakeClock(start / 1000 + 86_400 * 7),
            day_start="17:00 America/New_York",
        )
    )
    got = stored_candles(engine)
    assert got == expected_candles(ticks, hour=17, zone=zone)
    days = sorted(ts for (_, tf, ts) in got if tf == "1d")
    hours_utc = [datetime.fromtimestamp(d / 1000, UTC).hour for d in days]
    assert hours_utc[:2] == [22, 22] and hours_utc[-1] == 21  # EST, then EDT from Mar 10
    # 4h buckets nest in the day: each starts a multiple of 4h after its day start.
    for _, tf, ts in got:
        if tf == "4h":
            day = max(d for d in days if d <= ts)
            assert (ts - day) % (4 * 3_600_000) == 0


def test_fixed_offset_day_start(engine: Engine) -> None:
    ticks = ticks_every(T0, 3 * 24 * 4, 900_000)
    write_ticks(engine, as_records(ticks))
    run(service(engine, FakeClock(T0 / 1000 + 86_400 * 5), day_start="00:00 UTC-05:00"))
    assert stored_candles(engine) == expected_candles(ticks, zone=parse_zone("UTC-05:00"))


def test_another_price_basis_is_refused_until_rebuilt(engine: Engine) -> None:
    ticks = ticks_every(T0, 100, 1_000)
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(T0 / 1000 + 86_400 * 2)
    run(service(engine, clock))
    refused = service(engine, clock, price_basis="bid")
    assert refused.run_once() is IterationOutcome.FAILED
    error = refused.get_metrics()["recent_errors"][-1]
    assert error["type"] == "SettingsMismatchError"
    assert "price basis 'mid'" in error["error"] and "'bid'" in error["error"]
    with pytest.raises(SettingsMismatchError):
        refused.backfill()
    run(service(engine, clock, price_basis="bid", rebuild=True))
    assert stored_candles(engine) == expected_candles(ticks, basis="bid")


def test_symbols_not_configured_are_left_alone(engine: Engine) -> None:
    ticks = ticks_every(T0, 100, 1_000) + ticks_every(T0, 100, 1_000, symbol="GBP/USD")
    write_ticks(engine, as_records(ticks))
    run(service(engine, FakeClock(T0 / 1000 + 86_400 * 2)))
    assert {symbol for symbol, _, _ in stored_candles(engine)} == {"EUR/USD"}
    with engine.connect() as connection:
        symbols = set(connection.execute(select(service_progress.c.symbol)).scalars())
    assert symbols == {"EUR/USD"}


def test_parallel_workers_build_the_same_candles(engine: Engine) -> None:
    symbols = ["A", "B", "C"]
    ticks = [t for s in symbols for t in ticks_every(T0, 200, 2_000, symbol=s)]
    write_ticks(engine, as_records(ticks))
    run(service(engine, FakeClock(T0 / 1000 + 86_400 * 2), symbols=symbols, workers=3))
    assert stored_candles(engine) == expected_candles(ticks)


def test_lag_histogram_and_freshness_gauge(engine: Engine) -> None:
    registry = CollectorRegistry()
    clock = FakeClock(0)
    svc = service(engine, clock, registry=registry, interval_seconds=60.0)
    write_ticks(engine, as_records(ticks_every(T0, 30, 1_000)))
    clock.set_ms(T0 + MIN + 5_000)  # the minute ended 5 s ago
    run(svc)
    lag_count = registry.get_sample_value("mds_candle_lag_seconds_count", {"timeframe": "1m"})
    lag_sum = registry.get_sample_value("mds_candle_lag_seconds_sum", {"timeframe": "1m"})
    assert (lag_count, lag_sum) == (1.0, 5.0)
    freshness = registry.get_sample_value("mds_data_freshness_seconds", {"symbol": "EUR/USD"})
    assert freshness == pytest.approx(MIN / 1000 + 5 - 29)
    written = registry.get_sample_value("mds_candles_written_total", {"timeframe": "1m"})
    assert written == 1.0


def test_each_iteration_with_new_ticks_writes_so_a_locked_database_fails_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.sqlite"
    engine = create_engine(f"sqlite:///{path}", timeouts=Timeouts(lock_seconds=0.1))
    upgrade(engine)
    clock = FakeClock(T0 / 1000 + 10)
    svc = service(engine, clock)
    write_ticks(engine, as_records(ticks_every(T0, 5, 1_000)))
    run(svc)
    write_ticks(engine, as_records(ticks_every(T0 + 5_000, 2, 1_000)))  # open minute only
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        assert svc.run_once() is IterationOutcome.FAILED
        assert "locked" in svc.get_metrics()["recent_errors"][-1]["error"]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    run(svc)
    engine.dispose()


def test_symbol_spans_are_children_of_the_iteration_span(engine: Engine) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    write_ticks(engine, as_records(ticks_every(T0, 10, 1_000)))
    svc = service(
        engine,
        FakeClock(T0 / 1000 + 86_400),
        symbols=["EUR/USD", "GBP/USD"],
        tracer=provider.get_tracer("test"),
        workers=2,
    )
    run(svc)
    spans = exporter.get_finished_spans()
    iteration = next(s for s in spans if s.name == "AggregatorService.iteration")
    children = [s for s in spans if s.name == "AggregatorService.symbol"]
    assert sorted(s.attributes["symbol"] for s in children) == ["EUR/USD", "GBP/USD"]  # type: ignore[index]
    assert all(
        s.parent is not None and s.parent.span_id == iteration.context.span_id for s in children
    )


def test_specification_calls_work_as_written(engine: Engine) -> None:
    svc = AggregatorService(engine, symbols=["EUR/USD"], registry=CollectorRegistry())
    assert [info["minutes"] for info in TF_RULES.values()] == [1, 5, 15, 30, 60, 240, 1440]
    svc.start()
    try:
        assert svc.is_running()
        metrics = svc.get_metrics()
        assert metrics["service_name"] == "AggregatorService"
        assert metrics["symbols"] == ["EUR/USD"]
        assert metrics["price_basis"] == "mid" and metrics["day_start"] == "00:00 UTC"
    finally:
        assert svc.stop(timeout=5.0)
    assert not svc.is_running()


def test_bad_options_are_refused_with_the_choices(engine: Engine) -> None:
    with pytest.raises(ValueError, match="valid: mid, bid, ask"):
        AggregatorService(engine, price_basis="last", registry=CollectorRegistry())
    with pytest.raises(ValueError, match="day start must look like"):
        AggregatorService(engine, day_start="5pm", registry=CollectorRegistry())
    with pytest.raises(ValueError, match="lateness_seconds must be >= 0"):
        AggregatorService(engine, lateness_seconds=-1, registry=CollectorRegistry())


def test_ticks_arriving_during_a_backfill_are_built_by_the_next_pass(engine: Engine) -> None:
    ticks = ticks_every(T0, 300, 60_000)  # five hours, one tick a minute
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(T0 / 1000 + 86_400 * 2)
    svc = service(engine, clock)
    arriving = RefTick("EUR/USD", T0 + 30_000, 0, 1.2, 1.2001)

    def meanwhile(_: object) -> None:
        write_ticks(engine, as_records([arriving]))

    svc.backfill(progress=meanwhile)
    run(svc)
    assert stored_candles(engine) == expected_candles([*ticks, arriving])


def test_a_backfill_over_stored_candles_rewrites_them_and_keeps_the_others(
    engine: Engine,
) -> None:
    # Enough minutes that the one-minute candles of a step are written column-wise (on
    # PostgreSQL: COPY straight into the table while no candle of them is stored, an
    # upsert once some are).
    ticks = ticks_every(T0, 1_500, 20_000)  # 500 minutes, three ticks each
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(T0 / 1000 + 86_400 * 2)
    service(engine, clock).backfill()
    expected = expected_candles(ticks)
    assert stored_candles(engine) == expected
    assert sum(1 for key in expected if key[1] == "1m") == 500

    # Some candles gone, one changed, one of a day without ticks any more: a second
    # backfill restores and corrects what the ticks make, and keeps the one it cannot.
    kept = ("EUR/USD", "1d", T0 - 86_400_000 * 3 - T0 % 86_400_000)
    with engine.begin() as connection:
        connection.execute(
            candles.delete()
            .where(candles.c.timeframe == "1m")
            .where(candles.c.ts_open < T0 + 60 * MIN)
        )
        connection.execute(candles.update().where(candles.c.timeframe == "1h").values(close=9.0))
        connection.execute(
            candles.insert().values(
                symbol=kept[0],
                timeframe=kept[1],
                ts_open=kept[2],
                open=1.0,
                high=1.0,
                low=1.0,
                close=1.0,
                volume=1.0,
                tick_count=1,
            )
        )
    service(engine, clock).backfill()
    assert stored_candles(engine) == {**expected, kept: (1.0, 1.0, 1.0, 1.0, 1.0, 1)}


def candle_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mds-candles")]


def test_a_backfill_on_workers_equals_one_on_a_single_thread(engine: Engine) -> None:
    # Steps of several symbols aggregated ahead on two threads, written in order.
    ticks = [
        tick
        for number, symbol in enumerate(("EUR/USD", "GBP/USD", "USD/JPY"))
        for tick in ticks_every(T0 + number * 7_000, 2_000, 864_000, symbol=symbol)
    ]  # 20 days each: three steps of seven days
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(T0 / 1000 + 86_400 * 25)
    steps: list[tuple[str, int]] = []
    svc = service(engine, clock, symbols=["EUR/USD", "GBP/USD", "USD/JPY"], workers=2)
    svc.backfill(progress=lambda p: steps.append((p.symbol, p.steps_done)))
    assert stored_candles(engine) == expected_candles(ticks)
    # Progress in order: every step of a symbol, numbered, before the next symbol's.
    assert steps == sorted(
        steps, key=lambda s: (["EUR/USD", "GBP/USD", "USD/JPY"].index(s[0]), s[1])
    )
    assert len(steps) == 9
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert candle_threads() == []


def test_a_stop_during_a_backfill_on_workers_ends_it_and_releases_everything(
    engine: Engine,
) -> None:
    ticks = ticks_every(T0, 2_000, 864_000)  # 20 days: three steps
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(T0 / 1000 + 86_400 * 25)
    svc = service(engine, clock, workers=2)
    done: list[int] = []

    def stop_after_the_first(progress: object) -> None:
        done.append(1)
        svc.stop(timeout=0)

    svc.backfill(progress=stop_after_the_first)
    assert done == [1]  # the steps aggregated ahead were dropped, not written
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert candle_threads() == []


def test_a_step_that_fails_on_a_worker_fails_the_backfill_and_releases_everything(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = ticks_every(T0, 2_000, 864_000)  # 20 days: three steps
    write_ticks(engine, as_records(ticks))
    clock = FakeClock(T0 / 1000 + 86_400 * 25)
    svc = service(engine, clock, workers=2)
    real = candle_service_module.start_minute_aggregate
    calls: list[int] = []

    def second_fails(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk I/O error while aggregating")  # as a database could fail
        return real(*args, **kwargs)

    monkeypatch.setattr(candle_service_module, "start_minute_aggregate", second_fails)
    with pytest.raises(OSError, match="disk I/O error"):
        svc.backfill()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert candle_threads() == []
    assert svc.get_metrics()["recent_errors"]


def test_workers_on_an_in_memory_database_build_on_its_one_thread() -> None:
    # The pool gives each thread a blank in-memory database: a worker thread would find
    # no ticks, and the backfill would write nothing and say nothing.
    memory = create_engine("sqlite://")
    upgrade(memory)
    ticks = ticks_every(T0, 2_000, 864_000, symbol="EUR/USD")
    write_ticks(memory, as_records(ticks))
    service(memory, FakeClock(T0 / 1000 + 86_400 * 25), workers=2).backfill()
    assert stored_candles(memory) == expected_candles(ticks)
    memory.dispose()


def test_a_stop_during_a_live_pass_leaves_the_symbols_not_built_for_the_next_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ticks_every(T0, 120, 30_000, symbol="EUR/USD")
    second = ticks_every(T0, 120, 30_000, symbol="GBP/USD")
    write_ticks(engine, as_records([*first, *second]))
    clock = FakeClock(T0 / 1000 + 86_400 * 2)
    symbols = ["EUR/USD", "GBP/USD"]
    run(service(engine, clock, symbols=symbols))  # both symbols now have a watermark
    later = ticks_every(T0 + 86_400_000, 60, 30_000, symbol="EUR/USD")
    later += ticks_every(T0 + 86_400_000, 60, 30_000, symbol="GBP/USD")
    write_ticks(engine, as_records(later))
    clock.set_ms(T0 + 86_400_000 * 3)
    stopping = service(engine, clock, symbols=symbols)
    build = stopping._build

    def build_then_stop(*args: Any, **kwargs: Any) -> Any:
        built = build(*args, **kwargs)
        stopping.stop(timeout=0)  # asked while the pass is between its symbols
        return built

    monkeypatch.setattr(stopping, "_build", build_then_stop)
    stopping.run_once()
    run(service(engine, clock, symbols=symbols))
    assert stored_candles(engine) == expected_candles([*first, *second, *later])
