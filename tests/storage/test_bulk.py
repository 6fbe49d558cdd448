from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from market_data_services.storage import (
    create_engine,
    dom_metrics,
    sentiment_metrics,
    ticks,
    upgrade,
)
from market_data_services.storage.bulk import insert_columns, upsert_columns
from market_data_services.storage.engine import begin_write
from market_data_services.storage.upsert import COPY_THRESHOLD

METRICS = [c.name for c in dom_metrics.c if c.name not in ("symbol", "ts")]


def metric_columns(count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = {name: rng.normal(0, 1e3, size=count) for name in METRICS}
    values["ofi"][:3] = [0.0, -0.0, 1e-300]
    return values


def read(engine: Engine, symbol: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(dom_metrics).where(dom_metrics.c.symbol == symbol).order_by(dom_metrics.c.ts)
        )
        return [tuple(row) for row in rows]


# 250: several multi-row statements and a remainder on SQLite.
@pytest.mark.parametrize("count", [3, COPY_THRESHOLD + 1, 250])
def test_columns_are_stored_to_the_bit_and_updated_on_conflict(engine: Engine, count: int) -> None:
    ts = np.arange(count, dtype=np.int64) * 1000 + 1_700_000_000_000
    first = metric_columns(count, 1)
    with begin_write(engine) as connection:
        written = upsert_columns(connection, dom_metrics, {"symbol": "EUR/USD", "ts": ts, **first})
    assert written == count
    expected = [
        ("EUR/USD", t, *(float(first[m][i]) for m in METRICS)) for i, t in enumerate(ts.tolist())
    ]
    assert read(engine, "EUR/USD") == expected
    second = metric_columns(count, 2)
    with begin_write(engine) as connection:
        upsert_columns(connection, dom_metrics, {"symbol": "EUR/USD", "ts": ts, **second})
    assert read(engine, "EUR/USD") == [
        ("EUR/USD", t, *(float(second[m][i]) for m in METRICS)) for i, t in enumerate(ts.tolist())
    ]


def test_an_upsert_overlapping_stored_rows_overwrites_those_and_keeps_the_others(
    engine: Engine,
) -> None:
    ts = np.arange(300, dtype=np.int64) * 1000 + 1_700_000_000_000
    first, second = metric_columns(300, 1), metric_columns(300, 2)
    with begin_write(engine) as connection:
        upsert_columns(
            connection, dom_metrics, {"symbol": "EUR/USD", "ts": ts[:200]} | cut(first, 0, 200)
        )
    with begin_write(engine) as connection:
        written = upsert_columns(
            connection, dom_metrics, {"symbol": "EUR/USD", "ts": ts[100:]} | cut(second, 100, 300)
        )
    assert written == 200  # 100 overwritten, 100 new
    expected = [
        ("EUR/USD", t, *(float((first if i < 100 else second)[m][i]) for m in METRICS))
        for i, t in enumerate(ts.tolist())
    ]
    assert read(engine, "EUR/USD") == expected


def cut(columns: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {name: values[start:stop] for name, values in columns.items()}


def test_small_integers_and_an_empty_text_go_through_binary_copy(engine: Engine) -> None:
    count = COPY_THRESHOLD
    signal = np.resize(np.array([-1, 0, 1], dtype=np.int64), count)
    ts = np.arange(count, dtype=np.int64)
    share = np.linspace(0, 1, count)
    with begin_write(engine) as connection:
        upsert_columns(
            connection,
            sentiment_metrics,
            {
                "symbol": "",
                "ts": ts,
                "long_share": share,
                "long_share_ema": share,
                "change_window": share,
                "window_min": share,
                "window_max": share,
                "signal": signal,
            },
        )
    with engine.connect() as connection:
        rows = connection.execute(
            select(sentiment_metrics.c.symbol, sentiment_metrics.c.signal).order_by(
                sentiment_metrics.c.ts
            )
        ).all()
    assert [tuple(r) for r in rows] == [("", s) for s in signal.tolist()]


def test_columns_of_different_lengths_are_refused(engine: Engine) -> None:
    with begin_write(engine) as connection, pytest.raises(ValueError, match="different lengths"):
        upsert_columns(connection, dom_metrics, {"ts": np.arange(3), "mid": np.arange(2.0)})


def stored_ticks(engine: Engine) -> list[tuple[object, ...]]:
    columns = [ticks.c.symbol, ticks.c.ts, ticks.c.seq, ticks.c.bid, ticks.c.ask, ticks.c.volume]
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(select(*columns).order_by(ticks.c.id))]


def tick_columns(count: int, symbol: str = "EUR/USD") -> dict[str, np.ndarray | str]:
    rng = np.random.default_rng(count)
    bid = np.round(1 + rng.random(count), 5)
    return {
        "symbol": symbol,
        # Times near 2**47 ms (year 6429): integers the float path must keep exact.
        "ts": np.arange(count, dtype=np.int64) * 7 + 140_737_488_355_328 - 3,
        "seq": np.arange(count, dtype=np.int64) % 3,
        "bid": bid,
        "ask": bid + 2e-5,
    }


# 1000 rows: several full SQLite statements and a shorter last one.
@pytest.mark.parametrize("count", [1, 1000])
def test_inserted_columns_are_stored_exactly_in_order(engine: Engine, count: int) -> None:
    columns = tick_columns(count)
    with begin_write(engine) as connection:
        assert insert_columns(connection, ticks, columns) == count
    rows = stored_ticks(engine)
    ts, seq, bid, ask = (columns[c] for c in ("ts", "seq", "bid", "ask"))
    assert isinstance(ts, np.ndarray)
    assert rows == [
        ("EUR/USD", int(t), int(q), float(b), float(a), None)
        for t, q, b, a in zip(ts, seq, bid, ask, strict=True)  # type: ignore[arg-type]
    ]
    assert all(type(r[1]) is int and type(r[2]) is int for r in rows)


def test_stored_rows_are_skipped_and_counted_only_when_asked(engine: Engine) -> None:
    first = tick_columns(10)
    with begin_write(engine) as connection:
        insert_columns(connection, ticks, first)
    again = tick_columns(15)  # the same 10 rows, then 5 new ones
    with begin_write(engine) as connection:
        written = insert_columns(connection, ticks, again, skip_existing=("symbol", "ts", "seq"))
    assert written == 5
    assert len(stored_ticks(engine)) == 15
    with pytest.raises((IntegrityError, psycopg.IntegrityError)), begin_write(engine) as connection:
        insert_columns(connection, ticks, first)
    assert len(stored_ticks(engine)) == 15


def test_a_skipping_insert_may_name_more_columns_than_the_last_one_on_its_connection(
    engine: Engine,
) -> None:
    # On PostgreSQL the rows go through a staging table kept on the connection: ticks
    # without volumes, then ticks with them, each over stored rows, must both go in.
    first = tick_columns(COPY_THRESHOLD)
    with begin_write(engine) as connection:
        insert_columns(connection, ticks, first)
    key = ("symbol", "ts", "seq")
    without = tick_columns(COPY_THRESHOLD + 10)
    with begin_write(engine) as connection:
        assert insert_columns(connection, ticks, without, skip_existing=key) == 10
    more = tick_columns(COPY_THRESHOLD + 20)
    volume = np.full(COPY_THRESHOLD + 20, 2.5)
    with begin_write(engine) as connection:
        written = insert_columns(connection, ticks, {**more, "volume": volume}, skip_existing=key)
    assert written == 10
    stored = stored_ticks(engine)
    assert [r[5] for r in stored[-10:]] == [2.5] * 10
    assert [r[5] for r in stored[:-10]] == [None] * (COPY_THRESHOLD + 10)


def test_nan_in_a_float_column_is_stored_as_null(engine: Engine) -> None:
    columns = tick_columns(COPY_THRESHOLD)
    volume = np.arange(COPY_THRESHOLD, dtype=np.float64)
    volume[::2] = np.nan
    with begin_write(engine) as connection:
        insert_columns(connection, ticks, {**columns, "volume": volume})
    stored = [r[5] for r in stored_ticks(engine)]
    assert stored == [None if i % 2 == 0 else float(i) for i in range(COPY_THRESHOLD)]


def test_integers_a_float_cannot_hold_are_refused_on_sqlite(tmp_path: Path) -> None:
    """The SQLite path sends integers as floats; it refuses rather than round them."""
    engine = create_engine(f"sqlite:///{tmp_path / 'ticks.sqlite'}")
    upgrade(engine)
    columns = tick_columns(2)
    columns["ts"] = np.array([0, 2**53 + 1], dtype=np.int64)
    refused = pytest.raises(ValueError, match=r"ticks\.ts: values beyond 2\*\*53")
    with refused, begin_write(engine) as connection:
        insert_columns(connection, ticks, columns)
