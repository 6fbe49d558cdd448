"""Reading tick files: finding them, telling their layout, parsing them into arrays.

Two layouts:

- ``plain``: a header ``timestamp,bid,ask[,volume][,symbol]`` (any order, any case), then
  one tick per row; timestamps ISO-8601 (in ``--tz`` when they carry no offset) or epoch
  numbers in one unit per file (``FileTimes``: stated, or told by the first one's size).
- ``lean``: the LEAN engine's tick quote files: no header, ``ms_since_midnight,bid,ask``,
  the date from the file name (``YYYYMMDD_...``), times in the feed's zone.

Files may be plain text, gzip or a single-member zip; the compression is told from the
bytes, not the name. Parsing yields ``RawTicks``: numpy columns plus the rows that could
not be parsed, each with its file and line.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from market_data_services.ingest.files import (
    FileTimes,
    ImplausibleTimeError,
    TimeOutOfRangeError,
    WrongFileKindError,
    check_time_unit,
    find_files,
    first_csv_cells,
    first_line,
    latest_plausible_ms,
    open_text,
    read_head,
)
from market_data_services.ingest.pipeline import Rejection
from market_data_services.timeutil import EARLIEST_MS

LAYOUTS = ("plain", "lean")
#: Name endings ``find_tick_files`` picks from a directory.
TICK_FILE_SUFFIXES = (".csv", ".csv.gz", ".zip", ".gz", ".txt")

_LEAN_DATE = re.compile(r"^(\d{8})(?:_|\.|$)")
_PLAIN_COLUMNS = ("timestamp", "bid", "ask", "volume", "symbol")
_REQUIRED_PLAIN = ("timestamp", "bid", "ask")
#: A LEAN day file can hold 25 hours on a DST day in a zone with DST.
_MAX_LEAN_MS = 25 * 3_600_000

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class NotATickFileError(WrongFileKindError):
    """A file that is not tick data at all (as opposed to a file with some bad rows)."""

    kind = "a tick"


@dataclass
class RawTicks:
    """Parsed rows of one source (or one chunk of it), not yet validated.

    Columns share one length. ``symbol_codes`` index ``symbols``. ``volume`` is NaN and
    ``has_volume`` False where a row has none; ``has_volume`` is None when no row can
    have one (the source has no volume column).
    """

    source: str
    symbols: list[str]
    symbol_codes: npt.NDArray[np.int32]
    ts: IntArray
    bid: FloatArray
    ask: FloatArray
    volume: FloatArray
    has_volume: BoolArray | None
    lines: IntArray
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True)
class TickFile:
    """A file whose layout is known: what ``inspect_file`` found."""

    path: Path
    layout: str
    day: date | None = None  # lean: the date in the file name
    columns: tuple[str, ...] = ()  # plain: the header, lower-cased
    #: plain: the unit of epoch-number times as stated (auto: told by the first one) ...
    time_unit: str = "auto"
    #: ... and, with auto, the unit the first one told (None: no epoch number seen).
    told_unit: str | None = None

    @property
    def has_symbol_column(self) -> bool:
        return "symbol" in self.columns


def find_tick_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the tick files under the directories named, sorted by path."""
    return find_files(paths, TICK_FILE_SUFFIXES)


def _open_text(path: Path) -> IO[str]:
    return open_text(path, NotATickFileError)


def _header_columns(line: str) -> tuple[str, ...] | None:
    names = tuple(name.strip().strip('"').lower() for name in next(csv.reader([line])))
    if not set(_REQUIRED_PLAIN) <= set(names):
        return None
    return names


def _lean_day(path: Path) -> date | None:
    match = _LEAN_DATE.match(path.name)
    if not match:
        return None
    try:
        return datetime.strptime(match[1], "%Y%m%d").date()
    except ValueError:
        return None


def _looks_like_lean_row(line: str) -> bool:
    parts = line.split(",")
    if len(parts) != 3:
        return False
    try:
        int(parts[0])
        float(parts[1])
        float(parts[2])
    except ValueError:
        return False
    return True


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
        _judge_lean_day(found, latest)
        return found
    if not found.columns or "timestamp" not in found.columns:
        return found
    times = FileTimes(path, "timestamp", unit=time_unit, latest_ms=latest)
    times.judge_first(first_csv_cells(path, NotATickFileError, found.columns.index("timestamp")))
    return dataclasses.replace(found, time_unit=time_unit, told_unit=times.told)


def _judge_lean_day(tick_file: TickFile, latest_ms: int) -> None:
    day = tick_file.day
    if day is None:
        return
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000
    if start < EARLIEST_MS:
        problem = "before 1990-01-01"
    elif start > latest_ms:
        problem = "in the future"
    else:
        return
    raise ImplausibleTimeError(
        tick_file.path, None, f"the date in the file name, {day:%Y-%m-%d}, is {problem}"
    )


def _inspect_layout(path: Path, layout: str | None) -> TickFile:
    first = first_line(read_head(path, NotATickFileError))
    expected = (
        "neither a header 'timestamp,bid,ask[,volume][,symbol]' (plain) "
        "nor LEAN rows 'ms_since_midnight,bid,ask' (lean)"
    )
    if not first:
        # An empty file holds no ticks; it is not an error to load nothing.
        return TickFile(path, layout or "plain", _lean_day(path), _REQUIRED_PLAIN)
    columns = _header_columns(first)
    if columns is not None:
        if layout == "lean":
            raise NotATickFileError(
                path, f"it has a header ({first[:60]!r}); lean files have none (try --layout plain)"
            )
        unknown = [c for c in columns if c not in _PLAIN_COLUMNS]
        if unknown:
            raise NotATickFileError(
                path,
                f"unknown column {unknown[0]!r} in the header; "
                f"valid columns: {', '.join(_PLAIN_COLUMNS)}",
            )
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise NotATickFileError(path, f"column {duplicated[0]!r} appears twice in the header")
        return TickFile(path, "plain", None, columns)
    if _looks_like_lean_row(first):
        if layout == "plain":
            raise NotATickFileError(
                path,
                "it has no header row 'timestamp,bid,ask[,volume][,symbol]' "
                "(it looks like LEAN rows: try --layout lean)",
            )
        day = _lean_day(path)
        if day is None:
            raise NotATickFileError(
                path,
                "LEAN rows need the date in the file name (YYYYMMDD_...), e.g. "
                "20140501_eurusd_tick_quote.csv",
            )
        return TickFile(path, "lean", day)
    raise NotATickFileError(path, f"the first line {first[:60]!r} is {expected}")


# -- lean -----------------------------------------------------------------------------------


def _lean_epoch_ms(day: date, ms: IntArray, zone: tzinfo) -> IntArray:
    """UTC epoch ms of ``ms`` after local midnight of ``day``, read as wall-clock time.

    LEAN adds the milliseconds to the local date and converts that wall time to UTC; on
    a DST day in a zone with DST the offset changes during the day, so it is looked up
    per distinct offset period.
    """
    midnight = datetime(day.year, day.month, day.day)
    first = midnight.replace(tzinfo=zone).utcoffset() or timedelta()
    last = (midnight + timedelta(milliseconds=_MAX_LEAN_MS)).replace(tzinfo=zone).utcoffset()
    utc_midnight_ms = int((midnight.replace(tzinfo=UTC)).timestamp()) * 1000
    if zone is UTC or isinstance(zone, timezone) or first == (last or timedelta()):
        return ms + np.int64(utc_midnight_ms - int(first.total_seconds()) * 1000)
    offsets = np.fromiter(
        (
            int(
                (
                    (midnight + timedelta(milliseconds=int(v))).replace(tzinfo=zone).utcoffset()
                    or timedelta()
                ).total_seconds()
            )
            * 1000
            for v in ms
        ),
        dtype=np.int64,
        count=len(ms),
    )
    result: IntArray = ms + np.int64(utc_midnight_ms) - offsets
    return result


def _read_lean(tick_file: TickFile, symbol: str, zone: tzinfo) -> RawTicks:
    source = str(tick_file.path)
    with _open_text(tick_file.path) as stream:
        text = stream.read().lstrip("\ufeff")
    rejections: list[Rejection] = []
    line_count = text.count("\n") + (0 if not text or text.endswith("\n") else 1)
    values: FloatArray | None = None
    if line_count:
        try:
            parsed = np.loadtxt(
                io.StringIO(text), delimiter=",", dtype=np.float64, comments=None, ndmin=2
            )
            if parsed.shape == (line_count, 3):
                values = parsed
        except ValueError:
            values = None
    if values is not None:
        lines: IntArray = np.arange(1, line_count + 1, dtype=np.int64)
        ms_float = values[:, 0]
        bid, ask = values[:, 1].copy(), values[:, 2].copy()
    else:
        lines, ms_float, bid, ask = _read_lean_slowly(text, source, rejections)
    # Milliseconds must be whole and within the day (25 h on a DST day).
    with np.errstate(invalid="ignore"):
        whole = (np.floor(ms_float) == ms_float) & (ms_float >= 0) & (ms_float <= _MAX_LEAN_MS)
    if not whole.all():
        for index in np.flatnonzero(~whole).tolist():
            rejections.append(
                Rejection(
                    source,
                    int(lines[index]),
                    "malformed",
                    f"ms_since_midnight {ms_float[index]!r} is not a whole number of "
                    f"milliseconds within the day",
                )
            )
        lines, ms_float, bid, ask = lines[whole], ms_float[whole], bid[whole], ask[whole]
    assert tick_file.day is not None
    ts = _lean_epoch_ms(tick_file.day, ms_float.astype(np.int64), zone)
    count = len(ts)
    return RawTicks(
        source=source,
        symbols=[symbol],
        symbol_codes=np.zeros(count, dtype=np.int32),
        ts=ts,
        bid=bid,
        ask=ask,
        volume=np.full(count, np.nan),
        has_volume=None,
        lines=lines,
        rejections=rejections,
    )


def _read_lean_slowly(
    text: str, source: str, rejections: list[Rejection]
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    """Row by row, so each bad row is named and the good ones kept."""
    lines: list[int] = []
    ms: list[float] = []
    bids: list[float] = []
    asks: list[float] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(",")
        try:
            if len(parts) != 3:
                raise ValueError
            row = (float(int(parts[0])), float(parts[1]), float(parts[2]))
        except ValueError:
            rejections.append(
                Rejection(
                    source,
                    number,
                    "malformed",
                    f"expected 'ms_since_midnight,bid,ask', got {line[:80]!r}",
                )
            )
            continue
        lines.append(number)
        ms.append(row[0])
        bids.append(row[1])
        asks.append(row[2])
    return (
        np.array(lines, dtype=np.int64),
        np.array(ms, dtype=np.float64),
        np.array(bids, dtype=np.float64),
        np.array(asks, dtype=np.float64),
    )


# -- plain ----------------------------------------------------------------------------------


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


def _read_plain(
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
    with _open_text(tick_file.path) as stream:
        reader = csv.reader(stream)
        header_seen = False
        chunk = _PlainChunk()
        for row in reader:
            number = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if not header_seen:
                header_seen = True
                continue
            try:
                if len(row) != width:
                    raise ValueError(
                        f"expected {width} fields ({','.join(columns)}), got {len(row)}"
                    )
                ts = times.parse(row[i_ts])
                bid = float(row[i_bid])
                ask = float(row[i_ask])
                volume_text = row[i_volume].strip() if i_volume is not None else ""
                volume = float(volume_text) if volume_text else float("nan")
            except TimeOutOfRangeError as exc:
                chunk.rejections.append(
                    Rejection(source, number, "timestamp_out_of_range", str(exc))
                )
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
                chunk = _PlainChunk()
        if len(chunk) or not header_seen:
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


def read_chunks(
    tick_file: TickFile, *, symbol: str | None, zone: tzinfo, chunk_rows: int = 250_000
) -> Iterator[RawTicks]:
    """Parse ``tick_file`` into chunks of at most about ``chunk_rows`` rows."""
    if tick_file.layout == "lean":
        if symbol is None:
            raise ValueError(f"{tick_file.path}: lean files have no symbol column; give a symbol")
        yield _read_lean(tick_file, symbol, zone)
        return
    if symbol is None and not tick_file.has_symbol_column:
        raise ValueError(f"{tick_file.path}: the file has no symbol column; give a symbol")
    yield from _read_plain(tick_file, symbol, zone, chunk_rows)
