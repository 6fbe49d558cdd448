"""Plain tick CSV: a header ``timestamp,bid,ask[,volume][,symbol]`` (any order, any case),
then one tick per row; timestamps ISO-8601 (in ``--tz`` when they carry no offset) or
epoch numbers in one unit per file (``FileTimes``: stated, or told by the first one's
size)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path

import numpy as np

from market_data_services.ingest.files import (
    FileTimes,
    TimeOutOfRangeError,
    csv_data_rows,
    first_csv_cells,
    parse_number,
)
from market_data_services.ingest.layouts.base import Layout, ReadOptions
from market_data_services.ingest.layouts.ticks.common import (
    NotATickFileError,
    RawTicks,
    TickFile,
)
from market_data_services.ingest.layouts.ticks.lean import lean_day
from market_data_services.ingest.pipeline import Rejection

PLAIN_COLUMNS = ("timestamp", "bid", "ask", "volume", "symbol")
REQUIRED_PLAIN = ("timestamp", "bid", "ask")


def header_columns(line: str) -> tuple[str, ...] | None:
    names = tuple(name.strip().strip('"').lower() for name in next(csv.reader([line])))
    if not set(REQUIRED_PLAIN) <= set(names):
        return None
    return names


class _PlainChunk:
    """Row lists of one chunk of a plain file, turned into arrays at the end."""

    def __init__(self) -> None:
        self.lines: list[int] = []
        self.ts: list[int] = []
        self.bid: list[float] = []
        self.ask: list[float] = []
        self.volume: list[float] = []
        self.has_volume: list[bool] = []
        self.codes: list[int] = []
        self.rejections: list[Rejection] = []

    def __len__(self) -> int:
        return len(self.lines) + len(self.rejections)


def read_plain(
    tick_file: TickFile, symbol: str | None, zone: tzinfo, chunk_rows: int
) -> Iterator[RawTicks]:
    source = str(tick_file.path)
    columns = tick_file.columns
    position = {name: columns.index(name) for name in columns}
    i_ts, i_bid, i_ask = position["timestamp"], position["bid"], position["ask"]
    i_volume = position.get("volume")
    i_symbol = position.get("symbol")
    width = len(columns)
    symbols: list[str] = []
    codes: dict[str, int] = {}
    if symbol is not None:
        codes[symbol] = 0
        symbols.append(symbol)

    times = FileTimes(
        source, "timestamp", unit=tick_file.time_unit, told=tick_file.told_unit, zone=zone
    )
    chunk = _PlainChunk()
    yielded = False
    for number, row in csv_data_rows(tick_file.path, NotATickFileError):
        try:
            if len(row) != width:
                raise ValueError(f"expected {width} fields ({','.join(columns)}), got {len(row)}")
            ts = times.parse(row[i_ts])
            bid = parse_number(row[i_bid], "bid")
            ask = parse_number(row[i_ask], "ask")
            volume_text = row[i_volume].strip() if i_volume is not None else ""
            volume = parse_number(volume_text, "volume") if volume_text else float("nan")
        except TimeOutOfRangeError as exc:
            chunk.rejections.append(Rejection(source, number, "timestamp_out_of_range", str(exc)))
            continue
        except ValueError as exc:
            text = ",".join(row)
            chunk.rejections.append(
                Rejection(source, number, "malformed", f"{exc}; row {text[:80]!r}")
            )
            continue
        name = row[i_symbol].strip() if i_symbol is not None else symbol
        if not name:
            chunk.rejections.append(
                Rejection(source, number, "malformed", "the symbol field is empty")
            )
            continue
        code = codes.get(name)
        if code is None:
            code = codes[name] = len(symbols)
            symbols.append(name)
        chunk.lines.append(number)
        chunk.ts.append(ts)
        chunk.bid.append(bid)
        chunk.ask.append(ask)
        chunk.volume.append(volume)
        chunk.has_volume.append(bool(volume_text))
        chunk.codes.append(code)
        if len(chunk) >= chunk_rows:
            yield _plain_arrays(source, symbols, chunk, i_volume is not None)
            yielded = True
            chunk = _PlainChunk()
    if len(chunk) or not yielded:
        yield _plain_arrays(source, symbols, chunk, i_volume is not None)


def _plain_arrays(
    source: str, symbols: list[str], chunk: _PlainChunk, volume_column: bool
) -> RawTicks:
    return RawTicks(
        source=source,
        symbols=list(symbols),
        symbol_codes=np.array(chunk.codes, dtype=np.int32),
        ts=np.array(chunk.ts, dtype=np.int64),
        bid=np.array(chunk.bid, dtype=np.float64),
        ask=np.array(chunk.ask, dtype=np.float64),
        volume=np.array(chunk.volume, dtype=np.float64),
        has_volume=np.array(chunk.has_volume, dtype=np.bool_) if volume_column else None,
        lines=np.array(chunk.lines, dtype=np.int64),
        rejections=chunk.rejections,
    )


class PlainTicks(Layout[TickFile, RawTicks]):
    name = "plain"
    kind = "ticks"
    description = (
        "a header timestamp,bid,ask[,volume][,symbol] with ISO-8601 or epoch times "
        "(see --time-unit)"
    )
    signature = "a header 'timestamp,bid,ask[,volume][,symbol]'"
    error = NotATickFileError

    def sniff(self, first: str) -> bool:
        return header_columns(first) is not None

    def inspect(self, path: Path, first: str, *, time_unit: str, latest_ms: int | None) -> TickFile:
        columns = header_columns(first) or ()
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
        times = FileTimes(path, "timestamp", unit=time_unit, latest_ms=latest_ms)
        times.judge_first(first_csv_cells(path, NotATickFileError, columns.index("timestamp")))
        return TickFile(path, "plain", None, columns, time_unit=time_unit, told_unit=times.told)

    def empty(self, path: Path) -> TickFile:
        return TickFile(path, self.name, lean_day(path), REQUIRED_PLAIN)

    def read(self, data_file: TickFile, options: ReadOptions) -> Iterator[RawTicks]:
        if options.symbol is None and not data_file.has_symbol_column:
            raise ValueError(f"{data_file.path}: the file has no symbol column; give a symbol")
        yield from read_plain(data_file, options.symbol, options.zone, options.chunk_rows)


__all__ = ["PLAIN_COLUMNS", "REQUIRED_PLAIN", "PlainTicks", "header_columns", "read_plain"]
