from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from market_data_services.storage import dom_metrics, sentiment_metrics
from market_data_services.storage.bulk import upsert_columns
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


@pytest.mark.parametrize("count", [3, COPY_THRESHOLD + 1])
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
