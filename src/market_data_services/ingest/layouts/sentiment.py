"""Reading sentiment files: telling their layout, parsing them into readings.

Layouts (told from the header, or forced):

- ``plain``: a header ``timestamp,symbol,long_pct,short_pct[,source]`` (any order, any
  case), then one reading a row; percentages 0..100; timestamps ISO-8601 (in ``--tz``
  without an offset) or epoch numbers in one unit per file (``FileTimes``).
- ``ig``: an IG client sentiment export: a ``Date`` column, then one column per market
  holding the percent of clients long (short is 100 minus it). A six-letter market such
  as ``EURUSD`` is read as ``EUR/USD``; an empty cell is no reading.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import ClassVar, cast

import numpy as np
import numpy.typing as npt

from market_data_services.ingest.files import (
    FileTimes,
    TimeOutOfRangeError,
    WrongFileKindError,
    csv_data_rows,
    find_files,
    first_csv_cells,
)
from market_data_services.ingest.layouts.base import Layout, ReadOptions, inspect_layout, read_file
from market_data_services.ingest.pipeline import Rejection

#: The layouts shipped (``layouts.base.layout_names("sentiment")`` adds registered ones).
LAYOUTS = ("plain", "ig")
SENTIMENT_FILE_SUFFIXES = (".csv", ".csv.gz", ".zip", ".gz", ".txt")
_PLAIN_COLUMNS = ("timestamp", "symbol", "long_pct", "short_pct", "source")
_REQUIRED = ("timestamp", "symbol", "long_pct", "short_pct")
_FX_PAIR = re.compile(r"^[A-Z]{6}$")
#: Readings per chunk handed to validation and one write transaction.
CHUNK_READINGS = 100_000


class NotASentimentFileError(WrongFileKindError):
    """A file that is not sentiment data at all."""

    kind = "a sentiment"


@dataclass(frozen=True)
class SentimentFile:
    path: Path
    layout: str
    columns: tuple[str, ...] = ()
    #: The unit of epoch-number times as stated (auto: told by the first one) ...
    time_unit: str = "auto"
    #: ... and, with auto, the unit the first one told (None: no epoch number seen).
    told_unit: str | None = None

    @property
    def time_column(self) -> int:
        """Where the time is: the ``Date`` column of an IG export, else ``timestamp``."""
        return self.columns.index("timestamp") if "timestamp" in self.columns else 0

    def times(self, zone: tzinfo = UTC, latest_ms: int | None = None) -> FileTimes:
        column = self.columns[self.time_column]
        return FileTimes(
            self.path,
            column,
            unit=self.time_unit,
            told=self.told_unit,
            zone=zone,
            latest_ms=latest_ms,
        )


@dataclass
class RawReadings:
    """Parsed readings of one source file (or chunk), not yet validated.

    Shares are fractions (the file's percent / 100). ``short_share`` is NaN where the
    file gives none (``ig``); it is 1 - long then.
    """

    source: str
    symbols: list[str]
    symbol_codes: npt.NDArray[np.int32]
    sources: list[str]
    source_codes: npt.NDArray[np.int32]
    ts: npt.NDArray[np.int64]
    long_share: npt.NDArray[np.float64]
    short_share: npt.NDArray[np.float64]
    lines: npt.NDArray[np.int64]
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def market_symbol(column: str) -> str:
    """``EURUSD`` -> ``EUR/USD``; anything else as it is."""
    name = column.strip()
    return f"{name[:3]}/{name[3:]}" if _FX_PAIR.match(name) else name


def find_sentiment_files(paths: Iterable[str | Path]) -> list[Path]:
    return find_files(paths, SENTIMENT_FILE_SUFFIXES)


def _header(first: str) -> tuple[str, ...]:
    return tuple(c.strip().strip('"') for c in next(csv.reader([first])))


class _SentimentLayout(Layout[SentimentFile, RawReadings]):
    kind = "sentiment"
    error = NotASentimentFileError

    def judged(
        self, found: SentimentFile, *, time_unit: str, latest_ms: int | None
    ) -> SentimentFile:
        """``found`` with its time unit, refused when its first time is implausible."""
        found = dataclasses.replace(found, time_unit=time_unit)
        times = found.times(latest_ms=latest_ms)
        times.judge_first(first_csv_cells(found.path, NotASentimentFileError, found.time_column))
        return dataclasses.replace(found, told_unit=times.told)

    #: The source of readings when the file has no source column and none is given.
    default_source: ClassVar[str] = ""

    def read(self, data_file: SentimentFile, options: ReadOptions) -> Iterator[RawReadings]:
        source = self.default_source if options.source is None else options.source
        reader = _Reader(data_file, source)
        return _read(data_file, options.zone, reader, self.add_row)

    @staticmethod
    def add_row(reader: _Reader, row: list[str], line: int, ts: int) -> None:
        """Add the readings of one row (its field count and time already checked)."""
        raise NotImplementedError


class PlainSentiment(_SentimentLayout):
    name = "plain"
    description = "a header timestamp,symbol,long_pct,short_pct[,source] (percent 0..100)"
    signature = "a header 'timestamp,symbol,long_pct,short_pct[,source]'"

    def sniff(self, first: str) -> bool:
        return set(_REQUIRED) <= {c.lower() for c in _header(first)}

    def inspect(
        self, path: Path, first: str, *, time_unit: str, latest_ms: int | None
    ) -> SentimentFile:
        lowered = tuple(c.lower() for c in _header(first))
        unknown = [c for c in lowered if c not in _PLAIN_COLUMNS]
        if unknown:
            raise NotASentimentFileError(
                path,
                f"unknown column {unknown[0]!r} in the header; "
                f"valid columns: {', '.join(_PLAIN_COLUMNS)}",
            )
        duplicated = sorted({c for c in lowered if lowered.count(c) > 1})
        if duplicated:
            raise NotASentimentFileError(path, f"column {duplicated[0]!r} appears twice")
        found = SentimentFile(path, self.name, lowered)
        return self.judged(found, time_unit=time_unit, latest_ms=latest_ms)

    def empty(self, path: Path) -> SentimentFile:
        return SentimentFile(path, self.name, _REQUIRED)

    @staticmethod
    def add_row(reader: _Reader, row: list[str], line: int, ts: int) -> None:
        position = reader.position
        symbol = row[position["symbol"]].strip()
        try:
            long_pct = float(row[position["long_pct"]])
            short_pct = float(row[position["short_pct"]])
        except ValueError as exc:
            reader.reject(line, "malformed", f"{exc}; row {','.join(row)[:80]!r}")
            return
        if not symbol:
            reader.reject(line, "malformed", "the symbol field is empty")
            return
        given = row[position["source"]].strip() if "source" in position else ""
        reader.add(symbol, given, ts, line, long=long_pct, short=short_pct)


class IgSentiment(_SentimentLayout):
    name = "ig"
    description = (
        "an IG client sentiment export: a Date column (in --tz), then one column per market "
        "holding the percent long (EURUSD is read as EUR/USD)"
    )
    signature = "an IG export header 'Date,EURUSD,...'"
    default_source = "ig"

    def sniff(self, first: str) -> bool:
        columns = _header(first)
        return len(columns) > 1 and columns[0].lower() == "date"

    def inspect(
        self, path: Path, first: str, *, time_unit: str, latest_ms: int | None
    ) -> SentimentFile:
        columns = _header(first)
        empty = [i for i, name in enumerate(columns[1:], start=2) if not name]
        if empty:
            raise NotASentimentFileError(path, f"column {empty[0]} of the header has no name")
        found = SentimentFile(path, self.name, columns)
        return self.judged(found, time_unit=time_unit, latest_ms=latest_ms)

    def empty(self, path: Path) -> SentimentFile:
        return SentimentFile(path, self.name, _REQUIRED)

    @staticmethod
    def add_row(reader: _Reader, row: list[str], line: int, ts: int) -> None:
        for name, cell in zip(reader.columns[1:], row[1:], strict=True):
            value = cell.strip()
            if not value:
                continue
            market = market_symbol(name)
            try:
                long_pct = float(value)
            except ValueError:
                reader.reject(
                    line, "malformed", f"{market}: long percent {value!r} is not a number"
                )
                continue
            reader.add(market, "", ts, line, long=long_pct, short=float("nan"))


def inspect_sentiment_file(
    path: Path, layout: str | None = None, *, time_unit: str = "auto", latest_ms: int | None = None
) -> SentimentFile:
    """Tell the layout of ``path`` (or check the forced one) from its header, and the unit
    of its times from its first time.

    Raises ImplausibleTimeError when that time is before 1990 or after ``latest_ms``
    (default: an hour from now) in the unit read.
    """
    found = inspect_layout("sentiment", path, layout, time_unit=time_unit, latest_ms=latest_ms)
    return cast(SentimentFile, found)


class _Chunk:
    def __init__(self) -> None:
        self.codes: list[int] = []
        self.source_codes: list[int] = []
        self.ts: list[int] = []
        self.long: list[float] = []
        self.short: list[float] = []
        self.lines: list[int] = []
        self.rejections: list[Rejection] = []

    def __len__(self) -> int:
        return len(self.ts) + len(self.rejections)


class _Names:
    """Text values numbered in order of first appearance."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        found = self._codes.get(name)
        if found is None:
            found = self._codes[name] = len(self.names)
            self.names.append(name)
        return found


class _Reader:
    """The readings of one file, a chunk at a time; symbols and sources are numbered
    across its chunks."""

    def __init__(self, sentiment_file: SentimentFile, default_source: str) -> None:
        self.path = str(sentiment_file.path)
        self.columns = sentiment_file.columns
        self.position = {name: i for i, name in enumerate(self.columns)}
        self.default_source = default_source
        self.symbols, self.sources = _Names(), _Names()
        self.chunk = _Chunk()

    def add(
        self, symbol: str, source: str, ts: int, line: int, *, long: float, short: float
    ) -> None:
        chunk = self.chunk
        chunk.codes.append(self.symbols.code(symbol))
        chunk.source_codes.append(self.sources.code(source or self.default_source))
        chunk.ts.append(ts)
        chunk.long.append(long)
        chunk.short.append(short)
        chunk.lines.append(line)

    def reject(self, line: int, reason: str, message: str) -> None:
        self.chunk.rejections.append(Rejection(self.path, line, reason, message))

    def arrays(self) -> RawReadings:
        chunk, self.chunk = self.chunk, _Chunk()
        return RawReadings(
            source=self.path,
            symbols=list(self.symbols.names),
            symbol_codes=np.array(chunk.codes, dtype=np.int32),
            sources=list(self.sources.names),
            source_codes=np.array(chunk.source_codes, dtype=np.int32),
            ts=np.array(chunk.ts, dtype=np.int64),
            long_share=np.array(chunk.long, dtype=np.float64) / 100.0,
            short_share=np.array(chunk.short, dtype=np.float64) / 100.0,
            lines=np.array(chunk.lines, dtype=np.int64),
            rejections=chunk.rejections,
        )


#: A layout's reading of one data row: (reader, cells, line, time).
AddRow = Callable[[_Reader, list[str], int, int], None]


def _read(
    sentiment_file: SentimentFile, zone: tzinfo, reader: _Reader, add_row: AddRow
) -> Iterator[RawReadings]:
    """The rows of ``sentiment_file``: field count and time checked here, the rest by
    the layout's ``add_row``; in chunks of ``CHUNK_READINGS``."""
    width = len(sentiment_file.columns)
    times = sentiment_file.times(zone)
    for number, row in csv_data_rows(sentiment_file.path, NotASentimentFileError):
        if len(row) != width:
            text = ",".join(row)
            reader.reject(
                number, "malformed", f"expected {width} fields, got {len(row)}; row {text[:80]!r}"
            )
            continue
        try:
            ts = times.parse(row[sentiment_file.time_column])
        except TimeOutOfRangeError as exc:
            reader.reject(number, "timestamp_out_of_range", str(exc))
            continue
        except ValueError as exc:
            reader.reject(number, "malformed", str(exc))
            continue
        add_row(reader, row, number, ts)
        if len(reader.chunk) >= CHUNK_READINGS:
            yield reader.arrays()
    yield reader.arrays()


def read_readings(
    sentiment_file: SentimentFile, *, zone: tzinfo, source: str | None
) -> Iterator[RawReadings]:
    """Parse ``sentiment_file`` into chunks of readings, with its layout's reader.

    ``source`` names the source of readings without a source column (default: ``ig``
    for IG exports, else '').
    """
    options = ReadOptions(zone=zone, source=source)
    return cast(Iterator[RawReadings], read_file("sentiment", sentiment_file, options))


__all__ = [
    "LAYOUTS",
    "SENTIMENT_FILE_SUFFIXES",
    "IgSentiment",
    "NotASentimentFileError",
    "PlainSentiment",
    "RawReadings",
    "SentimentFile",
    "find_sentiment_files",
    "inspect_sentiment_file",
    "market_symbol",
    "read_readings",
]
