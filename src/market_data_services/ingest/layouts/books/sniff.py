"""Which layout an order-book file has (told from its first line, or forced), and
reading it with that layout's reader.

Epoch numbers are read in one unit per file (``FileTimes``): stated, or told by the size
of the file's first time (which gives Tardis's microseconds and the exchanges'
milliseconds).
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path

from market_data_services.ingest.files import (
    check_time_unit,
    first_csv_cells,
    first_json_values,
    first_line,
    read_head,
)
from market_data_services.ingest.layouts.books.binance import BINANCE_COLUMNS, read_binance
from market_data_services.ingest.layouts.books.bybit import read_bybit
from market_data_services.ingest.layouts.books.common import BookFile, NotABookFileError, RawBooks
from market_data_services.ingest.layouts.books.jsonl import read_jsonl
from market_data_services.ingest.layouts.books.tardis import (
    TARDIS_LEVEL,
    read_tardis,
    tardis_columns,
)

LAYOUTS = ("jsonl", "tardis", "bybit", "binance")
_EXPECTED = (
    "expected JSON lines of snapshots {symbol, ts, bids, asks} (jsonl), Bybit orderbook "
    "messages (bybit), a Tardis book_snapshot_N header (tardis) or a Binance depth header "
    "symbol,timestamp,...,side,update_type,price,qty,pu (binance)"
)


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
        if any(TARDIS_LEVEL.match(c) for c in columns):
            found = BookFile(path, "tardis", columns)
            tardis_columns(found)  # raises for a header it cannot read
        elif tuple(c.lower() for c in columns[: len(BINANCE_COLUMNS)]) == BINANCE_COLUMNS:
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


def read_books(book_file: BookFile, *, zone: tzinfo) -> Iterator[RawBooks]:
    """Parse ``book_file`` into chunks of books (see ``CHUNK_BOOKS``, ``CHUNK_LEVELS``)."""
    if book_file.layout == "jsonl":
        yield from read_jsonl(book_file, zone)
    elif book_file.layout == "tardis":
        yield from read_tardis(book_file)
    elif book_file.layout == "bybit":
        yield from read_bybit(book_file)
    else:
        yield from read_binance(book_file)


__all__ = ["LAYOUTS", "inspect_book_file", "read_books"]
