"""What every order-book layout shares: the file and parsed-book types, collecting books
into chunks, levels from JSON, and books rebuilt from snapshot and delta messages."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from market_data_services.ingest.files import (
    FileTimes,
    WrongFileKindError,
    find_files,
    first_csv_cells,
    first_json_values,
    parse_number,
    read_limits,
)
from market_data_services.ingest.layouts.base import Layout
from market_data_services.ingest.pipeline import Rejection
from market_data_services.market.book import BookBatch, FloatArray, IntArray

#: Name endings ``find_book_files`` picks from a directory.
BOOK_FILE_SUFFIXES = (
    ".jsonl",
    ".jsonl.gz",
    ".json",
    ".json.gz",
    ".ndjson",
    ".csv",
    ".csv.gz",
    ".data",
    ".data.gz",
    ".zip",
    ".gz",
)
#: Flush a chunk at this many books or this many levels (both sides), whichever first.
CHUNK_BOOKS = 50_000
CHUNK_LEVELS = 2_000_000


class NotABookFileError(WrongFileKindError):
    """A file that is not order-book data at all."""

    kind = "an order-book"


@dataclass(frozen=True)
class BookFile:
    """A file whose layout is known: what ``inspect_book_file`` found."""

    path: Path
    layout: str
    columns: tuple[str, ...] = ()  # CSV layouts: the header
    #: The unit of epoch-number times as stated (auto: told by the first one) ...
    time_unit: str = "auto"
    #: ... and, with auto, the unit the first one told (None: no epoch number seen).
    told_unit: str | None = None
    #: Where the time is: the JSON key (``ts``) or the CSV column (``timestamp``).
    time_column: str = "timestamp"

    def times(self, zone: tzinfo = UTC, latest_ms: int | None = None) -> FileTimes:
        """A reader of this file's times (its ``time_column``)."""
        return FileTimes(
            self.path,
            self.time_column,
            unit=self.time_unit,
            told=self.told_unit,
            zone=zone,
            latest_ms=latest_ms,
        )


@dataclass
class RawBooks:
    """Parsed books of one source (or one chunk of it), not yet validated."""

    source: str
    symbols: list[str]
    symbol_codes: npt.NDArray[np.int32]
    ts: IntArray
    lines: IntArray
    batch: BookBatch
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ts.shape[0])


class BookLayout(Layout[BookFile, RawBooks]):
    """What the order-book layouts share: the kind, its error, and judging a file's first
    time (``ts`` of JSON lines, the ``timestamp`` column of CSV)."""

    kind = "dom"
    error = NotABookFileError
    #: JSON lines (time in the key ``time_column``) or CSV (time in that column).
    json_lines: ClassVar[bool] = False
    time_column: ClassVar[str] = "timestamp"

    def file(self, path: Path, columns: tuple[str, ...] = ()) -> BookFile:
        return BookFile(path, self.name, columns, time_column=self.time_column)

    def empty(self, path: Path) -> BookFile:
        return self.file(path)

    def judged(self, found: BookFile, *, time_unit: str, latest_ms: int | None) -> BookFile:
        """``found`` with its time unit, refused when its first time is implausible."""
        found = dataclasses.replace(found, time_unit=time_unit)
        times = found.times(latest_ms=latest_ms)
        column = self.time_column
        if self.json_lines:
            times.judge_first(first_json_values(found.path, NotABookFileError, column))
        elif column in found.columns:
            index = found.columns.index(column)
            times.judge_first(first_csv_cells(found.path, NotABookFileError, index))
        return dataclasses.replace(found, told_unit=times.told)


def csv_header(first: str) -> tuple[str, ...]:
    """The column names of a CSV header line, unquoted."""
    return tuple(c.strip().strip('"') for c in next(csv.reader([first])))


def find_book_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the order-book files under the directories named."""
    return find_files(paths, BOOK_FILE_SUFFIXES)


class Collector:
    """Books of one chunk as lists, turned into arrays when the chunk is full."""

    def __init__(self, source: str, symbols: list[str], codes: dict[str, int]) -> None:
        self.source = source
        self.symbols = symbols
        self.codes = codes
        self.symbol_codes: list[int] = []
        self.ts: list[int] = []
        self.lines: list[int] = []
        self.bids: list[FloatArray] = []
        self.asks: list[FloatArray] = []
        self.levels = 0
        self.rejections: list[Rejection] = []

    def add(self, symbol: str, ts: int, line: int, bids: FloatArray, asks: FloatArray) -> None:
        code = self.codes.get(symbol)
        if code is None:
            code = self.codes[symbol] = len(self.symbols)
            self.symbols.append(symbol)
        self.symbol_codes.append(code)
        self.ts.append(ts)
        self.lines.append(line)
        self.bids.append(bids)
        self.asks.append(asks)
        self.levels += bids.shape[0] + asks.shape[0]

    def reject(self, line: int, reason: str, message: str) -> None:
        self.rejections.append(Rejection(self.source, line, reason, message))

    def full(self) -> bool:
        """Books, levels or rejected rows enough for one chunk (rejections count too, so
        a file of bad lines is held a chunk at a time)."""
        return len(self) >= CHUNK_BOOKS or self.levels >= CHUNK_LEVELS

    def __len__(self) -> int:
        return len(self.ts) + len(self.rejections)

    def arrays(self) -> RawBooks:
        def side(levels: list[FloatArray]) -> tuple[IntArray, FloatArray]:
            counts = np.fromiter((x.shape[0] for x in levels), dtype=np.int64, count=len(levels))
            flat = np.concatenate(levels) if levels else np.empty((0, 2))
            return counts, flat.reshape(-1, 2)

        bid_counts, bids = side(self.bids)
        ask_counts, asks = side(self.asks)
        return RawBooks(
            source=self.source,
            symbols=list(self.symbols),
            symbol_codes=np.array(self.symbol_codes, dtype=np.int32),
            ts=np.array(self.ts, dtype=np.int64),
            lines=np.array(self.lines, dtype=np.int64),
            batch=BookBatch(bid_counts, bids, ask_counts, asks),
            rejections=self.rejections,
        )


class TooManyLevelsError(ValueError):
    """A side of a book with more levels than ``ReadLimits.max_book_levels``."""


def check_depth(count: int, name: str) -> None:
    """Raise ``TooManyLevelsError`` when ``count`` levels of ``name`` are over the limit."""
    limit = read_limits().max_book_levels
    if count > limit:
        raise TooManyLevelsError(
            f"{name} has {count:,} levels, over the limit of {limit:,} (ingest.max_book_levels)"
        )


def levels(value: Any, name: str) -> FloatArray:
    """``[[price, size], ...]`` (numbers or numeric strings) as a ``(k, 2)`` array; more
    pairs than ``max_book_levels`` raise ``TooManyLevelsError`` before any is read."""
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of [price, size] pairs, got {value!r:.60}")
    check_depth(len(value), name)
    if not value:
        return np.empty((0, 2))
    try:
        array = np.array(value)
        if array.dtype.kind not in "iuf":  # numeric strings: strictly, one by one
            array = np.array(
                [[parse_number(cell, "price or size") for cell in pair] for pair in value],
                dtype=np.float64,
            )
        else:
            array = array.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must be a list of [price, size] pairs")
    return array


class Book:
    """One symbol's book as price -> size per side, changed by snapshots and deltas."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def replace(self, bids: FloatArray, asks: FloatArray) -> None:
        self.bids = dict(zip(bids[:, 0].tolist(), bids[:, 1].tolist(), strict=True))
        self.asks = dict(zip(asks[:, 0].tolist(), asks[:, 1].tolist(), strict=True))

    def apply(self, bids: FloatArray, asks: FloatArray, symbol: str) -> None:
        """Apply a delta (size 0 removes a level); raise ``TooManyLevelsError`` when it
        grows a side of ``symbol``'s book over ``ingest.max_book_levels``."""
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, size in zip(levels[:, 0].tolist(), levels[:, 1].tolist(), strict=True):
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size
        check_depth(len(self.bids), f"{symbol}: the rebuilt book's bids")
        check_depth(len(self.asks), f"{symbol}: the rebuilt book's asks")

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        bids = np.array(sorted(self.bids.items(), reverse=True), dtype=np.float64)
        asks = np.array(sorted(self.asks.items()), dtype=np.float64)
        return bids.reshape(-1, 2), asks.reshape(-1, 2)


def check_update(bids: FloatArray, asks: FloatArray, *, delta: bool) -> tuple[str, str] | None:
    """A reason and message when a message's levels cannot be applied to a book."""
    for name, levels in (("bids", bids), ("asks", asks)):
        if levels.shape[0] == 0:
            continue
        price, size = levels[:, 0], levels[:, 1]
        if not (np.isfinite(price).all() and np.isfinite(size).all()):
            return "not_finite", f"{name}: a price or size is not a finite number"
        if (price <= 0).any():
            return "non_positive_price", f"{name}: price must be > 0, got {price.min()}"
        if (size < 0).any() or (not delta and (size == 0).any()):
            bound = ">= 0 (0 removes the level)" if delta else "> 0"
            return "non_positive_size", f"{name}: size must be {bound}, got {size.min()}"
        if not delta:
            unique, counts = np.unique(price, return_counts=True)
            if (counts > 1).any():
                repeated = float(unique[counts > 1][0])
                return "duplicate_level", f"{name}: price {repeated} is listed twice"
    return None


__all__ = [
    "BOOK_FILE_SUFFIXES",
    "CHUNK_BOOKS",
    "CHUNK_LEVELS",
    "Book",
    "BookFile",
    "BookLayout",
    "Collector",
    "NotABookFileError",
    "RawBooks",
    "TooManyLevelsError",
    "check_depth",
    "check_update",
    "csv_header",
    "find_book_files",
    "levels",
]
