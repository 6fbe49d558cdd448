"""Which layout a tick file has (told from its first line by the registered layouts, or
forced), and reading it with that layout's reader in chunks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path
from typing import cast

from market_data_services.ingest.layouts.base import ReadOptions, inspect_layout, read_file
from market_data_services.ingest.layouts.ticks.common import RawTicks, TickFile

#: The layouts shipped (``layouts.base.layout_names("ticks")`` adds registered ones).
LAYOUTS = ("plain", "lean")


def inspect_file(
    path: Path, layout: str | None = None, *, time_unit: str = "auto", latest_ms: int | None = None
) -> TickFile:
    """Tell the layout of ``path`` (or check the forced one) from its first line, and the
    unit of its times from its first time.

    Raises ImplausibleTimeError when that time is before 1990 or after ``latest_ms``
    (default: an hour from now) in the unit read.
    """
    found = inspect_layout("ticks", path, layout, time_unit=time_unit, latest_ms=latest_ms)
    return cast(TickFile, found)


def read_chunks(
    tick_file: TickFile, *, symbol: str | None, zone: tzinfo, chunk_rows: int = 250_000
) -> Iterator[RawTicks]:
    """Parse ``tick_file`` into chunks of at most about ``chunk_rows`` rows."""
    options = ReadOptions(zone=zone, symbol=symbol, chunk_rows=chunk_rows)
    return cast(Iterator[RawTicks], read_file("ticks", tick_file, options))


__all__ = ["LAYOUTS", "inspect_file", "read_chunks"]
