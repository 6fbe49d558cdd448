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
import contextvars
import csv
import gzip
import io
import json
import math
import os
import re
import stat
import time
import zipfile
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, ClassVar, NamedTuple, cast

import numpy as np

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


# -- files that cannot be read to the end --------------------------------------------------

#: The ``reason`` label values of ``mds_ingest_files_failed_total``, one per way a whole
#: file (or the rest of it) fails; rows have their own reasons.
FILE_REASONS = (
    "special_file",  # a FIFO, device or socket: refused by stat, never opened
    "unreadable",  # no permission, a directory that cannot be listed, an I/O error
    "wrong_kind",  # not a file of the kind being loaded
    "implausible_time",  # the first time is implausible in the unit read
    "compression",  # truncated or corrupt gzip or zip
    "encoding",  # bytes that are not UTF-8 text
    "csv",  # a CSV quoting error or a field over the CSV field limit
    "malformed",  # anything else that stopped the reading of the file
)


class BadFileError(ValueError):
    """Reading a file failed or stopped at ``line`` (None: before its first line), for a
    ``reason`` of ``FILE_REASONS``. Rows before ``line`` are good."""

    def __init__(self, path: Path | str, line: int | None, reason: str, detail: str) -> None:
        where = str(path) if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {detail}")
        self.path = str(path)
        self.line = line
        self.reason = reason
        self.detail = detail


#: Where readers put the error that stopped a file, so the rows read before it are
#: still handed on and stored; None (outside ``collect_damage``): the error is raised.
#: A context variable, so each thread (and each pipeline run) has its own.
_damage: contextvars.ContextVar[list[BadFileError] | None] = contextvars.ContextVar(
    "mds_ingest_damage", default=None
)


@contextlib.contextmanager
def collect_damage() -> Iterator[list[BadFileError]]:
    """While open, a reader that meets damage ends its file there (yielding what it read
    before) and the error lands in the list, instead of being raised."""
    damage: list[BadFileError] = []
    token = _damage.set(damage)
    try:
        yield damage
    finally:
        _damage.reset(token)


def _stop_at(error: BadFileError, *, quiet: bool = False) -> None:
    """Record ``error`` for ``collect_damage``, or raise it when nothing collects."""
    if quiet:
        return
    sink = _damage.get()
    if sink is None:
        raise error
    sink.append(error)


# -- limits: a line, a field, a book's levels -------------------------------------------------

#: The ``reason`` of a row refused by a limit (``ReadLimits``), beside each kind's own.
LIMIT_REASONS = ("line_too_long", "field_too_long", "too_many_levels")


@dataclass(frozen=True, kw_only=True)
class ReadLimits:
    """The most one row may hold, so that no file, however built, takes memory in
    proportion to its size: a longer line, field or book is one rejected row
    (``LIMIT_REASONS``), and reading goes on after it.

    ``max_line_bytes`` counts a line's bytes after decompression, its line end included;
    ``max_field_chars`` the characters of one CSV field; ``max_book_levels`` the price
    levels of one side of one book (a message, or a book rebuilt from deltas).
    """

    max_line_bytes: int = 1_048_576
    max_field_chars: int = 65_536
    max_book_levels: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_line_bytes", "max_field_chars", "max_book_levels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


#: The limits readers apply; the pipeline sets them for one ingestion (``reading_with``).
_limits: contextvars.ContextVar[ReadLimits | None] = contextvars.ContextVar(
    "mds_ingest_limits", default=None
)
_DEFAULT_LIMITS = ReadLimits()


@contextlib.contextmanager
def reading_with(limits: ReadLimits) -> Iterator[ReadLimits]:
    """While open, the files read on this thread are read under ``limits``."""
    token = _limits.set(limits)
    try:
        yield limits
    finally:
        _limits.reset(token)


def read_limits() -> ReadLimits:
    """The limits in force (``reading_with``; the defaults outside it)."""
    return _limits.get() or _DEFAULT_LIMITS


class RefusedLine(NamedTuple):
    """A line a limit refused before any reader saw it: the pipeline rejects it."""

    path: str
    line: int
    reason: str
    message: str


#: Where ``TextLines`` and ``csv_rows`` put the lines they refuse (``collect_refused``).
_refused: contextvars.ContextVar[list[RefusedLine] | None] = contextvars.ContextVar(
    "mds_ingest_refused", default=None
)


@contextlib.contextmanager
def collect_refused() -> Iterator[list[RefusedLine]]:
    """While open, a line over a limit is left out of what readers see and lands in the
    list (the pipeline hands it on as a rejected row); outside it, such a line ends the
    file as damage does."""
    refused: list[RefusedLine] = []
    token = _refused.set(refused)
    try:
        yield refused
    finally:
        _refused.reset(token)


def _refuse(path: Path, line: int, reason: str, message: str, *, quiet: bool) -> None:
    """Record one refused line, or stop the file there when nothing collects them."""
    if quiet:
        return
    sink = _refused.get()
    if sink is None:
        _stop_at(BadFileError(path, line, "malformed", message))
        raise _Stopped
    sink.append(RefusedLine(str(path), line, reason, message))


class _Stopped(Exception):
    """A refused line ended the file (no ``collect_refused``)."""


def describe_failure(path: Path | str, line: int | None, exc: BaseException) -> BadFileError:
    """``exc``, raised while reading ``path`` (after ``line``), as a ``BadFileError``."""
    if isinstance(exc, BadFileError):
        return exc
    if isinstance(exc, WrongFileKindError):  # "not a tick file: ..."
        return BadFileError(path, None, "wrong_kind", str(exc).removeprefix(f"{path}: "))
    if isinstance(exc, ImplausibleTimeError):
        detail = str(exc).removeprefix(f"{path}:{exc.line}: ")
        return BadFileError(path, exc.line, "implausible_time", detail)
    name = type(exc).__name__
    if isinstance(exc, EOFError | zlib.error | zipfile.BadZipFile | gzip.BadGzipFile):
        return BadFileError(path, line, "compression", f"corrupt or truncated compression ({exc})")
    if isinstance(exc, UnicodeDecodeError):
        return BadFileError(path, line, "encoding", f"not UTF-8 text ({exc.reason})")
    if isinstance(exc, csv.Error):
        return BadFileError(path, line, "csv", f"CSV error ({exc})")
    if isinstance(exc, OSError):
        return BadFileError(path, line, "unreadable", f"cannot be read ({exc.strerror or exc})")
    if isinstance(exc, RecursionError):
        return BadFileError(path, line, "malformed", "nested too deeply")
    return BadFileError(path, line, "malformed", f"reading stopped ({name}: {exc})")


#: What may go wrong reading one file; ``describe_failure`` tells them apart.
FILE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    zlib.error,
    zipfile.BadZipFile,
    csv.Error,
    ValueError,  # UnicodeDecodeError, WrongFileKindError, ImplausibleTimeError, BadFileError
    OverflowError,
    RecursionError,
)


def check_regular(path: Path) -> None:
    """Raise ``BadFileError`` unless ``path`` is a regular file: a FIFO, device or socket
    is refused by ``stat`` alone (opening a FIFO blocks until a writer comes), and a
    directory is one that could not be listed when the files were found."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise BadFileError(path, None, "unreadable", f"cannot be read ({exc.strerror})") from None
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        try:
            os.listdir(path)
        except OSError as exc:
            detail = f"directory cannot be listed ({exc.strerror})"
            raise BadFileError(path, None, "unreadable", detail) from None
        raise BadFileError(path, None, "unreadable", "a directory, not a file")
    what = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )
    raise BadFileError(path, None, "special_file", f"{what}, not a regular file: not opened")


def find_files(paths: Iterable[str | Path], suffixes: tuple[str, ...]) -> list[Path]:
    """The files named, and the files under the directories named whose names end with
    one of ``suffixes`` (any case), sorted by path within each directory.

    A subdirectory that cannot be listed is returned too (the reader reports it rather
    than it being skipped silently), and so is a special file with a matching name.
    """
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            inside: list[Path] = []
            unlisted: list[Path] = []

            def failed(exc: OSError, into: list[Path] = unlisted) -> None:
                into.append(Path(exc.filename))

            for folder, _dirs, names in os.walk(path, onerror=failed):
                inside.extend(
                    Path(folder, name) for name in names if name.lower().endswith(suffixes)
                )
            found.extend(sorted(inside + unlisted))
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return found


def open_binary(path: Path, error: type[WrongFileKindError]) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip or a single-member zip; a file that
    is not a regular one raises ``BadFileError`` without being opened."""
    check_regular(path)
    with path.open("rb") as probe:
        magic = probe.read(4)
    if magic[:2] == b"\x1f\x8b":
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))
    if magic == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            detail = f"a broken zip archive ({exc})"
            raise BadFileError(path, None, "compression", detail) from None
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


#: Decompressed bytes ``TextLines.take`` reads at a time.
_BLOCK_BYTES = 1 << 20


class TextLines:
    """The lines of a (decompressed) file as UTF-8 text, newlines kept for ``csv``.

    Decoded as they are handed out, so bytes that are not UTF-8 are reported with their
    line. Damage (corrupt compression, a read error, bad bytes) ends the lines there:
    under ``collect_damage`` the error is recorded and iteration stops, so a reader
    hands on the rows it read before; otherwise it is raised as ``BadFileError``.
    ``quiet`` stops without recording (a look at a file's head, whose reading reports
    the damage later).

    A line longer than ``ReadLimits.max_line_bytes`` is read past in pieces and never
    handed out (``collect_refused`` gets it); ``line`` still counts it. There is no way
    to read the whole file at once, on purpose: memory must not follow a file's size.

    Lines come one at a time (iteration) or many at once (``take``, for readers that
    parse a block of lines in one call); both may be mixed.
    """

    def __init__(self, path: Path, error: type[WrongFileKindError], *, quiet: bool = False):
        self.path = path
        self.quiet = quiet
        #: The number of the last line handed out.
        self.line = 0
        self._stream = open_binary(path, error)
        self._ended = False
        self._max_line = read_limits().max_line_bytes
        # Bytes read ahead by ``take`` and not handed out: _buffer[_start:].
        self._buffer = b""
        self._start = 0
        self._at_end = False  # the stream has no more bytes ...
        self._failed: BaseException | None = None  # ... or failed with this after them

    def __enter__(self) -> TextLines:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()

    def stop(self) -> None:
        """Hand out no more lines (the file has ended at damage found by a caller)."""
        self._ended = True

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            if self._ended:
                raise StopIteration
            try:
                # At most one line over the limit is held: a file without line ends, or
                # a bomb of one line, is read past in pieces of the limit's size.
                raw = self._readline(self._max_line + 1)
                if not raw:
                    raise StopIteration
                if len(raw) > self._max_line:
                    self._refuse_long_line(raw)
                    continue
                text = raw.decode("utf-8")
            except StopIteration:
                self._ended = True
                raise
            except _Stopped:
                self._ended = True
                raise StopIteration from None
            except FILE_ERRORS as exc:
                self._ended = True
                _stop_at(describe_failure(self.path, self.line + 1, exc), quiet=self.quiet)
                raise StopIteration from None
            self.line += 1
            return text

    def take(self, max_lines: int) -> tuple[str, int]:
        """Up to ``max_lines`` whole lines at once, as one text, and how many: the lines
        ``line - count + 1`` to ``line``, as iterating would hand them out, without a
        Python step per line. Fewer, or none, when the next line needs iterating: a line
        over the limit, bytes that are not UTF-8, damage, a last line without a line
        end, or the end of the file (``next`` then handles that one line)."""
        if self._ended or max_lines <= 0:
            return "", 0
        self._read_ahead(max_lines)
        start, buffer = self._start, self._buffer
        if start == len(buffer):
            return "", 0
        view = np.frombuffer(buffer, dtype=np.uint8, offset=start)
        ends = np.flatnonzero(view == 10)[:max_lines]
        if not len(ends):
            return "", 0
        lengths = np.diff(ends, prepend=-1)
        too_long = np.flatnonzero(lengths > self._max_line)
        count = int(too_long[0]) if len(too_long) else len(ends)
        if count == 0:
            return "", 0
        cut = start + int(ends[count - 1]) + 1
        try:
            text = buffer[start:cut].decode("utf-8")
        except UnicodeDecodeError as exc:
            count = buffer.count(b"\n", start, start + exc.start)  # the lines before it
            if count == 0:
                return "", 0
            cut = start + int(ends[count - 1]) + 1
            text = buffer[start:cut].decode("utf-8")
        self._start = cut
        self.line += count
        return text, count

    def _read_ahead(self, max_lines: int) -> None:
        """Read until the buffer holds ``max_lines`` line ends, the stream ends or fails,
        or the line being read is over the limit. A failure is kept to be raised where
        iterating would meet it, after the lines before it."""
        if self._start:
            self._buffer, self._start = self._buffer[self._start :], 0
        pieces = [self._buffer]
        lines = self._buffer.count(b"\n")
        tail = len(self._buffer) - (self._buffer.rfind(b"\n") + 1)
        while lines < max_lines and not self._at_end and tail <= self._max_line:
            try:
                # read1: what one read of the source gives; a read that failed half
                # way would drop what it had decompressed before the damage.
                piece = cast(io.BufferedIOBase, self._stream).read1(_BLOCK_BYTES)
            except FILE_ERRORS as exc:
                self._failed, self._at_end = exc, True
                break
            if not piece:
                self._at_end = True
                break
            pieces.append(piece)
            found = piece.count(b"\n")
            lines += found
            tail = len(piece) - (piece.rfind(b"\n") + 1) if found else tail + len(piece)
        self._buffer = b"".join(pieces)

    def _readline(self, limit: int) -> bytes:
        """The next line, at most ``limit`` bytes of it: from what ``take`` read ahead,
        then from the stream."""
        start, buffer = self._start, self._buffer
        if start == len(buffer):
            if self._failed is not None:
                raise self._failed
            return b"" if self._at_end else self._stream.readline(limit)
        end = buffer.find(b"\n", start, start + limit)
        if end >= 0:
            cut = end + 1
        elif len(buffer) - start >= limit:
            cut = start + limit
        else:  # the rest of what was read ahead begins the line
            rest = buffer[start:]
            self._buffer, self._start = b"", 0
            if self._failed is not None:
                raise self._failed  # the damaged line is never handed out
            if self._at_end:
                return rest
            return rest + self._stream.readline(limit - len(rest))
        self._start = cut
        return buffer[start:cut]

    def _refuse_long_line(self, start: bytes) -> None:
        """Read past the rest of the line that begins with ``start`` and refuse it."""
        length = len(start)
        piece = start
        while not piece.endswith(b"\n"):
            piece = self._readline(self._max_line)
            if not piece:
                break
            length += len(piece)
        self.line += 1
        message = (
            f"line of {length:,} bytes is over the limit of {self._max_line:,} "
            f"(ingest.max_line_bytes); not read"
        )
        _refuse(self.path, self.line, "line_too_long", message, quiet=self.quiet)


def open_text(path: Path, error: type[WrongFileKindError], *, quiet: bool = False) -> TextLines:
    """The file as UTF-8 text lines (decompressed), newlines left as they are for ``csv``."""
    return TextLines(path, error, quiet=quiet)


def csv_rows(lines: TextLines) -> Generator[tuple[int, list[str]], None, None]:
    """(line, cells) of every CSV record of ``lines``, one record per line.

    A field over ``ReadLimits.max_field_chars`` is one refused line (``field_too_long``)
    and the rows after it are read. A quoting error or a quoted field that runs over a
    line end (a stray ``"``: no data file of ours holds a line break in a field, and the
    rest of the file would silently become one field) ends the file there, as damage
    does (``TextLines``), naming the line where the record starts.
    """
    limit = read_limits().max_field_chars
    if csv.field_size_limit() < limit:  # process-wide: only ever raised, to our limit
        csv.field_size_limit(limit)
    reader = csv.reader(lines)
    while True:
        before = reader.line_num
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            consumed = reader.line_num - before
            start = lines.line - max(consumed, 1) + 1
            if consumed <= 1 and "field larger than field limit" in str(exc):
                _refuse_field(lines, start, None, limit)
                continue
            _stop_at(describe_failure(lines.path, start, exc), quiet=lines.quiet)
            return
        consumed = reader.line_num - before
        start = lines.line - consumed + 1
        if consumed > 1:
            stray = csv.Error(
                f"a quoted field runs from line {start} over {consumed - 1} line "
                f"ends (a stray quote?)"
            )
            _stop_at(describe_failure(lines.path, start, stray), quiet=lines.quiet)
            return
        if row and max(map(len, row)) > limit:
            _refuse_field(lines, start, row, limit)
            continue
        yield start, row


def _refuse_field(lines: TextLines, line: int, row: list[str] | None, limit: int) -> None:
    which = "a field"
    if row is not None:
        index = next(i for i, cell in enumerate(row) if len(cell) > limit)
        which = f"field {index + 1} ({len(row[index]):,} characters)"
    message = f"{which} is over the limit of {limit:,} characters (ingest.max_field_chars)"
    try:
        _refuse(lines.path, line, "field_too_long", message, quiet=lines.quiet)
    except _Stopped:
        lines.stop()


def read_head(path: Path, error: type[WrongFileKindError], size: int = SNIFF_BYTES) -> str:
    """The first ``size`` bytes of the (decompressed) file as text, without a BOM.

    Raises ``error`` for a file that cannot be read, holds binary content or is not UTF-8.
    """
    try:
        with open_binary(path, error) as stream:
            head = stream.read(size)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise describe_failure(path, None, exc) from None
    if b"\x00" in head:
        raise error(path, "binary content, not text")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Up to the bad byte: enough to tell the layout when the first line is whole; the
        # reader then reports the bad line (keeping the rows before it).
        text = head[: exc.start].decode("utf-8")
        if exc.start < len(head) - 4 and "\n" not in text.lstrip():
            raise describe_failure(path, text.count("\n") + 1, exc) from None
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
        header_seen = False
        for line, row in csv_rows(stream):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if not header_seen:
                header_seen = True
                continue
            yield line, row


def first_csv_cells(
    path: Path, error: type[WrongFileKindError], index: int
) -> Generator[tuple[int, str], None, None]:
    """(line, cell ``index``) of the data rows of a CSV file with a header, read lazily
    (use it in ``contextlib.closing`` when not read to the end)."""
    with open_text(path, error, quiet=True) as stream:
        rows = 0
        for line, row in csv_rows(stream):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if rows > FIRST_TIME_ROWS:
                return  # short rows only: no time to judge the file by
            rows += 1
            if rows > 1 and index < len(row):  # the first row is the header
                yield line, row[index]


def first_json_values(
    path: Path, error: type[WrongFileKindError], key: str
) -> Generator[tuple[int, object], None, None]:
    """(line, value of ``key``) of the JSON-object lines of a file that have it, read
    lazily (use it in ``contextlib.closing`` when not read to the end)."""
    with open_text(path, error, quiet=True) as stream:
        for raw in stream:
            number = stream.line
            try:
                message = loads_json(raw) if raw.strip() else None
            except ValueError:
                message = None
            if isinstance(message, dict) and key in message:
                yield number, message[key]
            elif number >= FIRST_TIME_ROWS:
                return  # lines without the key: no time to judge the file by


# -- numbers ---------------------------------------------------------------------------------

#: A number as data files write it: digits, maybe a sign, a fraction and an exponent.
#: ASCII only: Python's float() and int() also take ``1_000``, ``0x1p3`` (via
#: float.fromhex), ``inf``, ``nan``, other scripts' digits and surrounding spaces.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


#: Words for numbers that are not finite; read so, the kinds reject them as ``not_finite``.
_NOT_FINITE = {"nan": math.nan, "+nan": math.nan, "-nan": math.nan, "inf": math.inf}
_NOT_FINITE |= {"+inf": math.inf, "-inf": -math.inf, "infinity": math.inf}
_NOT_FINITE |= {"+infinity": math.inf, "-infinity": -math.inf}


def parse_number(value: object, name: str) -> float:
    """A number from a cell (text) or a JSON number, else ValueError naming ``name``.

    One parser for every reader, so ``1_000``, ``0x10``, ``0x1p3`` and digits of other
    scripts are malformed everywhere. ``nan``, ``inf`` and numbers beyond a float's range
    (``1e309``) are read as NaN or infinity, which every kind rejects as ``not_finite``.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{name} must be a number, got {value!r:.40}")
    if not isinstance(value, str):
        try:
            return float(value)
        except OverflowError:  # an int beyond a float's range
            return math.inf if value > 0 else -math.inf
    text = value.strip()
    if _DECIMAL.fullmatch(text):
        return float(text)  # 1e309 is inf: rejected as not_finite
    special = _NOT_FINITE.get(text.lower())
    if special is None:
        raise ValueError(f"{name} {text[:40]!r} is not a decimal number")
    return special


def loads_json(text: str) -> object:
    """One JSON document; nesting too deep for the parser is a ValueError naming it (not
    a RecursionError). (JSON's NaN, Infinity and 1e400 are read as floats, which every
    kind rejects as ``not_finite``.)"""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


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
        try:
            if isinstance(value, int) or is_epoch_number(text):
                if self.unit == "auto":
                    self.unit = unit_by_magnitude(int(text.split(".", 1)[0]))
                ms = epoch_to_ms(text, self.unit)
            else:
                ms = parse_timestamp_ms(text, self.zone)
        except OverflowError:
            raise TimeOutOfRangeError(f"{self.column} {text[:40]} is out of range") from None
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
    "FILE_ERRORS",
    "FILE_REASONS",
    "FIRST_TIME_ROWS",
    "LIMIT_REASONS",
    "SNIFF_BYTES",
    "BadFileError",
    "FileTimes",
    "ImplausibleTimeError",
    "ReadLimits",
    "RefusedLine",
    "TextLines",
    "TimeOutOfRangeError",
    "WrongFileKindError",
    "check_regular",
    "check_time_unit",
    "collect_damage",
    "collect_refused",
    "csv_data_rows",
    "csv_rows",
    "describe_failure",
    "find_files",
    "first_csv_cells",
    "first_json_values",
    "first_line",
    "latest_plausible_ms",
    "loads_json",
    "open_binary",
    "open_text",
    "parse_number",
    "read_head",
    "read_limits",
    "reading_with",
]
