"""Reading order-book files: telling their layout, parsing them into book batches.

Layouts (told from the first line, or forced):

- ``jsonl``: our JSON lines, one snapshot a line:
  ``{"symbol": "EUR/USD", "ts": "2024-03-06T21:37:12.345Z", "bids": [[1.0849, 2.5], ...],
  "asks": [[1.0851, 1.0], ...]}``; ``ts`` ISO-8601 (in ``--tz`` without an offset) or an
  epoch number; prices and sizes numbers or numeric strings.
- ``tardis``: Tardis ``book_snapshot_N`` CSV (any N): ``exchange,symbol,timestamp,
  local_timestamp,asks[0].price,asks[0].amount,bids[0].price,...``; ``timestamp`` in
  microseconds since the epoch; empty cells are absent levels (only at the end).
- ``bybit``: Bybit ``orderbook.N`` websocket JSON lines: a ``snapshot`` message, then
  ``delta`` messages where size 0 removes a level. The book is rebuilt and every message
  yields a snapshot.
- ``binance``: Binance depth CSV, one level a row: ``symbol,timestamp,first_update_id,
  last_update_id,side,update_type,price,qty,pu``. Rows of one update id form one message;
  ``snap`` messages replace the book, ``set`` messages change levels (qty 0 removes).

Epoch numbers are read in one unit per file (``FileTimes``): stated, or told by the size
of the file's first time (which gives Tardis's microseconds and the exchanges'
milliseconds). Parsing yields ``RawBooks``: a ``BookBatch`` plus symbol, time and line per
book, and the messages that could not be parsed, each with its file and line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from market_data_services.ingest.files import (
    FileTimes,
    TimeOutOfRangeError,
    WrongFileKindError,
    check_time_unit,
    find_files,
    first_csv_cells,
    first_json_values,
    first_line,
    open_text,
    read_head,
)
from market_data_services.ingest.pipeline import Rejection
from market_data_services.market.book import BookBatch, FloatArray, IntArray

LAYOUTS = ("jsonl", "tardis", "bybit", "binance")
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
_TARDIS_LEVEL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")
_BINANCE_COLUMNS = (
    "symbol",
    "timestamp",
    "first_update_id",
    "last_update_id",
    "side",
    "update_type",
    "price",
    "qty",
    "pu",
)
_EXPECTED = (
    "expected JSON lines of snapshots {symbol, ts, bids, asks} (jsonl), Bybit orderbook "
    "messages (bybit), a Tardis book_snapshot_N header (tardis) or a Binance depth header "
    "symbol,timestamp,...,side,update_type,price,qty,pu (binance)"
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

    def times(self, zone: tzinfo = UTC, latest_ms: int | None = None) -> FileTimes:
        """A reader of this file's times (its time column: ``ts`` or ``timestamp``)."""
        column = "ts" if self.layout in ("jsonl", "bybit") else "timestamp"
        return FileTimes(
            self.path,
            column,
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


def find_book_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the order-book files under the directories named."""
    return find_files(paths, BOOK_FILE_SUFFIXES)


def inspect_book_file(
    path: Path, layout: str | None = None, *, time_unit: str = "auto", latest_ms: int | None = None
) -> BookFile:
    """Tell the layout of ``path`` (or check the forced one) from its first line, and the
    unit of its times from its first time.

    Raises ImplausibleTimeError when that time is before 1990 or after ``latest_ms``
    (default: an hour from now) in the unit read.
    """
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    check_time_unit(time_unit)
    found = dataclasses.replace(_inspect_layout(path, layout), time_unit=time_unit)
    times = found.times(latest_ms=latest_ms)
    if found.layout in ("jsonl", "bybit"):
        times.judge_first(first_json_values(path, NotABookFileError, "ts"))
    elif "timestamp" in found.columns:
        index = found.columns.index("timestamp")
        times.judge_first(first_csv_cells(path, NotABookFileError, index))
    return dataclasses.replace(found, told_unit=times.told)


def _inspect_layout(path: Path, layout: str | None) -> BookFile:
    head = read_head(path, NotABookFileError)
    first = first_line(head)
    if not first:
        return BookFile(path, layout or "jsonl")
    found: BookFile | None = None
    if first.startswith("{"):
        # A Bybit snapshot line is longer than the head; the keys near its start tell it.
        if re.search(r'"topic"\s*:\s*"orderbook', first) or re.search(
            r'"type"\s*:\s*"(snapshot|delta)"', first
        ):
            found = BookFile(path, "bybit")
        elif re.search(r'"(bids|asks)"\s*:', first):
            found = BookFile(path, "jsonl")
    else:
        columns = tuple(c.strip().strip('"') for c in next(csv.reader([first])))
        if any(_TARDIS_LEVEL.match(c) for c in columns):
            found = BookFile(path, "tardis", columns)
            _tardis_columns(found)  # raises for a header it cannot read
        elif tuple(c.lower() for c in columns[: len(_BINANCE_COLUMNS)]) == _BINANCE_COLUMNS:
            found = BookFile(path, "binance", tuple(c.lower() for c in columns))
    if found is None:
        raise NotABookFileError(
            path, f"the first line {first[:60]!r} is none of these: {_EXPECTED}"
        )
    if layout is not None and found.layout != layout:
        raise NotABookFileError(
            path,
            f"it looks like the {found.layout} layout, not {layout} (try --layout {found.layout})",
        )
    return found


class _Collector:
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
        return len(self.ts) >= CHUNK_BOOKS or self.levels >= CHUNK_LEVELS

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


def _levels(value: Any, name: str) -> FloatArray:
    """``[[price, size], ...]`` (numbers or numeric strings) as a ``(k, 2)`` array."""
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of [price, size] pairs, got {value!r:.60}")
    if not value:
        return np.empty((0, 2))
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must be a list of [price, size] pairs")
    return array


# -- jsonl ---------------------------------------------------------------------------------


def _read_jsonl(book_file: BookFile, zone: tzinfo) -> Iterator[RawBooks]:
    source = str(book_file.path)
    times = book_file.times(zone)
    symbols: list[str] = []
    codes: dict[str, int] = {}
    chunk = _Collector(source, symbols, codes)
    with open_text(book_file.path, NotABookFileError) as stream:
        for number, raw in enumerate(stream, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("a line must be a JSON object {symbol, ts, bids, asks}")
                missing = [k for k in ("symbol", "ts", "bids", "asks") if k not in message]
                if missing:
                    raise ValueError(f"missing key {missing[0]!r}")
                symbol = message["symbol"]
                if not isinstance(symbol, str):
                    raise ValueError(f"symbol must be text, got {symbol!r}")
                ts = times.parse(message["ts"])
                bids = _levels(message["bids"], "bids")
                asks = _levels(message["asks"], "asks")
            except TimeOutOfRangeError as exc:
                chunk.reject(number, "timestamp_out_of_range", str(exc))
                continue
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                chunk.reject(number, "malformed", f"{exc}; line {line[:80]!r}")
                continue
            chunk.add(symbol, ts, number, bids, asks)
            if chunk.full():
                yield chunk.arrays()
                chunk = _Collector(source, symbols, codes)
    yield chunk.arrays()


# -- tardis --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TardisColumns:
    symbol: int
    timestamp: int
    bid_price: list[int]
    bid_amount: list[int]
    ask_price: list[int]
    ask_amount: list[int]


def _tardis_columns(book_file: BookFile) -> _TardisColumns:
    columns = book_file.columns
    position = {name: i for i, name in enumerate(columns)}
    for needed in ("symbol", "timestamp"):
        if needed not in position:
            raise NotABookFileError(book_file.path, f"the Tardis header has no {needed!r} column")
    found: dict[tuple[str, str], dict[int, int]] = {}
    for i, name in enumerate(columns):
        match = _TARDIS_LEVEL.match(name)
        if match:
            found.setdefault((match[1], match[3]), {})[int(match[2])] = i
    depth = max((max(v) + 1 for v in found.values()), default=0)
    lists: dict[tuple[str, str], list[int]] = {}
    for side in ("bids", "asks"):
        for part in ("price", "amount"):
            got = found.get((side, part), {})
            gaps = [level for level in range(depth) if level not in got]
            if gaps:
                raise NotABookFileError(
                    book_file.path, f"the Tardis header has no {side}[{gaps[0]}].{part} column"
                )
            lists[(side, part)] = [got[level] for level in range(depth)]
    return _TardisColumns(
        position["symbol"],
        position["timestamp"],
        lists[("bids", "price")],
        lists[("bids", "amount")],
        lists[("asks", "price")],
        lists[("asks", "amount")],
    )


def _tardis_side(values: list[str], prices: list[int], amounts: list[int], side: str) -> FloatArray:
    pairs: list[tuple[float, float]] = []
    ended = -1
    for level, (i, j) in enumerate(zip(prices, amounts, strict=True)):
        price, amount = values[i], values[j]
        if not price and not amount:
            if ended < 0:
                ended = level
            continue
        if ended >= 0:
            raise ValueError(f"{side}[{level}] is given after the empty {side}[{ended}]")
        pairs.append((float(price), float(amount)))
    return np.array(pairs, dtype=np.float64).reshape(-1, 2)


def _read_tardis(book_file: BookFile) -> Iterator[RawBooks]:
    source = str(book_file.path)
    times = book_file.times()
    layout = _tardis_columns(book_file)
    width = len(book_file.columns)
    symbols: list[str] = []
    codes: dict[str, int] = {}
    chunk = _Collector(source, symbols, codes)
    with open_text(book_file.path, NotABookFileError) as stream:
        reader = csv.reader(stream)
        header_seen = False
        for row in reader:
            number = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if not header_seen:
                header_seen = True
                continue
            try:
                if len(row) != width:
                    raise ValueError(f"expected {width} fields, got {len(row)}")
                symbol = row[layout.symbol].strip()
                if not symbol:
                    raise ValueError("the symbol field is empty")
                ts = times.parse(row[layout.timestamp])
                bids = _tardis_side(row, layout.bid_price, layout.bid_amount, "bids")
                asks = _tardis_side(row, layout.ask_price, layout.ask_amount, "asks")
            except TimeOutOfRangeError as exc:
                chunk.reject(number, "timestamp_out_of_range", str(exc))
                continue
            except ValueError as exc:
                text = ",".join(row)
                chunk.reject(number, "malformed", f"{exc}; row {text[:80]!r}")
                continue
            chunk.add(symbol, ts, number, bids, asks)
            if chunk.full():
                yield chunk.arrays()
                chunk = _Collector(source, symbols, codes)
    yield chunk.arrays()


# -- books rebuilt from deltas -------------------------------------------------------------


class _Book:
    """One symbol's book as price -> size per side, changed by snapshots and deltas."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def replace(self, bids: FloatArray, asks: FloatArray) -> None:
        self.bids = dict(zip(bids[:, 0].tolist(), bids[:, 1].tolist(), strict=True))
        self.asks = dict(zip(asks[:, 0].tolist(), asks[:, 1].tolist(), strict=True))

    def apply(self, bids: FloatArray, asks: FloatArray) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, size in zip(levels[:, 0].tolist(), levels[:, 1].tolist(), strict=True):
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        bids = np.array(sorted(self.bids.items(), reverse=True), dtype=np.float64)
        asks = np.array(sorted(self.asks.items()), dtype=np.float64)
        return bids.reshape(-1, 2), asks.reshape(-1, 2)


def _check_update(bids: FloatArray, asks: FloatArray, *, delta: bool) -> tuple[str, str] | None:
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


def _read_bybit(book_file: BookFile) -> Iterator[RawBooks]:
    source = str(book_file.path)
    times = book_file.times()
    symbols: list[str] = []
    codes: dict[str, int] = {}
    books: dict[str, _Book] = {}
    chunk = _Collector(source, symbols, codes)
    with open_text(book_file.path, NotABookFileError) as stream:
        for number, raw in enumerate(stream, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("a line must be a JSON object")
                kind = message.get("type")
                if kind not in ("snapshot", "delta"):
                    raise ValueError(f"type must be 'snapshot' or 'delta', got {kind!r}")
                data = message.get("data")
                if not isinstance(data, dict):
                    raise ValueError("missing 'data' object")
                symbol = data.get("s")
                if not isinstance(symbol, str) or not symbol:
                    raise ValueError(f"data.s must name the symbol, got {symbol!r}")
                ts = times.parse(message.get("ts"))
                bids = _levels(data.get("b", []), "data.b")
                asks = _levels(data.get("a", []), "data.a")
            except TimeOutOfRangeError as exc:
                chunk.reject(number, "timestamp_out_of_range", str(exc))
                continue
            except ValueError as exc:
                chunk.reject(number, "malformed", f"{exc}; line {line[:80]!r}")
                continue
            problem = _check_update(bids, asks, delta=kind == "delta")
            if problem is not None:
                chunk.reject(number, problem[0], f"{kind} not applied: {problem[1]}")
                continue
            book = books.get(symbol)
            if kind == "snapshot":
                book = books[symbol] = books.get(symbol) or _Book()
                book.replace(bids, asks)
            elif book is None:
                chunk.reject(
                    number,
                    "delta_before_snapshot",
                    f"{symbol}: a delta before any snapshot cannot be applied",
                )
                continue
            else:
                book.apply(bids, asks)
            book_bids, book_asks = book.arrays()
            chunk.add(symbol, ts, number, book_bids, book_asks)
            if chunk.full():
                yield chunk.arrays()
                chunk = _Collector(source, symbols, codes)
    yield chunk.arrays()


def _read_binance(book_file: BookFile) -> Iterator[RawBooks]:
    source = str(book_file.path)
    times = book_file.times()
    position = {name: i for i, name in enumerate(book_file.columns)}
    width = len(book_file.columns)
    symbols: list[str] = []
    codes: dict[str, int] = {}
    books: dict[str, _Book] = {}
    chunk = _Collector(source, symbols, codes)

    # One message: consecutive rows with the same symbol, time, update id and type.
    key: tuple[str, str, str, str] | None = None
    first_line_no = 0
    levels: dict[str, list[tuple[float, float]]] = {"b": [], "a": []}
    broken: str | None = None
    broken_reason = "malformed"
    stamp_ms = 0

    def finish() -> None:
        if key is None:
            return
        symbol, _, _, kind = key
        if broken is not None:
            chunk.reject(first_line_no, broken_reason, broken)
            return
        bids = np.array(levels["b"], dtype=np.float64).reshape(-1, 2)
        asks = np.array(levels["a"], dtype=np.float64).reshape(-1, 2)
        if kind == "snap":
            # Snapshot levels list the book; their sizes must be > 0.
            bids, asks = (
                bids[np.argsort(-bids[:, 0], kind="stable")],
                asks[np.argsort(asks[:, 0], kind="stable")],
            )
        problem = _check_update(bids, asks, delta=kind == "set")
        if problem is not None:
            chunk.reject(first_line_no, problem[0], f"{kind} not applied: {problem[1]}")
            return
        book = books.get(symbol)
        if kind == "snap":
            book = books[symbol] = book or _Book()
            book.replace(bids, asks)
        elif book is None:
            chunk.reject(
                first_line_no,
                "delta_before_snapshot",
                f"{symbol}: a 'set' update before any 'snap' cannot be applied",
            )
            return
        else:
            book.apply(bids, asks)
        book_bids, book_asks = book.arrays()
        chunk.add(symbol, stamp_ms, first_line_no, book_bids, book_asks)

    with open_text(book_file.path, NotABookFileError) as stream:
        reader = csv.reader(stream)
        header_seen = False
        for row in reader:
            number = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if not header_seen:
                header_seen = True
                continue
            if len(row) != width:
                finish()
                key, broken = None, None
                chunk.reject(number, "malformed", f"expected {width} fields, got {len(row)}")
                continue
            kind = row[position["update_type"]].strip().lower()
            row_key = (
                row[position["symbol"]].strip(),
                row[position["timestamp"]].strip(),
                row[position["last_update_id"]].strip(),
                kind,
            )
            if row_key != key:
                finish()
                if chunk.full():
                    yield chunk.arrays()
                    chunk = _Collector(source, symbols, codes)
                key, first_line_no, broken, broken_reason = row_key, number, None, "malformed"
                levels = {"b": [], "a": []}
                if kind not in ("snap", "set"):
                    broken = f"update_type must be 'snap' or 'set', got {kind!r}"
                else:
                    try:
                        stamp_ms = times.parse(row_key[1])
                    except TimeOutOfRangeError as exc:
                        broken, broken_reason = str(exc), "timestamp_out_of_range"
                    except ValueError as exc:
                        broken = str(exc)
            if broken is not None:
                continue
            side = row[position["side"]].strip().lower()[:1]
            try:
                if side not in ("b", "a"):
                    raise ValueError(f"side must be 'b' or 'a', got {row[position['side']]!r}")
                levels[side].append((float(row[position["price"]]), float(row[position["qty"]])))
            except ValueError as exc:
                broken = f"line {number}: {exc}"
        finish()
    yield chunk.arrays()


def read_books(book_file: BookFile, *, zone: tzinfo) -> Iterator[RawBooks]:
    """Parse ``book_file`` into chunks of books (see ``CHUNK_BOOKS``, ``CHUNK_LEVELS``)."""
    if book_file.layout == "jsonl":
        yield from _read_jsonl(book_file, zone)
    elif book_file.layout == "tardis":
        yield from _read_tardis(book_file)
    elif book_file.layout == "bybit":
        yield from _read_bybit(book_file)
    else:
        yield from _read_binance(book_file)


__all__ = [
    "BOOK_FILE_SUFFIXES",
    "LAYOUTS",
    "BookFile",
    "NotABookFileError",
    "RawBooks",
    "find_book_files",
    "inspect_book_file",
    "read_books",
]
