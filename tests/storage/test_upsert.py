from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from market_data_services.storage import candles, ticks, upsert

CANDLE_COLUMNS = [
    "symbol",
    "timeframe",
    "ts_open",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "tick_count",
]


def candle(ts: int, close: float) -> tuple[object, ...]:
    return ("EUR/USD", "1m", ts, 1.0, 2.0, 0.5, close, 3.0, 3)


def stored_closes(engine: Engine) -> dict[int, float]:
    with engine.connect() as connection:
        rows = connection.execute(select(candles.c.ts_open, candles.c.close)).all()
    return {ts: close for ts, close in rows}


def test_upsert_inserts_new_rows_and_overwrites_existing_ones(engine: Engine) -> None:
    with engine.begin() as connection:
        upsert(connection, candles, [candle(0, 1.1), candle(60_000, 1.2)], columns=CANDLE_COLUMNS)
    with engine.begin() as connection:
        upsert(
            connection, candles, [candle(60_000, 1.3), candle(120_000, 1.4)], columns=CANDLE_COLUMNS
        )
    assert stored_closes(engine) == {0: 1.1, 60_000: 1.3, 120_000: 1.4}


def test_upsert_twice_gives_the_same_table(engine: Engine) -> None:
    rows = [candle(i * 60_000, 1.0 + i / 100) for i in range(50)]
    for _ in range(2):
        with engine.begin() as connection:
            upsert(connection, candles, rows, columns=CANDLE_COLUMNS)
    assert stored_closes(engine) == {i * 60_000: 1.0 + i / 100 for i in range(50)}


def test_upsert_without_update_keeps_stored_rows_and_counts_only_new_ones(engine: Engine) -> None:
    with engine.begin() as connection:
        upsert(connection, candles, [candle(0, 1.1)], columns=CANDLE_COLUMNS)
    with engine.begin() as connection:
        written = upsert(
            connection,
            candles,
            [candle(0, 9.9), candle(60_000, 1.2)],
            columns=CANDLE_COLUMNS,
            update=(),
        )
    assert written == 1
    assert stored_closes(engine) == {0: 1.1, 60_000: 1.2}


def test_upsert_accepts_mappings_and_spans_several_batches(engine: Engine) -> None:
    rows = [dict(zip(CANDLE_COLUMNS, candle(i * 60_000, float(i)), strict=True)) for i in range(25)]
    with engine.begin() as connection:
        written = upsert(connection, candles, rows, batch_size=7)
    assert written == 25
    assert stored_closes(engine) == {i * 60_000: float(i) for i in range(25)}


def test_upsert_on_a_unique_key_other_than_the_primary_key(engine: Engine) -> None:
    columns = ["symbol", "ts", "seq", "bid", "ask", "volume"]
    with engine.begin() as connection:
        first = upsert(
            connection,
            ticks,
            [("X", 1, 0, 1.0, 1.1, None), ("X", 1, 1, 1.0, 1.2, None)],
            columns=columns,
            key=["symbol", "ts", "seq"],
            update=(),
        )
        again = upsert(
            connection,
            ticks,
            [("X", 1, 0, 1.0, 1.1, None)],
            columns=columns,
            key=["symbol", "ts", "seq"],
            update=(),
        )
    with engine.connect() as connection:
        count = len(connection.execute(select(ticks.c.id)).all())
    assert (first, again, count) == (2, 0, 2)


def test_a_rolled_back_transaction_leaves_nothing(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as connection:
        upsert(connection, candles, [candle(0, 1.1)], columns=CANDLE_COLUMNS)
        raise RuntimeError("abort")
    assert stored_closes(engine) == {}


def test_upsert_names_an_unknown_column(engine: Engine) -> None:
    with engine.begin() as connection, pytest.raises(ValueError, match="no column 'price'"):
        upsert(connection, candles, [("X", 1.0)], columns=["symbol", "price"])


def test_upsert_needs_the_key_columns_in_the_rows(engine: Engine) -> None:
    with engine.begin() as connection, pytest.raises(ValueError, match="key column 'ts_open'"):
        upsert(connection, candles, [("X", "1m")], columns=["symbol", "timeframe"])


def test_large_batches_with_different_columns_on_one_connection(engine: Engine) -> None:
    """PostgreSQL stages big batches in a temporary table kept per connection."""
    many = 1_500  # above the COPY threshold
    with engine.begin() as connection:
        first = upsert(
            connection,
            ticks,
            [("X", i, 0, 1.0, 1.1) for i in range(many)],
            columns=["symbol", "ts", "seq", "bid", "ask"],
            key=["symbol", "ts", "seq"],
            update=(),
        )
        second = upsert(
            connection,
            ticks,
            [("X", i, 0, 1.0, 1.1, 2.0) for i in range(many, 2 * many)],
            columns=["symbol", "ts", "seq", "bid", "ask", "volume"],
            key=["symbol", "ts", "seq"],
            update=(),
        )
    with engine.connect() as connection:
        volumes = connection.execute(select(ticks.c.volume).order_by(ticks.c.id)).scalars().all()
    assert (first, second) == (many, many)
    assert volumes == [None] * many + [2.0] * many
