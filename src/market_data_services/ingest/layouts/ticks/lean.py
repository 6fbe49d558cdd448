"""LEAN tick quote files (QuantConnect's engine): no header, ``ms_since_midnight,bid,ask``
rows, the date from the file name (``YYYYMMDD_...``), times in the feed's zone."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path

import numpy as np

from market_data_services.ingest.files import (
    ImplausibleTimeError,
    latest_plausible_ms,
    parse_number,
)
from market_data_services.ingest.layouts.base import Layout, ReadOptions
from market_data_services.ingest.layouts.ticks.common import (
    FloatArray,
    IntArray,
    NotATickFileError,
    RawTicks,
    TickFile,
    open_tick_text,
)
from market_data_services.ingest.pipeline import Rejection
from market_data_services.timeutil import EARLIEST_MS

LEAN_DATE = re.compile(r"^(\d{8})(?:_|\.|$)")

#: A LEAN day file can hold 25 hours on a DST day in a zone with DST.
MAX_LEAN_MS = 25 * 3_600_000
#: Text the fast reader (numpy) may read: plain decimals only, since numpy's parser, like
#: float(), also takes ``inf``, ``nan``, ``1_000`` and exponents; anything else is read
#: row by row with the strict ``parse_number``.
_PLAIN_LEAN = re.compile(r"[0-9.,\r\n-]*")


def lean_day(path: Path) -> date | None:
    match = LEAN_DATE.match(path.name)
    if not match:
        return None
    try:
        return datetime.strptime(match[1], "%Y%m%d").date()
    except ValueError:
        return None


def looks_like_lean_row(line: str) -> bool:
    parts = line.split(",")
    if len(parts) != 3:
        return False
    try:
        if not parts[0].strip().isdecimal() or not parts[0].isascii():
            return False
        parse_number(parts[1], "bid")
        parse_number(parts[2], "ask")
    except ValueError:
        return False
    return True


def judge_lean_day(tick_file: TickFile, latest_ms: int) -> None:
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


def _lean_epoch_ms(day: date, ms: IntArray, zone: tzinfo) -> IntArray:
    """UTC epoch ms of ``ms`` after local midnight of ``day``, read as wall-clock time.

    LEAN adds the milliseconds to the local date and converts that wall time to UTC; on
    a DST day in a zone with DST the offset changes during the day, so it is looked up
    per distinct offset period.
    """
    midnight = datetime(day.year, day.month, day.day)
    first = midnight.replace(tzinfo=zone).utcoffset() or timedelta()
    last = (midnight + timedelta(milliseconds=MAX_LEAN_MS)).replace(tzinfo=zone).utcoffset()
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


#: Lines per chunk of a LEAN file when the reader is not told (``ReadOptions.chunk_rows``).
LEAN_CHUNK_ROWS = 250_000


def read_lean(
    tick_file: TickFile, symbol: str, zone: tzinfo, chunk_rows: int = LEAN_CHUNK_ROWS
) -> Iterator[RawTicks]:
    """The rows of a LEAN file in chunks of ``chunk_rows`` lines: memory is that of one
    chunk, whatever the file's size (or a gzip's ratio). Lines are taken a block at a
    time (``TextLines.take``); one that needs care (over the limit, not UTF-8) alone."""
    with open_tick_text(tick_file.path) as stream:
        texts: list[str] = []
        numbers: list[IntArray] = []
        held = 0
        yielded = False
        while True:
            text, count = stream.take(chunk_rows - held)
            if not count:
                line = next(stream, None)
                if line is None:
                    break
                text, count = line, 1
            if stream.line == count:  # the file's first line
                text = text.lstrip("\ufeff")
            texts.append(text)
            numbers.append(np.arange(stream.line - count + 1, stream.line + 1, dtype=np.int64))
            held += count
            if held >= chunk_rows:
                yield _lean_chunk(tick_file, symbol, zone, texts, numbers)
                held, yielded = 0, True
        if held or not yielded:
            yield _lean_chunk(tick_file, symbol, zone, texts, numbers)


def _lean_chunk(
    tick_file: TickFile, symbol: str, zone: tzinfo, texts: list[str], numbers: list[IntArray]
) -> RawTicks:
    """The ticks of the lines ``texts`` (blocks of whole lines), whose line numbers are
    ``numbers``. Both lists are emptied, so the reader holds no text while the chunk is
    stored."""
    try:
        text = "".join(texts)
        lines = np.concatenate(numbers) if numbers else np.empty(0, dtype=np.int64)
        return _parse_lean(tick_file, symbol, zone, text, lines)
    finally:
        texts.clear()
        numbers.clear()


def _parse_lean(
    tick_file: TickFile, symbol: str, zone: tzinfo, text: str, numbers: IntArray
) -> RawTicks:
    source = str(tick_file.path)
    rejections: list[Rejection] = []
    values: FloatArray | None = None
    if len(numbers) and _PLAIN_LEAN.fullmatch(text):
        try:
            parsed = np.loadtxt(
                io.StringIO(text), delimiter=",", dtype=np.float64, comments=None, ndmin=2
            )
            if parsed.shape == (len(numbers), 3):
                values = parsed
        except ValueError:
            values = None
    if values is not None:
        lines: IntArray = numbers
        ms_float = values[:, 0]
        bid, ask = values[:, 1].copy(), values[:, 2].copy()
    else:
        batch = text.split("\n")
        if not batch[-1]:
            batch.pop()  # what follows the last line end (or an empty text)
        lines, ms_float, bid, ask = _read_lean_slowly(batch, numbers.tolist(), source, rejections)
    # Milliseconds must be whole and within the day (25 h on a DST day).
    with np.errstate(invalid="ignore"):
        whole = (np.floor(ms_float) == ms_float) & (ms_float >= 0) & (ms_float <= MAX_LEAN_MS)
    if not whole.all():
        for index in np.flatnonzero(~whole).tolist():
            rejections.append(
                Rejection(
                    source,
                    int(lines[index]),
                    "malformed",
                    f"ms_since_midnight {float(ms_float[index])!r} is not a whole number of "
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
    batch: list[str], numbers: list[int], source: str, rejections: list[Rejection]
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    """Row by row, so each bad row is named and the good ones kept."""
    lines: list[int] = []
    ms: list[float] = []
    bids: list[float] = []
    asks: list[float] = []
    for number, raw in zip(numbers, batch, strict=True):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(",")
        try:
            if len(parts) != 3:
                raise ValueError
            ms_text = parts[0].strip()
            if not (ms_text.isascii() and ms_text.isdecimal()):
                raise ValueError
            row = (float(ms_text), parse_number(parts[1], "bid"), parse_number(parts[2], "ask"))
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


class LeanTicks(Layout[TickFile, RawTicks]):
    name = "lean"
    kind = "ticks"
    description = (
        "LEAN's tick quote files (ms_since_midnight,bid,ask, date from the YYYYMMDD_ file name)"
    )
    signature = "LEAN rows 'ms_since_midnight,bid,ask'"
    error = NotATickFileError

    def sniff(self, first: str) -> bool:
        return looks_like_lean_row(first)

    def inspect(self, path: Path, first: str, *, time_unit: str, latest_ms: int | None) -> TickFile:
        day = lean_day(path)
        if day is None:
            raise NotATickFileError(
                path,
                "LEAN rows need the date in the file name (YYYYMMDD_...), e.g. "
                "20140501_eurusd_tick_quote.csv",
            )
        if time_unit not in ("auto", "ms"):
            raise ValueError(
                f"{path}: lean files hold milliseconds since midnight; "
                f"--time-unit {time_unit} does not apply to them (use auto or ms)"
            )
        found = TickFile(path, "lean", day)
        judge_lean_day(found, latest_plausible_ms() if latest_ms is None else latest_ms)
        return found

    def empty(self, path: Path) -> TickFile:
        return TickFile(path, self.name, lean_day(path), ("timestamp", "bid", "ask"))

    def refuse(self, path: Path, first: str, found: Layout[TickFile, RawTicks]) -> str:
        return f"it has a header ({first[:60]!r}); lean files have none (try --layout {found.name})"

    def read(self, data_file: TickFile, options: ReadOptions) -> Iterator[RawTicks]:
        if options.symbol is None:
            raise ValueError(f"{data_file.path}: lean files have no symbol column; give a symbol")
        yield from read_lean(data_file, options.symbol, options.zone, options.chunk_rows)


__all__ = [
    "LEAN_CHUNK_ROWS",
    "MAX_LEAN_MS",
    "LeanTicks",
    "judge_lean_day",
    "lean_day",
    "looks_like_lean_row",
    "read_lean",
]
