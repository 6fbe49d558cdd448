"""Which layout an order-book file has (told from its first line by the registered
layouts, or forced), and reading it with that layout's reader.

Epoch numbers are read in one unit per file (``FileTimes``): stated, or told by the size
of the file's first time (which gives Tardis's microseconds and the exchanges'
milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path
from typing import cast

from market_data_services.ingest.layouts.base import ReadOptions, inspect_layout, read_file
from market_data_services.ingest.layouts.books.common import BookFile, RawBooks

#: The layouts shipped (``layouts.base.layout_names("dom")`` adds registered ones).
LAYOUTS = ("jsonl", "tardis", "bybit", "binance")


def inspect_book_file(
    path: Path, layout: str | None = None, *, time_unit: str = "auto", latest_ms: int | None = None
) -> BookFile:
    """Tell the layout of ``path`` (or check the forced one) from its first line, and the
    unit of its times from its first time.

    Raises ImplausibleTimeError when that time is before 1990 or after ``latest_ms``
    (default: an hour from now) in the unit read.
    """
    found = inspect_layout("dom", path, layout, time_unit=time_unit, latest_ms=latest_ms)
    return cast(BookFile, found)


def read_books(book_file: BookFile, *, zone: tzinfo) -> Iterator[RawBooks]:
    """Parse ``book_file`` into chunks of books (see ``CHUNK_BOOKS``, ``CHUNK_LEVELS``)."""
    return cast(Iterator[RawBooks], read_file("dom", book_file, ReadOptions(zone=zone)))


__all__ = ["LAYOUTS", "inspect_book_file", "read_books"]
