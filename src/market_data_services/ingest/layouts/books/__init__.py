"""Order-book files: one module per vendor layout (``jsonl``, ``tardis``, ``bybit``,
``binance``), ``sniff.py`` to tell a file's layout and read it, ``common.py`` for what
they share. Parsing yields ``RawBooks``: a ``BookBatch`` plus symbol, time and line per
book, and the messages that could not be parsed, each with its file and line.
"""

from market_data_services.ingest.layouts.books.common import (
    BOOK_FILE_SUFFIXES,
    BookFile,
    NotABookFileError,
    RawBooks,
    find_book_files,
)
from market_data_services.ingest.layouts.books.sniff import LAYOUTS, inspect_book_file, read_books

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
