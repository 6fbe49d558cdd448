"""Input files shared by every ingester: finding them, opening them, sniffing their head,
reading their times.

Files may be plain text, gzip or a single-member zip; the compression is told from the
bytes, not the name. A file that is not of the kind being loaded raises a subclass of
``WrongFileKindError`` naming the file and the reason, before anything is written.

Times are read by ``FileTimes``: ISO-8601 text, or epoch numbers in one unit per file,
stated (``s``, ``ms``, ``us``, ``ns``) or told by the magnitude of the file's first
numeric time (``auto``). One unit per file because a file is written by one program in
one unit; judging each row alone would read a stray seconds value in a millisecond file
as a valid time instead of rejecting it. A file whose first time is before 1990 or more
than an hour ahead in that unit raises ``ImplausibleTimeError`` before anything is
written, naming the file, line, column, value and the unit it looks like; a later row
that is out of range is rejected on its own (``TimeOutOfRangeError``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import time
import zipfile
from collections.abc import Generator, Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, ClassVar, cast

from market_data_services.timeutil import (
    EARLIEST_MS,
    EPOCH_UNITS,
    LATEST_MS,
    TIME_UNITS,
    epoch_to_ms,
    format_ms,
    is_epoch_number,
    parse_timestamp_ms,
    unit_by_magnitude,
)

#: Bytes read to tell a file's layout.
SNIFF_BYTES = 8192
#: Rows looked at, at most, for a file's first readable time.
FIRST_TIME_ROWS = 100
#: How far ahead of the clock a file's first time may be (the ingesters' default).
FUTURE_ALLOWANCE_MS = 3_600_000


class WrongFileKindError(ValueError):
    """A file that is not of the kind being loaded (as opposed to one with some bad rows)."""

    kind: ClassVar[str] = "data"

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: not {self.kind} file: {reason}")
        self.path = str(path)
        self.reason = reason


def find_files(paths: Iterable[str | Path], suffixes: tuple[str, ...]) -> list[Path]:
    """The files named, and the files under the directories named whose names end with
    one of ``suffixes`` (any case), sorted by path within each directory."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes)
                )
            )
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return found


def open_binary(path: Path, error: type[WrongFileKindError]) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip or a single-member zip."""
    with path.open("rb") as probe:
        magic = probe.read(4)
    if magic[:2] == b"\x1f\x8b":
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))
    if magic == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise error(path, f"a broken zip archive ({exc})") from None
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            archive.close()
            raise error(
                path, f"a zip archive with {len(members)} files; expected exactly one data file"
            )
        return _ZipMember(archive, members[0])
    return path.open("rb")


class _ZipMember(io.BufferedReader):
    """A zip member that closes its archive with it."""

    def __init__(self, archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
        super().__init__(archive.open(member))  # type: ignore[arg-type]
        self._archive = archive

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._archive.close()


def open_text(path: Path, error: type[WrongFileKindError]) -> IO[str]:
    """The file as UTF-8 text (decompressed), newlines left as they are for ``csv``."""
    return io.TextIOWrapper(
        open_binary(path, error), encoding="utf-8", errors="replace", newline=""
    )


def read_head(path: Path, error: type[WrongFileKindError], size: int = SNIFF_BYTES) -> str:
    """The first ``size`` bytes of the (decompressed) file as text, without a BOM.

    Raises ``error`` for a file that cannot be read, holds binary content or is not UTF-8.
    """
    try:
        with open_binary(path, error) as stream:
            head = stream.read(size)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise error(path, f"cannot be read ({exc})") from None
    if b"\x00" in head:
        raise error(path, "binary content, not text")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the sniff boundary
            raise error(path, "not UTF-8 text") from None
        text = head[: exc.start].decode("utf-8")
    return text.lstrip("\ufeff")


def first_line(text: str) -> str:
    """The first line of ``text`` that is not blank, stripped; '' when there is none."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def csv_data_rows(
    path: Path, error: type[WrongFileKindError]
) -> Generator[tuple[int, list[str]], None, None]:
    """(line, cells) of the data rows of a CSV file with a header, read lazily: blank rows
    and the header are skipped."""
    with open_text(path, error) as stream:
        reader = csv.reader(stream)
        header_seen = False
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if not header_seen:
                header_seen = True
                continue
            yield reader.line_num, row


def first_csv_cells(
    path: Path, error: type[WrongFileKindError], index: int
) -> Generator[tuple[int, str], None, None]:
    """(line, cell ``index``) of the data rows of a CSV file with a header, read lazily
    (use it in ``contextlib.closing`` when not read to the end)."""
    with open_text(path, error) as stream:
        reader = csv.reader(stream)
        rows = 0
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if rows > FIRST_TIME_ROWS:
                return  # short rows only: no time to judge the file by
            rows += 1
            if rows > 1 and index < len(row):  # the first row is the header
                yield reader.line_num, row[index]


def first_json_values(
    path: Path, error: type[WrongFileKindError], key: str
) -> Generator[tuple[int, object], None, None]:
    """(line, value of ``key``) of the JSON-object lines of a file that have it, read
    lazily (use it in ``contextlib.closing`` when not read to the end)."""
    with open_text(path, error) as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                message = json.loads(raw) if raw.strip() else None
            except ValueError:
                message = None
            if isinstance(message, dict) and key in message:
                yield number, message[key]
            elif number >= FIRST_TIME_ROWS:
                return  # lines without the key: no time to judge the file by


# -- times ---------------------------------------------------------------------------------


class TimeOutOfRangeError(ValueError):
    """A time before 1990 or after year 9999 in the unit it was read in (one row)."""


class ImplausibleTimeError(ValueError):
    """The first time of a file is implausible in the unit read: the file is refused."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        where = str(path) if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


def check_time_unit(unit: str) -> str:
    if unit not in TIME_UNITS:
        raise ValueError(f"unknown time unit {unit!r}; valid units: {', '.join(TIME_UNITS)}")
    return unit


def latest_plausible_ms(now_ms: int | None = None) -> int:
    """The latest plausible time of a file's first row: an hour after ``now_ms`` (the clock)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return now + FUTURE_ALLOWANCE_MS


def _show(ms: int) -> str:
    if ms < -62_135_596_800_000:  # 0001-01-01
        return "before year 1"
    if ms > LATEST_MS:
        return "after year 9999"
    return format_ms(ms)


def _as_date(digits: str) -> datetime | None:
    for pattern, size in (("%Y%m%d", 8), ("%Y%m%d%H%M%S", 14)):
        if len(digits) == size:
            try:
                moment = datetime.strptime(digits, pattern).replace(tzinfo=UTC)
            except ValueError:
                return None
            return moment if moment.year >= 1900 else None
    return None


class FileTimes:
    """The times of one file's ``column``: ISO-8601 text (in ``zone`` without an offset) or
    epoch numbers in ``unit``; with ``auto`` the first epoch number's size settles the
    unit (``unit_by_magnitude``), unless an earlier look at the file ``told`` it.

    ``parse`` raises ``TimeOutOfRangeError`` for a time before 1990 (or after year 9999)
    and ValueError for text that is no time; ``judge_first`` refuses a file by its first
    readable time. One instance reads one file, on one thread.
    """

    def __init__(
        self,
        path: Path | str,
        column: str,
        *,
        unit: str = "auto",
        told: str | None = None,
        zone: tzinfo = UTC,
        latest_ms: int | None = None,
    ) -> None:
        self.path = str(path)
        self.column = column
        self.requested = check_time_unit(unit)
        #: The unit of the file's epoch numbers once known ("auto" until the first one);
        #: ``told`` is the one an earlier look at the file's first time told.
        self.unit = told if unit == "auto" and told is not None else unit
        self.zone = zone
        self.latest_ms = latest_plausible_ms() if latest_ms is None else latest_ms

    @property
    def told(self) -> str | None:
        """The unit the file's first epoch number told, with ``auto``; else None."""
        return self.unit if self.requested == "auto" and self.unit != "auto" else None

    def parse(self, value: object) -> int:
        """UTC epoch ms of one cell (text, or a JSON number)."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(
                f"{self.column} must be an epoch number or ISO-8601 text, got {value!r}"
            )
        text = repr(value) if isinstance(value, float) else str(value).strip()
        if isinstance(value, int) or is_epoch_number(text):
            if self.unit == "auto":
                self.unit = unit_by_magnitude(int(text.split(".", 1)[0]))
            ms = epoch_to_ms(text, self.unit)
        else:
            ms = parse_timestamp_ms(text, self.zone)
        if ms < EARLIEST_MS:
            raise TimeOutOfRangeError(self.describe(text, ms, "before 1990-01-01"))
        if ms > LATEST_MS:
            raise TimeOutOfRangeError(self.describe(text, ms, "after year 9999"))
        return ms

    def describe(self, text: str, ms: int, problem: str) -> str:
        """``timestamp 1398902400 read as epoch ms is 1970-01-17, before 1990-01-01; looks
        like epoch s: use --time-unit s``."""
        if not is_epoch_number(text):
            return f"{self.column} {text} is {problem}"
        when = _show(ms)
        if problem.startswith("before") and when[:1].isdigit():
            when = when[:10]
        state = when if when == problem else f"{when}, {problem}"
        how = " (auto)" if self.requested == "auto" else ""
        message = f"{self.column} {text} read as epoch {self.unit}{how} is {state}"
        return f"{message}; {self._looks_like(text)}"

    def _looks_like(self, text: str) -> str:
        digits = text.lstrip("+")
        moment = _as_date(digits) if digits.isdigit() else None
        if moment is not None:
            if len(digits) == 8:
                return f"looks like a YYYYMMDD date: write it as {moment:%Y-%m-%d}"
            return f"looks like a YYYYMMDDHHMMSS time: write it as {moment:%Y-%m-%dT%H:%M:%S}"
        for unit in EPOCH_UNITS:
            if unit != self.unit and EARLIEST_MS <= epoch_to_ms(text, unit) <= self.latest_ms:
                return f"looks like epoch {unit}: use --time-unit {unit}"
        return "no epoch unit (s, ms, us, ns) puts it between 1990 and now"

    def judge_first(
        self,
        rows: Generator[tuple[int, object], None, None] | Generator[tuple[int, str], None, None],
    ) -> None:
        """Refuse the file when its first readable time is implausible in the unit read.

        ``rows`` are (line, cell) of the file's rows, of which the first
        ``FIRST_TIME_ROWS`` are looked at and closed after; cells that are no time are
        skipped (the reader reports them). After an ISO time, the first epoch number is
        judged too, since it settles the unit of the rest.
        """
        with contextlib.closing(rows):
            self._judge_first(rows)

    def _judge_first(self, rows: Iterator[tuple[int, object]]) -> None:
        ahead = f"in the future (after {format_ms(self.latest_ms)})"
        judged = False
        for number, (line, value) in enumerate(rows):
            if number >= FIRST_TIME_ROWS:
                return
            if judged and not (isinstance(value, int | float) or is_epoch_number(str(value))):
                continue  # a later ISO time is the reader's to check, row by row
            try:
                ms = self.parse(value)
            except TimeOutOfRangeError as exc:
                raise ImplausibleTimeError(self.path, line, str(exc)) from None
            except ValueError:
                continue
            text = repr(value) if isinstance(value, float) else str(value).strip()
            if ms > self.latest_ms:
                raise ImplausibleTimeError(self.path, line, self.describe(text, ms, ahead))
            if is_epoch_number(text):
                return
            judged = True


__all__ = [
    "FIRST_TIME_ROWS",
    "SNIFF_BYTES",
    "FileTimes",
    "ImplausibleTimeError",
    "TimeOutOfRangeError",
    "WrongFileKindError",
    "check_time_unit",
    "csv_data_rows",
    "find_files",
    "first_csv_cells",
    "first_json_values",
    "first_line",
    "latest_plausible_ms",
    "open_binary",
    "open_text",
    "read_head",
]
