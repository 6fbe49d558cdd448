"""Order books for the DOM tests, and the metrics computed by hand.

Everything here is written from the definitions in the issue, one book at a time with
plain numpy, independently of the service's batch arithmetic: reading the real files
with ``csv``/``json``, rebuilding the Bybit book with a dict, and the metric formulas.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from market_data_services.storage import dom_metrics

COLUMNS = (
    "best_bid",
    "best_ask",
    "spread",
    "spread_bps",
    "mid",
    "microprice",
    "imbalance_1",
    "imbalance_5",
    "depth_bid_10bps",
    "depth_ask_10bps",
    "ofi",
)


class Book(NamedTuple):
    symbol: str
    ts: int
    bids: np.ndarray  # (k, 2) price, size; best first
    asks: np.ndarray


def tardis_books(path: Path) -> list[Book]:
    """A Tardis book_snapshot_N file, read with csv: levels in column order."""
    with gzip.open(path, "rt", newline="") as stream:
        rows = list(csv.DictReader(stream))
    books = []
    for row in rows:
        depth = sum(1 for key in row if key.startswith("bids[") and key.endswith(".price"))
        bids = [
            (float(row[f"bids[{i}].price"]), float(row[f"bids[{i}].amount"])) for i in range(depth)
        ]
        asks = [
            (float(row[f"asks[{i}].price"]), float(row[f"asks[{i}].amount"])) for i in range(depth)
        ]
        books.append(
            Book(row["symbol"], int(row["timestamp"]) // 1000, np.array(bids), np.array(asks))
        )
    return books


def bybit_books(path: Path) -> list[Book]:
    """The Bybit snapshot+delta stream, the book rebuilt in dicts after every message."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    books = []
    with gzip.open(path, "rt") as stream:
        for line in stream:
            message = json.loads(line)
            data = message["data"]
            if message["type"] == "snapshot":
                bids.clear()
                asks.clear()
            for side, key in ((bids, "b"), (asks, "a")):
                for price, size in data[key]:
                    if float(size) == 0:
                        side.pop(float(price), None)
                    else:
                        side[float(price)] = float(size)
            books.append(
                Book(
                    data["s"],
                    message["ts"],
                    np.array(sorted(bids.items(), reverse=True)),
                    np.array(sorted(asks.items())),
                )
            )
    return books


def random_books(
    seed: int, count: int, *, symbol: str = "EUR/USD", start_ms: int = 1_700_000_000_000
) -> list[Book]:
    """A random walk of books on a 0.0001 grid: 1-20 levels a side, gaps between levels,
    and now and then a crossed or locked top (real feeds have them)."""
    rng = np.random.default_rng(seed)
    tick = 0.0001
    mid_ticks = 10_850
    ts = start_ms
    books = []
    for _ in range(count):
        ts += int(rng.integers(1, 400))
        mid_ticks += int(rng.integers(-2, 3))
        half = int(rng.integers(1, 4))
        bid_top, ask_top = mid_ticks - half, mid_ticks + half
        roll = rng.random()
        if roll < 0.05:
            ask_top = bid_top - 1  # crossed
        elif roll < 0.1:
            ask_top = bid_top  # locked
        sides = []
        for top, sign in ((bid_top, -1), (ask_top, 1)):
            depth = int(rng.integers(1, 21))
            steps = np.cumsum(rng.integers(1, 4, size=depth)) - 1
            prices = (top + sign * steps) * tick
            sizes = np.round(rng.uniform(0.1, 50.0, size=depth), 2)
            sides.append(np.column_stack([prices, sizes]))
        books.append(Book(symbol, ts, sides[0], sides[1]))
    return books


def expected_metrics(books: list[Book]) -> list[dict[str, float]]:
    """The issue's definitions, one book at a time (books of one symbol, any order)."""
    rows = []
    previous: Book | None = None
    for book in sorted(books, key=lambda x: x.ts):
        b, qb = book.bids[0]
        a, qa = book.asks[0]
        mid = (b + a) / 2
        spread = a - b
        bid5 = book.bids[:5, 1].sum()
        ask5 = book.asks[:5, 1].sum()
        bid_in = 1e4 * np.abs(book.bids[:, 0] - mid) / mid <= 10
        ask_in = 1e4 * np.abs(book.asks[:, 0] - mid) / mid <= 10
        if previous is None:
            ofi = 0.0
        else:
            pb, pqb = previous.bids[0]
            pa, pqa = previous.asks[0]
            ofi = qb * (b >= pb) - pqb * (b <= pb) - qa * (a <= pa) + pqa * (a >= pa)
        rows.append(
            {
                "ts": book.ts,
                "best_bid": b,
                "best_ask": a,
                "spread": spread,
                "spread_bps": 1e4 * spread / mid,
                "mid": mid,
                "microprice": (a * qb + b * qa) / (qb + qa),
                "imbalance_1": (qb - qa) / (qb + qa),
                "imbalance_5": (bid5 - ask5) / (bid5 + ask5),
                "depth_bid_10bps": book.bids[bid_in, 1].sum(),
                "depth_ask_10bps": book.asks[ask_in, 1].sum(),
                "ofi": float(ofi),
            }
        )
        previous = book
    return rows


def stored_metrics(engine: Engine, symbol: str) -> list[dict[str, float]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(dom_metrics).where(dom_metrics.c.symbol == symbol).order_by(dom_metrics.c.ts)
        ).mappings()
        return [{k: v for k, v in row.items() if k != "symbol"} for row in rows]


def assert_metrics_equal(actual: list[dict[str, float]], expected: list[dict[str, float]]) -> None:
    assert [r["ts"] for r in actual] == [r["ts"] for r in expected]
    for column in COLUMNS:
        np.testing.assert_allclose(
            [r[column] for r in actual],
            [r[column] for r in expected],
            rtol=1e-12,
            atol=1e-12,
            err_msg=column,
        )
