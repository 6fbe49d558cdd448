from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine

from market_data_services import (
    AggregatorService,
    DOMAggregatorService,
    SentimentAggregatorService,
)
from market_data_services.aggregators.retention import RetentionService
from market_data_services.ingest import write_sentiment, write_ticks
from market_data_services.ingest.dom import BookSnapshot, write_dom
from market_data_services.runtime import IterationOutcome, ThreadedBackgroundService
from market_data_services.storage import (
    candles,
    dom_metrics,
    dom_snapshots,
    sentiment_metrics,
    sentiment_readings,
    ticks,
)

DAY_MS = 86_400_000
NOW_MS = int(datetime(2024, 3, 20, 12, 0, tzinfo=UTC).timestamp() * 1000)
NOW = NOW_MS / 1000
OLD = NOW_MS - 10 * DAY_MS  # beyond a week's retention
RECENT = NOW_MS - 3_600_000
WEEK = 7 * 86_400.0


def run(service: ThreadedBackgroundService) -> None:
    outcome = service.run_once()
    assert outcome is IterationOutcome.SUCCEEDED, service.get_metrics()["recent_errors"]


def retention(engine: Engine, registry: CollectorRegistry, **kwargs: object) -> RetentionService:
    return RetentionService(engine, wall_clock=lambda: NOW, registry=registry, **kwargs)  # type: ignore[arg-type]


def deleted(registry: CollectorRegistry, table: str) -> float:
    return registry.get_sample_value("mds_retention_rows_deleted_total", {"table": table}) or 0.0


def tick_rows(engine: Engine, symbol: str) -> list[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(ticks.c.ts).where(ticks.c.symbol == symbol).order_by(ticks.c.ts)
        )
        return [row[0] for row in rows]


def count(engine: Engine, table: Table, **where: str) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar() or 0)


def minute_ticks(symbol: str, start: int, n: int) -> list[tuple[object, ...]]:
    return [(symbol, start + i * 60_000, 1.1 + i / 1e4, 1.1002 + i / 1e4, None) for i in range(n)]


def test_old_ticks_go_once_aggregated_and_unread_ones_stay(engine: Engine) -> None:
    write_ticks(engine, minute_ticks("EUR/USD", OLD, 20) + minute_ticks("EUR/USD", RECENT, 5))
    write_ticks(engine, minute_ticks("GBP/USD", OLD, 4))  # no service reads GBP/USD
    candle_service = AggregatorService(
        engine, symbols=["EUR/USD"], wall_clock=lambda: NOW, registry=CollectorRegistry()
    )
    run(candle_service)
    candles_before = count(engine, candles)
    # A late old tick, stored after the candles were built: not aggregated yet.
    late = OLD + 30 * 60_000 + 5_000
    write_ticks(engine, [("EUR/USD", late, 1.2, 1.2002, None)])
    registry = CollectorRegistry()
    run(retention(engine, registry, drop_after_seconds={"ticks": WEEK}))

    assert tick_rows(engine, "EUR/USD") == [late] + [RECENT + i * 60_000 for i in range(5)]
    assert len(tick_rows(engine, "GBP/USD")) == 4
    assert deleted(registry, "ticks") == 20
    assert count(engine, candles) == candles_before  # derived rows keep their history

    run(candle_service)  # the late tick reaches its candle; then it may go too
    run(retention(engine, CollectorRegistry(), drop_after_seconds={"ticks": WEEK}))
    assert tick_rows(engine, "EUR/USD") == [RECENT + i * 60_000 for i in range(5)]


def test_ticks_of_a_bucket_still_pending_stay(engine: Engine) -> None:
    write_ticks(engine, minute_ticks("EUR/USD", OLD, 3))
    # The candles ran while those minutes were still open: they are pending.
    candle_service = AggregatorService(
        engine,
        symbols=["EUR/USD"],
        wall_clock=lambda: OLD / 1000 + 30,
        registry=CollectorRegistry(),
    )
    run(candle_service)
    registry = CollectorRegistry()
    run(retention(engine, registry, drop_after_seconds={"ticks": WEEK}))
    assert len(tick_rows(engine, "EUR/USD")) == 3
    assert deleted(registry, "ticks") == 0


def test_deletes_go_in_bounded_batches_within_the_interval(engine: Engine) -> None:
    write_ticks(engine, minute_ticks("EUR/USD", OLD, 10))
    run(
        AggregatorService(
            engine, symbols=["EUR/USD"], wall_clock=lambda: NOW, registry=CollectorRegistry()
        )
    )
    registry = CollectorRegistry()

    # The clock jumps past the interval as soon as the first rows are gone.
    def clock() -> float:
        return 100.0 if len(tick_rows(engine, "EUR/USD")) < 10 else 0.0

    service = retention(
        engine,
        registry,
        drop_after_seconds={"ticks": WEEK},
        batch_size=3,
        interval_seconds=2.0,
        clock=clock,
    )
    run(service)
    assert deleted(registry, "ticks") == 3  # one batch, then the interval was over
    assert len(tick_rows(engine, "EUR/USD")) == 7
    run(service)  # a whole interval ahead: the rest, three at a time
    assert deleted(registry, "ticks") == 10
    assert tick_rows(engine, "EUR/USD") == []


def test_old_books_and_readings_go_once_aggregated_their_metrics_stay(engine: Engine) -> None:
    books = [
        BookSnapshot("BTCUSDT", OLD + i * 1_000, [(100.0 + i, 1.0)], [(100.5 + i, 2.0)])
        for i in range(6)
    ] + [BookSnapshot("BTCUSDT", RECENT, [(120.0, 1.0)], [(120.5, 1.0)])]
    write_dom(engine, books, wall_clock=lambda: NOW)
    write_sentiment(
        engine,
        [("EUR/USD", OLD + i * 60_000, 0.5 + i / 100, None, "ig") for i in range(4)]
        + [("EUR/USD", RECENT, 0.6, None, "ig")],
        wall_clock=lambda: NOW,
    )
    for service_type, symbol in (
        (DOMAggregatorService, "BTCUSDT"),
        (SentimentAggregatorService, "EUR/USD"),
    ):
        run(
            service_type(
                engine, symbols=[symbol], wall_clock=lambda: NOW, registry=CollectorRegistry()
            )
        )
    registry = CollectorRegistry()
    policies = {"dom_snapshots": WEEK, "sentiment_readings": WEEK}
    run(retention(engine, registry, drop_after_seconds=policies))
    assert count(engine, dom_snapshots) == 1
    assert count(engine, sentiment_readings) == 1
    assert deleted(registry, "dom_snapshots") == 6
    assert deleted(registry, "sentiment_readings") == 4
    assert count(engine, dom_metrics) == 7
    assert count(engine, sentiment_metrics) == 5


def test_one_minute_candles_have_their_own_retention(engine: Engine) -> None:
    write_ticks(engine, minute_ticks("EUR/USD", OLD, 30) + minute_ticks("EUR/USD", RECENT, 3))
    run(
        AggregatorService(
            engine, symbols=["EUR/USD"], wall_clock=lambda: NOW, registry=CollectorRegistry()
        )
    )
    higher = count(engine, candles) - count(engine, candles, timeframe="1m")
    registry = CollectorRegistry()
    run(retention(engine, registry, drop_after_seconds={"candles_1m": WEEK}))
    with engine.connect() as connection:
        minutes = (
            connection.execute(
                select(candles.c.ts_open)
                .where(candles.c.timeframe == "1m")
                .order_by(candles.c.ts_open)
            )
            .scalars()
            .all()
        )
    assert minutes == [RECENT - RECENT % 60_000 + i * 60_000 for i in range(3)]
    assert deleted(registry, "candles_1m") == 30
    assert count(engine, candles) - count(engine, candles, timeframe="1m") == higher
    assert len(tick_rows(engine, "EUR/USD")) == 33  # no retention for ticks: all kept


def test_each_table_is_a_child_span_of_the_iteration(engine: Engine) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    service = retention(
        engine,
        CollectorRegistry(),
        drop_after_seconds={"ticks": WEEK, "candles_1m": WEEK},
        tracer=provider.get_tracer("test"),
    )
    run(service)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    iteration = spans["RetentionService.iteration"]
    tables = [s for s in exporter.get_finished_spans() if s.name == "RetentionService.table"]
    assert sorted(str(s.attributes["mds.table"]) for s in tables) == ["candles_1m", "ticks"]  # type: ignore[index]
    assert all(
        s.parent is not None and s.parent.span_id == iteration.context.span_id for s in tables
    )


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ({"quotes": WEEK}, "no retention for 'quotes': valid tables are ticks, dom_snapshots"),
        ({"ticks": 0}, "retention of ticks must be > 0 seconds, got 0"),
        ({"candles_1m": 3_600}, "retention of candles_1m must be >= 172800 seconds"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_table(
    engine: Engine, policies: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RetentionService(engine, drop_after_seconds=policies, registry=CollectorRegistry())
