"""Binance depth CSV, one level a row: ``symbol,timestamp,first_update_id,last_update_id,
side,update_type,price,qty,pu``. Rows of one update id form one message; ``snap`` messages
replace the book, ``set`` messages change levels (qty 0 removes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from market_data_services.ingest.files import (
    TimeOutOfRangeError,
    csv_data_rows,
    parse_number,
)
from market_data_services.ingest.layouts.base import ReadOptions
from market_data_services.ingest.layouts.books.common import (
    Book,
    BookFile,
    BookLayout,
    Collector,
    NotABookFileError,
    RawBooks,
    TooManyLevelsError,
    check_depth,
    check_update,
    csv_header,
)

#: The header's first columns.
BINANCE_COLUMNS = (
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


def read_binance(book_file: BookFile) -> Iterator[RawBooks]:
    source = str(book_file.path)
    times = book_file.times()
    position = {name: i for i, name in enumerate(book_file.columns)}
    width = len(book_file.columns)
    symbols: list[str] = []
    codes: dict[str, int] = {}
    books: dict[str, Book] = {}
    chunk = Collector(source, symbols, codes)

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
        problem = check_update(bids, asks, delta=kind == "set")
        if problem is not None:
            chunk.reject(first_line_no, problem[0], f"{kind} not applied: {problem[1]}")
            return
        book = books.get(symbol)
        if kind == "snap":
            book = books[symbol] = book or Book()
            book.replace(bids, asks)
        elif book is None:
            chunk.reject(
                first_line_no,
                "delta_before_snapshot",
                f"{symbol}: a 'set' update before any 'snap' cannot be applied",
            )
            return
        else:
            try:
                book.apply(bids, asks, symbol)
            except TooManyLevelsError as exc:
                # Dropped, so it stays bounded: 'set' updates wait for the next 'snap'.
                del books[symbol]
                chunk.reject(first_line_no, "too_many_levels", f"set not applied: {exc}")
                return
        book_bids, book_asks = book.arrays()
        chunk.add(symbol, stamp_ms, first_line_no, book_bids, book_asks)

    for number, row in csv_data_rows(book_file.path, NotABookFileError):
        if len(row) != width:
            finish()
            key, broken = None, None
            chunk.reject(number, "malformed", f"expected {width} fields, got {len(row)}")
            if chunk.full():  # rejected rows count too
                yield chunk.arrays()
                chunk = Collector(source, symbols, codes)
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
                chunk = Collector(source, symbols, codes)
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
            # One message's levels are held until it ends: refused past the limit.
            check_depth(len(levels[side]) + 1, f"{'bids' if side == 'b' else 'asks'}")
            levels[side].append(
                (
                    parse_number(row[position["price"]], "price"),
                    parse_number(row[position["qty"]], "qty"),
                )
            )
        except TooManyLevelsError as exc:
            broken, broken_reason = f"line {number}: {exc}", "too_many_levels"
        except ValueError as exc:
            broken = f"line {number}: {exc}"
    finish()
    yield chunk.arrays()


class BinanceBooks(BookLayout):
    name = "binance"
    description = "Binance depth CSV (one level a row)"
    signature = "a Binance depth header symbol,timestamp,...,side,update_type,price,qty,pu"

    def sniff(self, first: str) -> bool:
        columns = tuple(c.lower() for c in csv_header(first))
        return not first.startswith("{") and columns[: len(BINANCE_COLUMNS)] == BINANCE_COLUMNS

    def inspect(self, path: Path, first: str, *, time_unit: str, latest_ms: int | None) -> BookFile:
        columns = tuple(c.lower() for c in csv_header(first))
        found = self.file(path, columns)
        return self.judged(found, time_unit=time_unit, latest_ms=latest_ms)

    def read(self, data_file: BookFile, options: ReadOptions) -> Iterator[RawBooks]:
        return read_binance(data_file)


__all__ = ["BINANCE_COLUMNS", "BinanceBooks", "read_binance"]
