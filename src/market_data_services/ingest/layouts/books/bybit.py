"""Bybit ``orderbook.N`` websocket JSON lines: a ``snapshot`` message, then ``delta``
messages where size 0 removes a level. The book is rebuilt and every message yields a
snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from market_data_services.ingest.files import TimeOutOfRangeError, loads_json, open_text
from market_data_services.ingest.layouts.base import ReadOptions
from market_data_services.ingest.layouts.books.common import (
    Book,
    BookFile,
    BookLayout,
    Collector,
    NotABookFileError,
    RawBooks,
    TooManyLevelsError,
    check_update,
    levels,
)


def read_bybit(book_file: BookFile) -> Iterator[RawBooks]:
    source = str(book_file.path)
    times = book_file.times()
    symbols: list[str] = []
    codes: dict[str, int] = {}
    books: dict[str, Book] = {}
    chunk = Collector(source, symbols, codes)
    with open_text(book_file.path, NotABookFileError) as stream:
        for raw in stream:
            number = stream.line  # not counted here: lines a limit refused are skipped
            if chunk.full():  # rejected lines count too
                yield chunk.arrays()
                chunk = Collector(source, symbols, codes)
            line = raw.strip()
            if not line:
                continue
            try:
                message = loads_json(line)
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
                bids = levels(data.get("b", []), "data.b")
                asks = levels(data.get("a", []), "data.a")
            except TimeOutOfRangeError as exc:
                chunk.reject(number, "timestamp_out_of_range", str(exc))
                continue
            except TooManyLevelsError as exc:
                chunk.reject(number, "too_many_levels", str(exc))
                continue
            except ValueError as exc:
                chunk.reject(number, "malformed", f"{exc}; line {line[:80]!r}")
                continue
            problem = check_update(bids, asks, delta=kind == "delta")
            if problem is not None:
                chunk.reject(number, problem[0], f"{kind} not applied: {problem[1]}")
                continue
            book = books.get(symbol)
            if kind == "snapshot":
                book = books[symbol] = books.get(symbol) or Book()
                book.replace(bids, asks)
            elif book is None:
                chunk.reject(
                    number,
                    "delta_before_snapshot",
                    f"{symbol}: a delta before any snapshot cannot be applied",
                )
                continue
            else:
                try:
                    book.apply(bids, asks, symbol)
                except TooManyLevelsError as exc:
                    # Dropped, so it stays bounded: deltas wait for the next snapshot.
                    del books[symbol]
                    chunk.reject(number, "too_many_levels", f"delta not applied: {exc}")
                    continue
            book_bids, book_asks = book.arrays()
            chunk.add(symbol, ts, number, book_bids, book_asks)
    yield chunk.arrays()


class BybitBooks(BookLayout):
    name = "bybit"
    description = (
        "Bybit orderbook websocket lines (a snapshot, then deltas; the book is rebuilt and "
        "each message stored)"
    )
    json_lines = True
    time_column = "ts"
    signature = "Bybit orderbook messages"

    def sniff(self, first: str) -> bool:
        # A Bybit snapshot line is longer than the head; the keys near its start tell it.
        return first.startswith("{") and (
            re.search(r'"topic"\s*:\s*"orderbook', first) is not None
            or re.search(r'"type"\s*:\s*"(snapshot|delta)"', first) is not None
        )

    def inspect(self, path: Path, first: str, *, time_unit: str, latest_ms: int | None) -> BookFile:
        return self.judged(self.file(path), time_unit=time_unit, latest_ms=latest_ms)

    def read(self, data_file: BookFile, options: ReadOptions) -> Iterator[RawBooks]:
        return read_bybit(data_file)


__all__ = ["BybitBooks", "read_bybit"]
