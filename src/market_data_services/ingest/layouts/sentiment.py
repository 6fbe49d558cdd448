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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import cast

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
from market_data_services.ingest.layouts.base import Layout, ReadOptions, inspect_layout
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
        return 0 if self.layout == "ig" else self.columns.index("timestamp")

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

    def read(self, data_file: SentimentFile, options: ReadOptions) -> Iterator[RawReadings]:
        return read_readings(data_file, zone=options.zone, source=options.source)


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


class IgSentiment(_SentimentLayout):
    name = "ig"
    description = (
        "an IG client sentiment export: a Date column (in --tz), then one column per market "
        "holding the percent long (EURUSD is read as EUR/USD)"
    )
    signature = "an IG export header 'Date,EURUSD,...'"

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


def _arrays(path: str, symbols: _Names, sources: _Names, chunk: _Chunk) -> RawReadings:
    return RawReadings(
        source=path,
        symbols=list(symbols.names),
        symbol_codes=np.array(chunk.codes, dtype=np.int32),
        sources=list(sources.names),
        source_codes=np.array(chunk.source_codes, dtype=np.int32),
        ts=np.array(chunk.ts, dtype=np.int64),
        long_share=np.array(chunk.long, dtype=np.float64) / 100.0,
        short_share=np.array(chunk.short, dtype=np.float64) / 100.0,
        lines=np.array(chunk.lines, dtype=np.int64),
        rejections=chunk.rejections,
    )


def read_readings(
    sentiment_file: SentimentFile, *, zone: tzinfo, source: str | None
) -> Iterator[RawReadings]:
    """Parse ``sentiment_file`` into chunks of readings.

    ``source`` names the source of readings without a source column (default: ``ig``
    for IG exports, else '').
    """
    path = str(sentiment_file.path)
    columns = sentiment_file.columns
    symbols, sources = _Names(), _Names()
    default_source = (
        source if source is not None else ("ig" if sentiment_file.layout == "ig" else "")
    )
    width = len(columns)
    position = {name: i for i, name in enumerate(columns)}
    times = sentiment_file.times(zone)
    chunk = _Chunk()
    for number, row in csv_data_rows(sentiment_file.path, NotASentimentFileError):
        if len(row) != width:
            text = ",".join(row)
            chunk.rejections.append(
                Rejection(
                    path,
                    number,
                    "malformed",
                    f"expected {width} fields, got {len(row)}; row {text[:80]!r}",
                )
            )
            continue
        try:
            ts = times.parse(row[sentiment_file.time_column])
        except TimeOutOfRangeError as exc:
            chunk.rejections.append(Rejection(path, number, "timestamp_out_of_range", str(exc)))
            continue
        except ValueError as exc:
            chunk.rejections.append(Rejection(path, number, "malformed", str(exc)))
            continue
        if sentiment_file.layout == "ig":
            source_code = sources.code(default_source)
            for name, cell in zip(columns[1:], row[1:], strict=True):
                value = cell.strip()
                if not value:
                    continue
                market = market_symbol(name)
                try:
                    long_pct = float(value)
                except ValueError:
                    chunk.rejections.append(
                        Rejection(
                            path,
                            number,
                            "malformed",
                            f"{market}: long percent {value!r} is not a number",
                        )
                    )
                    continue
                chunk.codes.append(symbols.code(market))
                chunk.source_codes.append(source_code)
                chunk.ts.append(ts)
                chunk.long.append(long_pct)
                chunk.short.append(float("nan"))
                chunk.lines.append(number)
        else:
            symbol = row[position["symbol"]].strip()
            try:
                long_pct = float(row[position["long_pct"]])
                short_pct = float(row[position["short_pct"]])
            except ValueError as exc:
                chunk.rejections.append(
                    Rejection(path, number, "malformed", f"{exc}; row {','.join(row)[:80]!r}")
                )
                continue
            if not symbol:
                chunk.rejections.append(
                    Rejection(path, number, "malformed", "the symbol field is empty")
                )
                continue
            given = row[position["source"]].strip() if "source" in position else ""
            chunk.codes.append(symbols.code(symbol))
            chunk.source_codes.append(sources.code(given or default_source))
            chunk.ts.append(ts)
            chunk.long.append(long_pct)
            chunk.short.append(short_pct)
            chunk.lines.append(number)
        if len(chunk) >= CHUNK_READINGS:
            yield _arrays(path, symbols, sources, chunk)
            chunk = _Chunk()
    yield _arrays(path, symbols, sources, chunk)


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
