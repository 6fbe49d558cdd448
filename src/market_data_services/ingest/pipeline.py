"""The one ingestion pipeline: read -> check -> policy -> store -> report and metrics.

Ticks, order-book snapshots and sentiment readings are loaded the same way: each chunk a
layout reads is checked row by row, the policy (symbols, crossed and locked, how far
ahead) is applied, bad rows are rejected with a reason code and their file and line (in
file order), good rows beside them are stored under the kind's write lock, and an
``IngestReport`` and the kind's counters say what happened. A kind (``ticks.py``,
``dom.py``, ``sentiment.py``) is an ``IngestKind``: its own checks, messages and row
writer, nothing more.

Files are written behind their reading (``WriteBehind``): a writer thread stores a
chunk while the next is read and checked, so on PostgreSQL the client's parsing overlaps
the server's COPY and commit instead of waiting for them. A kind whose chunks need no
order among their writes (tick files) has two writers on PostgreSQL, each a transaction
and a server process of its own.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Connection, Table
from sqlalchemy.engine import Engine

from market_data_services.ingest.files import (
    FILE_ERRORS,
    FILE_REASONS,
    BadFileError,
    ReadLimits,
    RefusedLine,
    collect_damage,
    collect_refused,
    describe_failure,
    reading_with,
)
from market_data_services.market.symbols import check_symbol, is_valid_symbol, symbol_rule
from market_data_services.runtime.telemetry import families_for
from market_data_services.runtime.validate import fraction
from market_data_services.storage.bulk import refresh_statistics
from market_data_services.storage.engine import begin_write, is_memory_sqlite, write_streams
from market_data_services.storage.locks import hold_advisory_lock
from market_data_services.timeutil import format_ms

#: Default allowance for feed clocks running ahead of ours.
DEFAULT_FUTURE_TOLERANCE_SECONDS = 3600.0
#: Default tolerance of sentiment's |long + short - 1| (one percentage point).
DEFAULT_SUM_TOLERANCE = 0.01


class Rejection(NamedTuple):
    """One rejected row: where it was, why (a reason code), and a readable message."""

    source: str
    line: int | None
    reason: str
    message: str

    @property
    def where(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class IngestProgress(NamedTuple):
    """Handed to an ingester's ``progress`` callback after each file."""

    files_done: int
    files_total: int
    rows: int
    path: str


@dataclass
class IngestReport:
    """What an ingestion did. ``accepted == written + duplicates``.

    ``unit`` names what was loaded (ticks, snapshots, readings) in ``summary()``;
    ``crossed_noun`` names the crossed and locked count there (``quotes``, ``books``),
    and None leaves it out (sentiment has no such state).
    """

    files: int = 0
    rows: int = 0
    accepted: int = 0
    written: int = 0
    duplicates: int = 0
    rejected: int = 0
    crossed: int = 0
    locked: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    #: Files that failed, or whose reading stopped at damage (rows before it are kept).
    failed_files: list[BadFileError] = field(default_factory=list)
    symbols: dict[str, int] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None
    max_examples: int = 100
    unit: str = "ticks"
    crossed_noun: str | None = "quotes"

    def _reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.rejected_by_reason[rejection.reason] = (
            self.rejected_by_reason.get(rejection.reason, 0) + 1
        )
        if len(self.rejections) < self.max_examples:
            self.rejections.append(rejection)

    def _fail(self, failure: BadFileError) -> None:
        self.failed_files.append(failure)

    def _accept(self, symbol: str, count: int, first_ts: int, last_ts: int) -> None:
        self.symbols[symbol] = self.symbols.get(symbol, 0) + count
        self.first_ts = first_ts if self.first_ts is None else min(self.first_ts, first_ts)
        self.last_ts = last_ts if self.last_ts is None else max(self.last_ts, last_ts)

    def summary(self) -> str:
        """One line: ``1,144,807 ticks accepted (1,144,807 new, 0 already stored), ...``."""
        parts = [
            f"{self.accepted:,} {self.unit} accepted ({self.written:,} new, "
            f"{self.duplicates:,} already stored)",
            f"{self.rejected:,} rejected",
        ]
        if self.failed_files:
            parts.append(f"{len(self.failed_files):,} files failed or stopped early")
        if self.crossed_noun is not None:
            parts.append(f"{self.crossed:,} crossed and {self.locked:,} locked {self.crossed_noun}")
        if self.first_ts is not None and self.last_ts is not None:
            parts.append(f"from {format_ms(self.first_ts)} to {format_ms(self.last_ts)}")
        return "; ".join(parts)


def future_tolerance_ms(seconds: float) -> int:
    """``future_tolerance_seconds`` checked and in milliseconds."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not (seconds >= 0 and math.isfinite(seconds))
    ):
        raise ValueError(f"future_tolerance_seconds must be a finite number >= 0, got {seconds!r}")
    return int(seconds * 1000)


__all__ = [
    "DEFAULT_FUTURE_TOLERANCE_SECONDS",
    "DEFAULT_SUM_TOLERANCE",
    "Checked",
    "Checks",
    "IngestFamilies",
    "IngestKind",
    "IngestProgress",
    "IngestReport",
    "MetricNames",
    "QuotePolicy",
    "RawChunk",
    "Rejection",
    "WriteBehind",
    "WriteFailed",
    "check_chunk",
    "count_file_failure",
    "future_tolerance_ms",
    "ingest_chunks",
    "inspect_files",
    "load_files",
    "reject_rows",
    "store_chunk",
    "write_chunk",
]


class _DataFile(Protocol):
    @property
    def path(self) -> Path: ...


F = TypeVar("F", bound=_DataFile)
C = TypeVar("C")


def inspect_files(
    paths: str | Path | Iterable[str | Path],
    layout: str | None,
    layouts: Sequence[str],
    find: Callable[[list[str | Path]], Iterable[Path]],
    inspect_one: Callable[[Path, str | None], F],
    *,
    failures: list[BadFileError] | None = None,
) -> list[F]:
    """Find the files under ``paths`` and inspect each (its layout) before any is loaded;
    with ``failures``, a file that fails is added there and the others go on."""
    if layout is not None and layout not in layouts:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(layouts)}")
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if failures is None:
        return [inspect_one(path, layout) for path in find(items)]
    inspected = []
    for path in find(items):
        try:
            inspected.append(inspect_one(path, layout))
        except FILE_ERRORS as exc:
            failures.append(describe_failure(path, None, exc))
    return inspected


#: The kinds, as ``layouts.base.KINDS`` (which imports this module) names them.
_KINDS = ("ticks", "dom", "sentiment")


def _file_failures(registry: CollectorRegistry) -> dict[tuple[str, str], Any]:
    counter = Counter(
        "mds_ingest_files_failed",
        "Files that could not be read, or whose reading stopped early (rows before the "
        "damage are kept), by kind and reason.",
        ["kind", "reason"],
        registry=registry,
    )
    return {
        (kind, reason): counter.labels(kind, reason) for kind in _KINDS for reason in FILE_REASONS
    }


def count_file_failure(
    failure: BadFileError, kind: str, registry: CollectorRegistry | None = None
) -> None:
    """Count one failed file in ``mds_ingest_files_failed_total{kind,reason}``."""
    families_for(registry, _file_failures)[(kind, failure.reason)].inc()


def load_files(
    files: Sequence[F],
    chunks: Callable[[F], Iterable[C]],
    store: Callable[[C], None],
    report: IngestReport,
    progress: Callable[[IngestProgress], None] | None,
    *,
    failed: Callable[[BadFileError], None] | None = None,
) -> IngestReport:
    """Store every chunk of every file in order; count files and report progress.

    A file that fails while read (corrupt compression, bad bytes, a CSV error, ...) is
    ended there: the readers hand on the rows before the damage, which are stored, and
    the failure is reported (``report.failed_files``); the next file goes on.
    """
    for done, data_file in enumerate(files, start=1):
        with collect_damage() as damage:
            try:
                for chunk in chunks(data_file):
                    store(chunk)
            except FILE_ERRORS as exc:  # a reader that does not stop at damage by itself
                damage.append(describe_failure(data_file.path, None, exc))
        for failure in damage:
            report._fail(failure)
            if failed is not None:
                failed(failure)
        report.files += 1
        if progress is not None:
            progress(IngestProgress(done, len(files), report.rows, str(data_file.path)))
    return report


@dataclass(frozen=True, kw_only=True)
class QuotePolicy:
    """What an ingester accepts: which symbols, crossed quotes, how far ahead, and (for
    sentiment) how far long + short may be from 100 %."""

    symbols: frozenset[str] | None
    reject_crossed: bool = False
    future_tolerance_ms: int
    sum_tolerance: float = DEFAULT_SUM_TOLERANCE

    @classmethod
    def of(
        cls,
        symbols: Collection[str] | None,
        reject_crossed: bool,
        future_tolerance_seconds: float,
        sum_tolerance: float = DEFAULT_SUM_TOLERANCE,
    ) -> QuotePolicy:
        """Checked arguments: bad symbols and tolerances raise ValueError naming them."""
        tolerance = future_tolerance_ms(future_tolerance_seconds)
        fraction(sum_tolerance, "sum_tolerance")
        allowed = None
        if symbols is not None:
            allowed = frozenset(check_symbol(name) for name in symbols)
        return cls(
            symbols=allowed,
            reject_crossed=bool(reject_crossed),
            future_tolerance_ms=tolerance,
            sum_tolerance=float(sum_tolerance),
        )


# -- the engine --------------------------------------------------------------------------------


class RawChunk(Protocol):
    """What a layout reads: rows of one source (or one chunk of it), not yet checked.

    Columns share one length; ``symbol_codes`` index ``symbols``; ``rejections`` are the
    rows that could not be parsed.
    """

    source: str
    symbols: list[str]
    symbol_codes: npt.NDArray[np.int32]
    ts: npt.NDArray[np.int64]
    lines: npt.NDArray[np.int64]
    rejections: list[Rejection]

    def __len__(self) -> int: ...


R = TypeVar("R", bound=RawChunk)
BoolArray = npt.NDArray[np.bool_]


class MetricNames(NamedTuple):
    """A kind's counter names (without ``_total``) and help texts."""

    written: tuple[str, str]
    duplicates: tuple[str, str]
    rejected: tuple[str, str]
    crossed: tuple[str, str] | None = None
    locked: tuple[str, str] | None = None


class IngestFamilies:
    """One kind's ingestion counters on one registry: written, duplicates, rejected by
    reason (children resolved once) and, for quotes and books, crossed and locked."""

    def __init__(
        self, registry: CollectorRegistry, names: MetricNames, reasons: Sequence[str]
    ) -> None:
        self.written = Counter(*names.written, registry=registry)
        self.duplicates = Counter(*names.duplicates, registry=registry)
        self.rejected = Counter(*names.rejected, ["reason"], registry=registry)
        self.crossed = None if names.crossed is None else Counter(*names.crossed, registry=registry)
        self.locked = None if names.locked is None else Counter(*names.locked, registry=registry)
        self.by_reason = {reason: self.rejected.labels(reason) for reason in reasons}


class Checks:
    """The reason code of each row of one chunk: the first reason marked wins."""

    def __init__(self, reasons: Sequence[str], rows: int) -> None:
        self.reasons = tuple(reasons)
        self._code = {reason: number for number, reason in enumerate(self.reasons, start=1)}
        self.reason = np.zeros(rows, dtype=np.int8)
        #: Messages the kind's checks wrote for single rows, by position.
        self.messages: dict[int, str] = {}

    def mark(self, mask: BoolArray, name: str) -> None:
        """Reject the rows of ``mask`` not rejected yet for ``name``."""
        self.reason[(self.reason == 0) & mask] = self._code[name]

    def set(self, position: int, name: str, message: str) -> None:
        """Reject one row for ``name`` with its own ``message``."""
        self.reason[position] = self._code[name]
        self.messages[position] = message

    def code(self, name: str) -> int:
        return self._code[name]

    @property
    def passed(self) -> BoolArray:
        passed: BoolArray = self.reason == 0
        return passed

    def name(self, position: int) -> str:
        return self.reasons[int(self.reason[position]) - 1]


class Checked(NamedTuple):
    """The rows of a chunk that passed, crossed and locked counts, the rejections."""

    keep: BoolArray
    crossed: int
    locked: int
    rejections: list[Rejection]


class IngestKind(Generic[R]):
    """One kind of raw data (ticks, books, readings): a thin adapter of the pipeline.

    The pipeline owns the checks every kind shares (times before 1970 or too far ahead,
    symbol text and the allowed set, crossed quotes under the policy), the write lock,
    the report, the counters and the order of rejections. A kind says only what is its
    own: its checks (``check``), the crossed and locked states (``crossed_and_locked``,
    None where there are none), its messages (``describe``) and how rows are written
    (``write``).

    Everything but ``write`` runs on the reading thread, in file order: state kept per
    source (``start_source``, ``prepare``) belongs there. ``write`` runs on a writer
    thread and keeps no state between chunks; with ``parallel_writes`` two chunks may be
    written at once (PostgreSQL), each in its own transaction holding the kind's write
    lock shared.
    """

    #: What one row is in ``IngestReport.summary()``: ticks, snapshots, readings.
    unit: ClassVar[str]
    #: The kind as ``mds ingest`` names it (``KINDS``): the ``kind`` label of file failures.
    kind: ClassVar[str]
    #: The noun of the crossed and locked count in the summary; None: no such state.
    crossed_noun: ClassVar[str | None] = None
    #: The ``reason`` label values of the rejected counter, in the order they are checked.
    reasons: ClassVar[tuple[str, ...]]
    #: The advisory lock writers of this kind take (``storage.locks``).
    lock_key: ClassVar[int]
    #: Whether shared messages start with ``SYMBOL:``.
    symbol_in_messages: ClassVar[bool] = True
    #: After a load of this many new rows, refresh this table's planner statistics.
    analyze: ClassVar[tuple[Table, int] | None] = None
    #: Whether chunks may be written at once, in any order of commits: no write depends
    #: on what another stored, and a row stored meanwhile is skipped, not an error.
    parallel_writes: bool = False

    def families(self, registry: CollectorRegistry | None) -> IngestFamilies:
        """The kind's counters on ``registry``, made once per registry."""
        raise NotImplementedError

    def start_source(self) -> None:
        """A new file (or ``write_*`` call) begins; state kept per source starts over."""

    def check(self, raw: R, checks: Checks, policy: QuotePolicy) -> None:
        """Mark the kind's own bad rows (run before the shared checks)."""

    def check_after_symbols(self, raw: R, checks: Checks) -> None:
        """Mark bad rows the kind checks after the symbols (sentiment: its sources)."""

    def crossed_and_locked(self, raw: R, valid: BoolArray) -> tuple[BoolArray, BoolArray] | None:
        """The crossed and the locked rows among ``valid``; None when the kind has none."""
        return None

    def describe(self, raw: R, name: str, index: int, checks: Checks, policy: QuotePolicy) -> str:
        """The message of the kind's own rejection reasons."""
        raise NotImplementedError

    def prepare(self, raw: R, keep: BoolArray) -> None:
        """Before the kept rows are handed to a writer, on the reading thread in file
        order: what depends on the rows before them (ticks number equal times)."""

    def write(self, connection: Connection, raw: R, keep: BoolArray) -> int:
        """Store the kept rows inside the write transaction; how many were new."""
        raise NotImplementedError


def check_chunk(kind: IngestKind[R], raw: R, policy: QuotePolicy, now_ms: int) -> Checked:
    """The kind's checks, then the shared ones and the policy; rejections in row order."""
    checks = Checks(kind.reasons, len(raw))
    kind.check(raw, checks, policy)
    checks.mark(raw.ts < 0, "timestamp_out_of_range")
    checks.mark(raw.ts > now_ms + policy.future_tolerance_ms, "future_timestamp")
    per_symbol = np.zeros(max(len(raw.symbols), 1), dtype=np.int8)
    for code, name in enumerate(raw.symbols):
        if not is_valid_symbol(name):
            per_symbol[code] = checks.code("malformed")
        elif policy.symbols is not None and name not in policy.symbols:
            per_symbol[code] = checks.code("unknown_symbol")
    if per_symbol.any() and len(raw):
        pending = checks.reason == 0
        checks.reason[pending] = per_symbol[raw.symbol_codes][pending]
    kind.check_after_symbols(raw, checks)
    crossed_count = locked_count = 0
    states = kind.crossed_and_locked(raw, checks.passed)
    if states is not None:
        crossed, locked = states
        crossed_count, locked_count = int(crossed.sum()), int(locked.sum())
        if policy.reject_crossed:
            checks.mark(crossed, "crossed")
    keep = checks.passed
    rejections = []
    for index in np.flatnonzero(~keep).tolist():
        name = checks.name(index)
        message = _shared_message(kind, raw, name, index, policy=policy, now_ms=now_ms)
        if message is None:
            message = kind.describe(raw, name, index, checks, policy)
        rejections.append(Rejection(raw.source, int(raw.lines[index]), name, message))
    return Checked(keep, crossed_count, locked_count, rejections)


def _shared_message(
    kind: IngestKind[R], raw: R, name: str, index: int, *, policy: QuotePolicy, now_ms: int
) -> str | None:
    symbol = raw.symbols[int(raw.symbol_codes[index])] if raw.symbols else ""
    subject = f"{symbol}: " if kind.symbol_in_messages else ""
    ts = int(raw.ts[index])
    if name == "timestamp_out_of_range":
        return f"{subject}timestamp {ts} ms is before 1970"
    if name == "future_timestamp":
        return (
            f"{subject}timestamp {format_ms(ts)} is more than "
            f"{policy.future_tolerance_ms // 1000} s after now ({format_ms(now_ms)}); "
            f"wrong --tz?"
        )
    if name == "unknown_symbol":
        allowed = ", ".join(sorted(policy.symbols or ()))
        return f"symbol {symbol!r} is not among the symbols being loaded ({allowed})"
    if name == "malformed" and not is_valid_symbol(symbol):
        return f"symbol {symbol!r} is not a valid symbol ({symbol_rule()})"
    return None


def store_chunk(
    engine: Engine,
    kind: IngestKind[R],
    raw: R,
    *,
    policy: QuotePolicy,
    now_ms: int,
    report: IngestReport,
    metrics: IngestFamilies,
    writer: WriteBehind | None = None,
) -> None:
    """Check ``raw``, store what passed under the kind's write lock, report and count.

    With ``writer`` the store runs on its thread and this returns once it is handed
    over; what it wrote is counted when the writer settles it (on this thread).
    """
    report.rows += len(raw) + len(raw.rejections)
    checked = check_chunk(kind, raw, policy, now_ms)
    keep = checked.keep
    index = np.flatnonzero(keep)
    accepted = int(index.shape[0])

    def write() -> int:
        with begin_write(engine) as connection:
            hold_advisory_lock(connection, kind.lock_key, shared=kind.parallel_writes)
            written = kind.write(connection, raw, keep)
        if written < 0:  # pragma: no cover - both our drivers report it
            return accepted
        return written

    def count_written(written: int) -> None:
        report.written += written
        report.duplicates += accepted - written
        metrics.written.inc(written)
        metrics.duplicates.inc(accepted - written)

    if accepted:
        kind.prepare(raw, keep)
        if writer is None:
            count_written(write())
        else:
            writer.submit(write, count_written)
        codes, ts = raw.symbol_codes[index], raw.ts[index]
        counts = np.bincount(codes, minlength=len(raw.symbols))
        for code, name in enumerate(raw.symbols):
            if counts[code]:
                mine = ts[codes == code]
                report._accept(name, int(counts[code]), int(mine.min()), int(mine.max()))
    report.accepted += accepted
    report.crossed += checked.crossed
    report.locked += checked.locked
    # In file order: parsing and checking find theirs separately.
    reject_rows(sorted([*raw.rejections, *checked.rejections], key=_line), report, metrics)
    if metrics.crossed is not None:
        metrics.crossed.inc(checked.crossed)
    if metrics.locked is not None:
        metrics.locked.inc(checked.locked)


def reject_rows(
    rejections: Iterable[Rejection], report: IngestReport, metrics: IngestFamilies
) -> None:
    """Report and count rejected rows, in the order given."""
    for rejection in rejections:
        report._reject(rejection)
        metrics.by_reason[rejection.reason].inc()


def _line(rejection: Rejection) -> int:
    return rejection.line or 0


def _rejected(refused: list[RefusedLine]) -> list[Rejection]:
    """The lines a limit refused (``collect_refused``) as rejected rows; the list is emptied."""
    rows = [Rejection(r.path, r.line, r.reason, r.message) for r in refused]
    refused.clear()
    return rows


def new_report(kind: IngestKind[R], max_examples: int) -> IngestReport:
    return IngestReport(max_examples=max_examples, unit=kind.unit, crossed_noun=kind.crossed_noun)


def ingest_chunks(
    engine: Engine,
    kind: IngestKind[R],
    files: Sequence[F],
    read: Callable[[F], Iterable[R]],
    *,
    policy: QuotePolicy,
    registry: CollectorRegistry | None,
    progress: Callable[[IngestProgress], None] | None,
    wall_clock: Callable[[], float],
    max_examples: int,
    limits: ReadLimits | None = None,
) -> IngestReport:
    """Read, check and store every chunk of every (inspected) file, in order, under
    ``limits`` (default: ``ReadLimits()``): a line, field or book over a limit is a
    rejected row of its chunk. Each chunk is stored on a writer thread while the next
    is read (``WriteBehind``); an error of a store is raised here as it was raised."""
    metrics = kind.families(registry)
    report = new_report(kind, max_examples)
    # An in-memory SQLite database is one per thread: its writes stay on this one.
    writer = None
    if not is_memory_sqlite(engine):
        writer = WriteBehind(write_streams(engine) if kind.parallel_writes else 1)

    def chunks(data_file: F) -> Iterator[R]:
        kind.start_source()
        with collect_refused() as refused:
            for chunk in read(data_file):
                chunk.rejections.extend(_rejected(refused))
                yield chunk
            # Refused after the file's last chunk: rejected on their own.
            late = _rejected(refused)
            report.rows += len(late)
            reject_rows(late, report, metrics)

    try:
        with reading_with(limits or ReadLimits()):
            load_files(
                files,
                chunks,
                lambda chunk: store_chunk(
                    engine,
                    kind,
                    chunk,
                    policy=policy,
                    now_ms=int(wall_clock() * 1000),
                    report=report,
                    metrics=metrics,
                    writer=writer,
                ),
                report,
                progress,
                failed=lambda failure: count_file_failure(failure, kind.kind, registry),
            )
        if writer is not None:
            writer.drain()
    except WriteFailed as failed:
        raise failed.error from None  # not a damaged file: the caller sees the store's error
    finally:
        if writer is not None:
            writer.close()
    if kind.analyze is not None and report.written >= kind.analyze[1]:
        # Fresh statistics, so the services' time-ordered batch reads use the (symbol, ts)
        # index at once instead of sorting the whole table until autovacuum analyzes it.
        refresh_statistics(engine, kind.analyze[0])
    return report


class WriteFailed(Exception):
    """A store on the writer thread failed with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class WriteBehind:
    """Writer threads that store chunks while the caller reads and checks the next.

    With one writer, actions run one at a time in the order submitted; with ``writers``
    more, that many at once (the caller's actions must then not depend on each other's
    order). Each one's ``done`` runs on the caller's thread when it is settled, in the
    order submitted, so the report keeps a single owner. At most ``writers`` actions are
    outstanding: ``submit`` settles the oldest first, which bounds memory to that many
    chunks beyond the one being read, and a store's error is raised by the ``submit`` or
    ``drain`` that settles it, as ``WriteFailed`` (a store submitted after the failed one
    may have committed by then: each is a transaction of its own).
    """

    def __init__(self, writers: int = 1) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=writers, thread_name_prefix="mds-ingest-writer"
        )
        self._depth = writers
        self._pending: deque[tuple[Future[Any], Callable[[Any], None] | None]] = deque()

    def submit(self, action: Callable[[], C], done: Callable[[C], None] | None = None) -> None:
        while len(self._pending) >= self._depth:
            self._settle_oldest()
        self._pending.append((self._executor.submit(action), done))

    def drain(self) -> None:
        """Wait for every action submitted and settle it."""
        while self._pending:
            self._settle_oldest()

    def close(self) -> None:
        """Drop the actions not started; wait for those running (a store is one
        transaction: committed or rolled back whole)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def _settle_oldest(self) -> None:
        future, done = self._pending.popleft()
        try:
            result = future.result()
        except Exception as error:
            raise WriteFailed(error) from error
        if done is not None:
            done(result)


def write_chunk(
    engine: Engine,
    kind: IngestKind[R],
    raw: R,
    *,
    policy: QuotePolicy,
    registry: CollectorRegistry | None,
    wall_clock: Callable[[], float],
    max_examples: int,
) -> IngestReport:
    """Check and store one chunk built from a live feed's records (``write_*``)."""
    report = new_report(kind, max_examples)
    kind.start_source()
    store_chunk(
        engine,
        kind,
        raw,
        policy=policy,
        now_ms=int(wall_clock() * 1000),
        report=report,
        metrics=kind.families(registry),
    )
    return report
