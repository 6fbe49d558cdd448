"""Demo tracks of order books and sentiment readings (see ``samples/README.md``).

They replay like the tick tracks: each row is written at its replay time through the same
validating writers a live feed uses (``write_dom``, ``write_sentiment``), and read from the
packaged files with the same parsers ``mds ingest`` uses.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from market_data_services.demo.symbols import BOOK_SAMPLES, SENTIMENT_SAMPLE, SENTIMENT_SYMBOLS
from market_data_services.ingest.dom import BookSnapshot, write_dom
from market_data_services.ingest.layouts.books import inspect_book_file, read_books
from market_data_services.ingest.layouts.sentiment import inspect_sentiment_file, read_readings
from market_data_services.ingest.sentiment import SentimentReading, write_sentiment

#: Levels a side the demo keeps of each book: the stream has 500, a tenth of a percent
#: around mid takes about 20, and the replay writes ten books a second (more when faster).
BOOK_LEVELS = 25


class BookTrack:
    """Order-book snapshots of one symbol."""

    kind = "books"

    def __init__(self, symbol: str, times_ms: list[int], books: list[tuple[Any, Any]]) -> None:
        if not times_ms:
            raise ValueError(f"{symbol}: a track needs at least one row")
        self.symbol = symbol
        self.times_ms = times_ms
        self.books = books

    def write(
        self, engine: Any, rows: Sequence[tuple[int, int]], registry: CollectorRegistry
    ) -> None:
        symbol, books = self.symbol, self.books
        write_dom(
            engine,
            [BookSnapshot(symbol, ts, books[i][0], books[i][1]) for i, ts in rows],
            registry=registry,
        )


class SentimentTrack:
    """Long shares (0..1) of one symbol."""

    kind = "sentiment"

    def __init__(self, symbol: str, times_ms: list[int], shares: list[float]) -> None:
        if not times_ms:
            raise ValueError(f"{symbol}: a track needs at least one row")
        self.symbol = symbol
        self.times_ms = times_ms
        self.shares = shares

    def write(
        self, engine: Any, rows: Sequence[tuple[int, int]], registry: CollectorRegistry
    ) -> None:
        symbol, shares = self.symbol, self.shares
        write_sentiment(
            engine,
            [SentimentReading(symbol, ts, shares[i], None, "demo") for i, ts in rows],
            registry=registry,
        )


def _packaged(name: str) -> Path:
    """A packaged sample as a file path (copied out when the package is zipped)."""
    resource = resources.files("market_data_services.demo").joinpath("samples", name)
    if isinstance(resource, Path):
        return resource
    target = Path(tempfile.mkdtemp(prefix="mds-demo-")) / name
    target.write_bytes(resource.read_bytes())
    return target


def read_book_sample(symbol: str, name: str) -> BookTrack:
    """The books of a packaged stream, best ``BOOK_LEVELS`` levels a side; a sample that
    does not parse cleanly fails loudly."""
    path = _packaged(name)
    times: list[int] = []
    books: list[tuple[Any, Any]] = []
    for chunk in read_books(inspect_book_file(path), zone=UTC):
        if chunk.rejections:
            raise ValueError(f"{name}: {chunk.rejections[0]}")
        batch = chunk.batch
        bid_ends, ask_ends = np.cumsum(batch.bid_counts), np.cumsum(batch.ask_counts)
        for i, ts in enumerate(chunk.ts.tolist()):
            if chunk.symbols[int(chunk.symbol_codes[i])] != symbol:
                continue
            bid_start = bid_ends[i] - batch.bid_counts[i]
            ask_start = ask_ends[i] - batch.ask_counts[i]
            bids = batch.bids[bid_start : min(bid_ends[i], bid_start + BOOK_LEVELS)]
            asks = batch.asks[ask_start : min(ask_ends[i], ask_start + BOOK_LEVELS)]
            times.append(ts)
            books.append((bids, asks))
    return BookTrack(symbol, times, books)


def read_sentiment_sample(symbol: str, name: str = SENTIMENT_SAMPLE) -> SentimentTrack:
    """One market of the packaged IG export (its clock's zone is unknown; only the
    spacing of its readings matters to a replay)."""
    path = _packaged(name)
    times: list[int] = []
    shares: list[float] = []
    for chunk in read_readings(inspect_sentiment_file(path), zone=UTC, source=None):
        if chunk.rejections:
            raise ValueError(f"{name}: {chunk.rejections[0]}")
        for i, ts in enumerate(chunk.ts.tolist()):
            if chunk.symbols[int(chunk.symbol_codes[i])] == symbol:
                times.append(ts)
                shares.append(float(chunk.long_share[i]))
    return SentimentTrack(symbol, times, shares)


def market_tracks() -> list[BookTrack | SentimentTrack]:
    """The packaged book and sentiment tracks."""
    tracks: list[BookTrack | SentimentTrack] = [
        read_book_sample(symbol, name) for symbol, name in BOOK_SAMPLES.items()
    ]
    tracks += [read_sentiment_sample(symbol) for symbol in SENTIMENT_SYMBOLS]
    return tracks


__all__ = [
    "BOOK_LEVELS",
    "BOOK_SAMPLES",
    "SENTIMENT_SAMPLE",
    "SENTIMENT_SYMBOLS",
    "BookTrack",
    "SentimentTrack",
    "market_tracks",
    "read_book_sample",
    "read_sentiment_sample",
]
