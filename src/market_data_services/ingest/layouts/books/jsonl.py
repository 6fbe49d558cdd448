"""Our JSON lines, one snapshot a line::

    {"symbol": "EUR/USD", "ts": "2024-03-06T21:37:12.345Z", "bids": [[1.0849, 2.5], ...],
     "asks": [[1.0851, 1.0], ...]}

``ts`` ISO-8601 (in ``--tz`` without an offset) or an epoch number; prices and sizes
numbers or numeric strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path

from market_data_services.ingest.files import TimeOutOfRangeError, loads_json, open_text
from market_data_services.ingest.layouts.base import ReadOptions
from market_data_services.ingest.layouts.books.common import (
    BookFile,
    BookLayout,
    Collector,
    NotABookFileError,
    RawBooks,
    TooManyLevelsError,
    levels,
)


def read_jsonl(book_file: BookFile, zone: tzinfo) -> Iterator[RawBooks]:
    source = str(book_file.path)
    times = book_file.times(zone)
    symbols: list[str] = []
    codes: dict[str, int] = {}
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
                    raise ValueError("a line must be a JSON object {symbol, ts, bids, asks}")
                missing = [k for k in ("symbol", "ts", "bids", "asks") if k not in message]
                if missing:
                    raise ValueError(f"missing key {missing[0]!r}")
                symbol = message["symbol"]
                if not isinstance(symbol, str):
                    raise ValueError(f"symbol must be text, got {symbol!r}")
                ts = times.parse(message["ts"])
                bids = levels(message["bids"], "bids")
                asks = levels(message["asks"], "asks")
            except TimeOutOfRangeError as exc:
                chunk.reject(number, "timestamp_out_of_range", str(exc))
                continue
            except TooManyLevelsError as exc:
                chunk.reject(number, "too_many_levels", str(exc))
                continue
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                chunk.reject(number, "malformed", f"{exc}; line {line[:80]!r}")
                continue
            chunk.add(symbol, ts, number, bids, asks)
    yield chunk.arrays()


class JsonlBooks(BookLayout):
    name = "jsonl"
    description = (
        'one snapshot a line, {"symbol", "ts", "bids": [[price, size], ...], "asks": [...]}'
    )
    json_lines = True
    time_column = "ts"
    signature = "JSON lines of snapshots {symbol, ts, bids, asks}"

    def sniff(self, first: str) -> bool:
        return first.startswith("{") and re.search(r'"(bids|asks)"\s*:', first) is not None

    def inspect(self, path: Path, first: str, *, time_unit: str, latest_ms: int | None) -> BookFile:
        return self.judged(self.file(path), time_unit=time_unit, latest_ms=latest_ms)

    def read(self, data_file: BookFile, options: ReadOptions) -> Iterator[RawBooks]:
        return read_jsonl(data_file, options.zone)


__all__ = ["JsonlBooks", "read_jsonl"]
