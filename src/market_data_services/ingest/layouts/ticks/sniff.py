"""Which layout a tick file has (told from its first line, or forced), and reading it
with that layout's reader in chunks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path

from market_data_services.ingest.files import (
    FileTimes,
    check_time_unit,
    first_csv_cells,
    first_line,
    latest_plausible_ms,
    read_head,
)
from market_data_services.ingest.layouts.ticks.common import NotATickFileError, RawTicks, TickFile
from market_data_services.ingest.layouts.ticks.lean import (
    judge_lean_day,
    lean_day,
    looks_like_lean_row,
    read_lean,
)
from market_data_services.ingest.layouts.ticks.plain import (
    PLAIN_COLUMNS,
    REQUIRED_PLAIN,
    header_columns,
    read_plain,
)

LAYOUTS = ("plain", "lean")


def inspect_file(
    path: Path, layout: str | None = None, *, time_unit: str = "auto", latest_ms: int | None = None
) -> TickFile:
    """Tell the layout of ``path`` (or check the forced one) from its first line, and the
    unit of its times from its first time.

    Raises ImplausibleTimeError when that time is before 1990 or after ``latest_ms``
    (default: an hour from now) in the unit read.
    """
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    check_time_unit(time_unit)
    found = _inspect_layout(path, layout)
    latest = latest_plausible_ms() if latest_ms is None else latest_ms
    if found.layout == "lean":
        if time_unit not in ("auto", "ms"):
            raise ValueError(
                f"{path}: lean files hold milliseconds since midnight; "
                f"--time-unit {time_unit} does not apply to them (use auto or ms)"
            )
        judge_lean_day(found, latest)
        return found
    if not found.columns or "timestamp" not in found.columns:
        return found
    times = FileTimes(path, "timestamp", unit=time_unit, latest_ms=latest)
    times.judge_first(first_csv_cells(path, NotATickFileError, found.columns.index("timestamp")))
    return dataclasses.replace(found, time_unit=time_unit, told_unit=times.told)


def _inspect_layout(path: Path, layout: str | None) -> TickFile:
    first = first_line(read_head(path, NotATickFileError))
    expected = (
        "neither a header 'timestamp,bid,ask[,volume][,symbol]' (plain) "
        "nor LEAN rows 'ms_since_midnight,bid,ask' (lean)"
    )
    if not first:
        # An empty file holds no ticks; it is not an error to load nothing.
        return TickFile(path, layout or "plain", lean_day(path), REQUIRED_PLAIN)
    columns = header_columns(first)
    if columns is not None:
        if layout == "lean":
            raise NotATickFileError(
                path, f"it has a header ({first[:60]!r}); lean files have none (try --layout plain)"
            )
        unknown = [c for c in columns if c not in PLAIN_COLUMNS]
        if unknown:
            raise NotATickFileError(
                path,
                f"unknown column {unknown[0]!r} in the header; "
                f"valid columns: {', '.join(PLAIN_COLUMNS)}",
            )
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise NotATickFileError(path, f"column {duplicated[0]!r} appears twice in the header")
        return TickFile(path, "plain", None, columns)
    if looks_like_lean_row(first):
        if layout == "plain":
            raise NotATickFileError(
                path,
                "it has no header row 'timestamp,bid,ask[,volume][,symbol]' "
                "(it looks like LEAN rows: try --layout lean)",
            )
        day = lean_day(path)
        if day is None:
            raise NotATickFileError(
                path,
                "LEAN rows need the date in the file name (YYYYMMDD_...), e.g. "
                "20140501_eurusd_tick_quote.csv",
            )
        return TickFile(path, "lean", day)
    raise NotATickFileError(path, f"the first line {first[:60]!r} is {expected}")


def read_chunks(
    tick_file: TickFile, *, symbol: str | None, zone: tzinfo, chunk_rows: int = 250_000
) -> Iterator[RawTicks]:
    """Parse ``tick_file`` into chunks of at most about ``chunk_rows`` rows."""
    if tick_file.layout == "lean":
        if symbol is None:
            raise ValueError(f"{tick_file.path}: lean files have no symbol column; give a symbol")
        yield read_lean(tick_file, symbol, zone)
        return
    if symbol is None and not tick_file.has_symbol_column:
        raise ValueError(f"{tick_file.path}: the file has no symbol column; give a symbol")
    yield from read_plain(tick_file, symbol, zone, chunk_rows)


__all__ = ["LAYOUTS", "inspect_file", "read_chunks"]
