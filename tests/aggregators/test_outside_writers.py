"""Programs of the user's that write raw rows on PostgreSQL with plain INSERT or COPY,
without any lock of ours, in transactions that commit out of id order: every row still
reaches the derived tables (issue 14, point 3; storage/arrival.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.engine import Engine, make_url

from market_data_services import (
    AggregatorService,
    DOMAggregatorService,
    SentimentAggregatorService,
)
from market_data_services.market.book import pack_levels
from market_data_services.runtime import IterationOutcome, ThreadedBackgroundService
from market_data_services.storage import create_engine, dom_metrics, sentiment_metrics, upgrade
from tests.aggregators.candles.reference import (
    FakeClock,
    RefTick,
    expected_candles,
    stored_candles,
)
from tests.databases import DatabaseFactory

pytestmark = pytest.mark.postgres

T0 = int(datetime(2024, 3, 4, 9, 0, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000
LATER = T0 / 1000 + 2 * 86_400


@pytest.fixture
def pg_engine(database_factory: DatabaseFactory) -> Iterator[Engine]:
    url = database_factory.url("postgresql")
    engine = create_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
    database_factory.drop(url)


def connect(engine: Engine) -> psycopg.Connection[tuple[object, ...]]:
    """A plain psycopg connection, as a user's program would open: no code of ours."""
    url = make_url(engine.url).set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False))


def run(service: ThreadedBackgroundService) -> None:
    outcome = service.run_once()
    assert outcome is IterationOutcome.SUCCEEDED, service.get_metrics()["recent_errors"]


def insert_tick(writer: psycopg.Connection[tuple[object, ...]], tick: RefTick) -> int:
    row = writer.execute(
        "INSERT INTO ticks (symbol, ts, seq, bid, ask) VALUES (%s, %s, 0, %s, %s) RETURNING id",
        (tick.symbol, tick.ts, tick.bid, tick.ask),
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def tick(minute: int, bid: float) -> RefTick:
    return RefTick("EUR/USD", T0 + minute * MIN + 5_000, 0, bid, round(bid + 0.0001, 5))


def test_ticks_committed_out_of_id_order_by_two_outside_writers_all_reach_the_candles(
    pg_engine: Engine,
) -> None:
    svc = AggregatorService(
        pg_engine, symbols=["EUR/USD"], wall_clock=FakeClock(LATER), registry=CollectorRegistry()
    )
    first = tick(0, 1.1000)
    with connect(pg_engine) as setup:
        insert_tick(setup, first)
    run(svc)  # the history so far; from here on the service reads by watermark

    early, late = [tick(1, 1.1010)], [tick(2, 1.1020), tick(3, 1.1030)]
    a, b = connect(pg_engine), connect(pg_engine)
    try:
        early_id = insert_tick(a, early[0])  # A takes the lower id and keeps it open
        with b.cursor().copy("COPY ticks (symbol, ts, seq, bid, ask) FROM STDIN") as copy:
            for t in late:
                copy.write_row((t.symbol, t.ts, 0, t.bid, t.ask))
        b.commit()  # B's higher ids are visible first
        late_ids = [
            int(str(r[0])) for r in b.execute("SELECT id FROM ticks WHERE ts >= %s", (late[0].ts,))
        ]
        assert min(late_ids) > early_id
        run(svc)  # sees B's rows committed, A's id below them still in flight
        a.commit()
        run(svc)
    finally:
        a.close()
        b.close()
    assert stored_candles(pg_engine) == expected_candles([first, *early, *late])


def test_books_committed_out_of_id_order_by_two_outside_writers_all_get_metrics(
    pg_engine: Engine,
) -> None:
    svc = DOMAggregatorService(
        pg_engine, symbols=["BTCUSDT"], wall_clock=lambda: LATER, registry=CollectorRegistry()
    )
    sql = "INSERT INTO dom_snapshots (symbol, ts, bids, asks) VALUES ('BTCUSDT', %s, %s, %s)"

    def book(i: int) -> tuple[int, bytes, bytes]:
        price = 100.0 + i
        return T0 + i * 1_000, pack_levels([[price, 1.0]]), pack_levels([[price + 0.5, 2.0]])

    with connect(pg_engine) as setup:
        setup.execute(sql, book(0))
    run(svc)
    a, b = connect(pg_engine), connect(pg_engine)
    try:
        a.execute(sql, book(1))
        b.execute(sql, book(2))
        b.execute(sql, book(3))
        b.commit()
        run(svc)
        a.commit()
        run(svc)
    finally:
        a.close()
        b.close()
    with pg_engine.connect() as connection:
        stored = connection.execute(select(dom_metrics.c.ts).order_by(dom_metrics.c.ts)).all()
    assert [row[0] for row in stored] == [book(i)[0] for i in range(4)]


def test_sentiment_committed_out_of_id_order_by_two_outside_writers_all_get_metrics(
    pg_engine: Engine,
) -> None:
    svc = SentimentAggregatorService(
        pg_engine, symbols=["EUR/USD"], wall_clock=lambda: LATER, registry=CollectorRegistry()
    )
    sql = (
        "INSERT INTO sentiment_readings (symbol, ts, source, long_share, short_share) "
        "VALUES ('EUR/USD', %s, 'ig', %s, %s)"
    )

    def reading(i: int) -> tuple[int, float, float]:
        return T0 + i * MIN, 0.5 + i / 100, 0.5 - i / 100

    with connect(pg_engine) as setup:
        setup.execute(sql, reading(0))
    run(svc)
    a, b = connect(pg_engine), connect(pg_engine)
    try:
        a.execute(sql, reading(1))
        b.execute(sql, reading(2))
        b.commit()
        run(svc)
        a.commit()
        run(svc)
    finally:
        a.close()
        b.close()
    with pg_engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(sentiment_metrics)).scalar()
        shares = connection.execute(
            select(sentiment_metrics.c.long_share).order_by(sentiment_metrics.c.ts)
        ).all()
    assert count == 3
    assert [round(r[0], 6) for r in shares] == [0.5, 0.51, 0.52]


def test_ticks_of_many_interleaved_outside_transactions_all_reach_the_candles(
    pg_engine: Engine,
) -> None:
    """Two writers, each keeping a transaction open while the other commits, 20 times,
    while the candle service runs passes in between."""
    svc = AggregatorService(
        pg_engine, symbols=["EUR/USD"], wall_clock=FakeClock(LATER), registry=CollectorRegistry()
    )
    written: list[RefTick] = [tick(0, 1.1)]
    with connect(pg_engine) as setup:
        insert_tick(setup, written[0])
    run(svc)
    a, b = connect(pg_engine), connect(pg_engine)
    try:
        for round_number in range(20):
            first, second = (a, b) if round_number % 2 else (b, a)
            minute = 1 + 3 * round_number
            opened = [tick(minute, 1.1 + round_number / 1e4)]
            insert_tick(first, opened[0])  # the lower id, left open
            run(svc)
            committed = [tick(minute + 1, 1.2), tick(minute + 2, 1.3)]
            for t in committed:
                insert_tick(second, t)
            second.commit()
            run(svc)
            first.commit()
            written += opened + committed
        run(svc)
    finally:
        a.close()
        b.close()
    assert stored_candles(pg_engine) == expected_candles(written)
