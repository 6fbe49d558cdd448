"""Tick files: one module per layout (``plain`` CSV, ``lean``), ``sniff.py`` to tell a
file's layout and read it, ``common.py`` for what they share. Parsing yields
``RawTicks``: numpy columns plus the rows that could not be parsed, each with its file
and line.
"""

from market_data_services.ingest.layouts.ticks.common import (
    TICK_FILE_SUFFIXES,
    NotATickFileError,
    RawTicks,
    TickFile,
    find_tick_files,
)
from market_data_services.ingest.layouts.ticks.sniff import LAYOUTS, inspect_file, read_chunks

__all__ = [
    "LAYOUTS",
    "TICK_FILE_SUFFIXES",
    "NotATickFileError",
    "RawTicks",
    "TickFile",
    "find_tick_files",
    "inspect_file",
    "read_chunks",
]
