"""What both sentiment layouts share: the file and parsed-reading types, finding the
files, the loop over a file's rows (field count and time checked, then the layout's
``add_row``) and the base class of the layouts."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import ClassVar

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
from market_data_services.ingest.layouts.base import Layout, ReadOptions
from market_data_services.ingest.pipeline import Rejection

#: Name endings ``find_sentiment_files`` picks from a directory.
SENTIMENT_FILE_SUFFIXES = (".csv", ".csv.gz", ".zip", ".gz", ".txt")
#: The columns of the plain layout, and those it needs.
PLAIN_COLUMNS = ("timestamp", "symbol", "long_pct", "short_pct", "source")
REQUIRED = ("timestamp", "symbol", "long_pct", "short_pct")
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


def find_sentiment_files(paths: Iterable[str | Path]) -> list[Path]:
    return find_files(paths, SENTIMENT_FILE_SUFFIXES)


def csv_header(first: str) -> tuple[str, ...]:
    """The column names of a CSV header line, unquoted."""
    return tuple(c.strip().strip('"') for c in next(csv.reader([first])))


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


class ReadingsReader:
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
AddRow = Callable[[ReadingsReader, list[str], int, int], None]


def read_rows(
    sentiment_file: SentimentFile, zone: tzinfo, reader: ReadingsReader, add_row: AddRow
) -> Iterator[RawReadings]:
    """The rows of ``sentiment_file``: field count and time checked here, the rest by
    the layout's ``add_row``; in chunks of ``CHUNK_READINGS``."""
    width = len(sentiment_file.columns)
    times = sentiment_file.times(zone)
    for number, row in csv_data_rows(sentiment_file.path, NotASentimentFileError):
        # Rejected rows count too, so a file of bad rows is held a chunk at a time.
        if len(reader.chunk) >= CHUNK_READINGS:
            yield reader.arrays()
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
    yield reader.arrays()


class SentimentLayout(Layout[SentimentFile, RawReadings]):
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

    def empty(self, path: Path) -> SentimentFile:
        return SentimentFile(path, self.name, REQUIRED)

    def read(self, data_file: SentimentFile, options: ReadOptions) -> Iterator[RawReadings]:
        source = self.default_source if options.source is None else options.source
        reader = ReadingsReader(data_file, source)
        return read_rows(data_file, options.zone, reader, self.add_row)

    @staticmethod
    def add_row(reader: ReadingsReader, row: list[str], line: int, ts: int) -> None:
        """Add the readings of one row (its field count and time already checked)."""
        raise NotImplementedError


__all__ = [
    "CHUNK_READINGS",
    "PLAIN_COLUMNS",
    "REQUIRED",
    "SENTIMENT_FILE_SUFFIXES",
    "NotASentimentFileError",
    "RawReadings",
    "ReadingsReader",
    "SentimentFile",
    "SentimentLayout",
    "csv_header",
    "find_sentiment_files",
    "read_rows",
]
