"""Order books (depth of market): ingestion and the ``DOMAggregatorService``.

- ``ingest_dom(engine, paths, ...)`` loads order-book files (``jsonl``, ``tardis``,
  ``bybit``, ``binance`` layouts; see ``_bookfiles``) into ``dom_snapshots``, as
  ``mds ingest dom`` does; ``write_dom(engine, snapshots)`` stores snapshots from a live
  feed. Both validate every book and return an ``IngestReport``: empty and one-sided
  books, NaN, zero or negative prices and sizes, unsorted and duplicated levels are
  rejected with the reason and their file and line; crossed and locked books are kept
  and counted (crossed ones rejected only with ``reject_crossed=True``).
- ``DOMAggregatorService`` turns each new snapshot into one row of ``dom_metrics``:
  best bid and ask, spread (price and basis points), mid, microprice, imbalance over the
  top level and the top 5 levels, depth within 10 bps of mid per side, and the order-flow
  imbalance against the symbol's previous snapshot (Cont, Kukanov and Stoikov).

One snapshot per symbol and millisecond: the first one stored is kept, and loading the
same file twice adds nothing.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from market_data_services.aggregators._bookfiles import (
    LAYOUTS,
    BookFile,
    NotABookFileError,
    RawBooks,
    find_book_files,
    inspect_book_file,
    read_books,
)
from market_data_services.aggregators._files import ImplausibleTimeError
from market_data_services.aggregators._ingest import (
    DEFAULT_FUTURE_TOLERANCE_SECONDS,
    IngestProgress,
    IngestReport,
    QuotePolicy,
    Rejection,
    check_symbol,
    inspect_files,
    is_valid_symbol,
    load_files,
    symbol_rule,
)
from market_data_services.market.book import (
    BOOK_REASONS,
    METRIC_COLUMNS,
    BookBatch,
    Top,
    check_books,
    compute_metrics,
    crossed_and_locked,
    pack_levels,
    top_of_book,
    unpack_levels,
)
from market_data_services.market.book import select as select_books
from market_data_services.runtime import IterationOutcome, ThreadedBackgroundService
from market_data_services.runtime.telemetry import families_for
from market_data_services.runtime.validate import positive_int
from market_data_services.storage.bulk import refresh_statistics, upsert_columns
from market_data_services.storage.engine import begin_write
from market_data_services.storage.locks import DOM_WRITE_LOCK_KEY, hold_advisory_lock
from market_data_services.storage.progress import read_progress, write_progress
from market_data_services.storage.reads import fetch_tuples, stored_symbols_of
from market_data_services.storage.schema import dom_metrics, dom_snapshots
from market_data_services.storage.upsert import upsert
from market_data_services.timeutil import format_ms, parse_zone

# The package's name, as before the service had a module of its own: log filters keep working.
logger = logging.getLogger("market_data_services.aggregators.dom")

#: Why a snapshot can be rejected: the ``reason`` label of ``mds_dom_snapshots_rejected_total``.
REJECT_REASONS = (
    "malformed",  # unparseable line or row, bad symbol text
    "delta_before_snapshot",  # a delta stream's update before its first snapshot
    *BOOK_REASONS,
    "timestamp_out_of_range",  # before 1990 (in a file's unit) or 1970, after year 9999
    "future_timestamp",  # later than now + future_tolerance_seconds
    "unknown_symbol",  # not among the symbols being loaded
    "crossed",  # best ask below best bid, only with reject_crossed=True
)
_CODE = {reason: number for number, reason in enumerate(REJECT_REASONS, start=1)}

#: After a load of this many new snapshots, PostgreSQL's statistics are refreshed.
ANALYZE_AFTER_ROWS = 10_000

SERVICE_NAME = "DOMAggregatorService"
#: Snapshots read, computed and written per transaction by the service.
DEFAULT_BATCH_SIZE = 5000

_SNAPSHOT_COLUMNS = ("symbol", "ts", "bids", "asks")
_SNAPSHOT_KEY = ("symbol", "ts")


class BookSnapshot(NamedTuple):
    """One book for ``write_dom``: ``bids``/``asks`` are ``(price, size)`` pairs, best first."""

    symbol: str
    ts_ms: int
    bids: Any
    asks: Any


# -- metrics families ----------------------------------------------------------------------------


class _IngestFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "mds_dom_snapshots_written",
            "Order-book snapshots stored as new rows.",
            registry=registry,
        )
        self.duplicates = Counter(
            "mds_dom_snapshots_duplicate",
            "Valid snapshots skipped because one of that symbol and millisecond was stored.",
            registry=registry,
        )
        self.rejected = Counter(
            "mds_dom_snapshots_rejected",
            "Order-book snapshots rejected (at ingestion or by the service), by reason.",
            ["reason"],
            registry=registry,
        )
        self.crossed = Counter(
            "mds_dom_books_crossed",
            "Crossed books seen (best ask below best bid); kept unless reject_crossed.",
            registry=registry,
        )
        self.locked = Counter(
            "mds_dom_books_locked",
            "Locked books seen (best ask equal to best bid); kept.",
            registry=registry,
        )
        self.by_reason = {reason: self.rejected.labels(reason) for reason in REJECT_REASONS}


def dom_ingest_metrics(registry: CollectorRegistry | None = None) -> _IngestFamilies:
    """The order-book ingestion counters of ``registry`` (created, at zero, on first use)."""
    return families_for(registry, _IngestFamilies)


class _ServiceFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed = Counter(
            "mds_dom_snapshots_processed",
            "New order-book snapshots turned into book metrics, by symbol.",
            ["symbol"],
            registry=registry,
        )
        self.spread = Gauge(
            "mds_dom_spread",
            "Best ask minus best bid of the latest book.",
            ["symbol"],
            registry=registry,
        )
        self.spread_bps = Gauge(
            "mds_dom_spread_bps",
            "Spread of the latest book in basis points of mid.",
            ["symbol"],
            registry=registry,
        )
        self.microprice = Gauge(
            "mds_dom_microprice",
            "Microprice of the latest book (top sizes weighting the opposite side's price).",
            ["symbol"],
            registry=registry,
        )
        self.imbalance = Gauge(
            "mds_dom_imbalance_ratio",
            "Bid minus ask size over their sum, over the top 1 or 5 levels of the latest book.",
            ["symbol", "levels"],
            registry=registry,
        )
        self.last_snapshot = Gauge(
            "mds_dom_last_snapshot_timestamp_seconds",
            "Time of the latest book turned into metrics (unix seconds).",
            ["symbol"],
            registry=registry,
        )


@dataclass(frozen=True)
class _SymbolMetrics:
    """The labelled children of one symbol, resolved once."""

    processed: Any
    spread: Any
    spread_bps: Any
    microprice: Any
    imbalance_1: Any
    imbalance_5: Any
    last_snapshot: Any

    @classmethod
    def of(cls, families: _ServiceFamilies, symbol: str) -> _SymbolMetrics:
        return cls(
            families.processed.labels(symbol),
            families.spread.labels(symbol),
            families.spread_bps.labels(symbol),
            families.microprice.labels(symbol),
            families.imbalance.labels(symbol, "1"),
            families.imbalance.labels(symbol, "5"),
            families.last_snapshot.labels(symbol),
        )


# -- ingestion -----------------------------------------------------------------------------------


def _check(
    raw: RawBooks, policy: QuotePolicy, now_ms: int
) -> tuple[npt.NDArray[np.bool_], int, int, list[Rejection]]:
    """Which books of ``raw`` to keep, crossed and locked counts, and the rejections."""
    n = len(raw)
    reason = np.zeros(n, dtype=np.int8)
    messages: dict[int, str] = {}
    _, problems = check_books(raw.batch)
    for problem in problems:
        reason[problem.position] = _CODE[problem.reason]
        messages[problem.position] = problem.message

    def mark(mask: npt.NDArray[np.bool_], name: str) -> None:
        reason[(reason == 0) & mask] = _CODE[name]

    mark(raw.ts < 0, "timestamp_out_of_range")
    mark(raw.ts > now_ms + policy.future_tolerance_ms, "future_timestamp")
    per_symbol = np.zeros(max(len(raw.symbols), 1), dtype=np.int8)
    for code, name in enumerate(raw.symbols):
        if not is_valid_symbol(name):
            per_symbol[code] = _CODE["malformed"]
        elif policy.symbols is not None and name not in policy.symbols:
            per_symbol[code] = _CODE["unknown_symbol"]
    if per_symbol.any() and n:
        pending = reason == 0
        reason[pending] = per_symbol[raw.symbol_codes][pending]
    crossed, locked = crossed_and_locked(raw.batch, reason == 0)
    if policy.reject_crossed:
        mark(crossed, "crossed")
    keep = reason == 0
    best_bid, _, best_ask, _ = top_of_book(raw.batch)

    def message(name: str, index: int) -> str:
        symbol = raw.symbols[int(raw.symbol_codes[index])]
        ts = int(raw.ts[index])
        when = f"{symbol} at {format_ms(ts)}" if ts >= 0 else f"{symbol} at {ts} ms"
        if name in BOOK_REASONS:
            return f"{when}: {messages[index]}"
        if name == "timestamp_out_of_range":
            return f"{symbol}: timestamp {ts} ms is before 1970"
        if name == "future_timestamp":
            return (
                f"{when}: more than {policy.future_tolerance_ms // 1000} s after now "
                f"({format_ms(now_ms)}); wrong --tz?"
            )
        if name == "unknown_symbol":
            allowed = ", ".join(sorted(policy.symbols or ()))
            return f"symbol {symbol!r} is not among the symbols being loaded ({allowed})"
        if name == "malformed":
            return f"symbol {symbol!r} is not a valid symbol ({symbol_rule()})"
        return (
            f"{when}: crossed book: best ask {float(best_ask[index])} below best bid "
            f"{float(best_bid[index])} (rejected by reject_crossed)"
        )

    rejections = []
    for index in np.flatnonzero(~keep).tolist():
        name = REJECT_REASONS[int(reason[index]) - 1]
        rejections.append(Rejection(raw.source, int(raw.lines[index]), name, message(name, index)))
    return keep, int(crossed.sum()), int(locked.sum()), rejections


def _store(
    engine: Engine,
    raw: RawBooks,
    *,
    policy: QuotePolicy,
    now_ms: int,
    report: IngestReport,
    metrics: _IngestFamilies,
) -> None:
    report.rows += len(raw) + len(raw.rejections)
    keep, crossed, locked, rejections = _check(raw, policy, now_ms)
    index = np.flatnonzero(keep)
    accepted = int(index.shape[0])
    written = 0
    if accepted:
        bid_blobs, ask_blobs = raw.batch.side_blobs(index)
        codes = raw.symbol_codes[index]
        ts = raw.ts[index]
        names = raw.symbols
        symbol_column: Iterable[str] = (
            itertools.repeat(names[0], accepted)
            if len(names) == 1
            else [names[c] for c in codes.tolist()]
        )
        rows = zip(symbol_column, ts.tolist(), bid_blobs, ask_blobs, strict=False)
        with begin_write(engine) as connection:
            hold_advisory_lock(connection, DOM_WRITE_LOCK_KEY)
            written = upsert(
                connection,
                dom_snapshots,
                rows,
                columns=_SNAPSHOT_COLUMNS,
                key=_SNAPSHOT_KEY,
                update=(),
            )
            if written < 0:  # pragma: no cover - both our drivers report it
                written = accepted
        counts = np.bincount(codes, minlength=len(names))
        for code, name in enumerate(names):
            if counts[code]:
                mine = ts[codes == code]
                report._accept(name, int(counts[code]), int(mine.min()), int(mine.max()))
    report.accepted += accepted
    report.written += written
    report.duplicates += accepted - written
    report.crossed += crossed
    report.locked += locked
    # In file order: parsing and validation find theirs separately.
    for rejection in sorted(itertools.chain(raw.rejections, rejections), key=_line):
        report._reject(rejection)
        metrics.by_reason[rejection.reason].inc()
    metrics.written.inc(written)
    metrics.duplicates.inc(accepted - written)
    metrics.crossed.inc(crossed)
    metrics.locked.inc(locked)


def _line(rejection: Rejection) -> int:
    return rejection.line or 0


def _report(max_examples: int) -> IngestReport:
    return IngestReport(max_examples=max_examples, unit="snapshots", crossed_noun="books")


def inspect_dom_files(
    paths: str | Path | Iterable[str | Path],
    *,
    layout: str | None = None,
    time_unit: str = "auto",
    latest_ms: int | None = None,
) -> list[BookFile]:
    """Find the order-book files under ``paths`` and tell each one's layout and time unit.

    Raises NotABookFileError for the first file that is not order-book data, and
    ImplausibleTimeError for one whose first time is before 1990 or after ``latest_ms``
    (default: an hour from now) in ``time_unit``, so a mistake is reported before
    anything is written.
    """
    inspect_one = functools.partial(inspect_book_file, time_unit=time_unit, latest_ms=latest_ms)
    return inspect_files(paths, layout, LAYOUTS, find_book_files, inspect_one)


def ingest_dom(
    engine: Engine,
    paths: str | Path | Iterable[str | Path],
    *,
    symbols: Collection[str] | None = None,
    tz: str | tzinfo = "UTC",
    layout: str | None = None,
    time_unit: str = "auto",
    reject_crossed: bool = False,
    future_tolerance_seconds: float = DEFAULT_FUTURE_TOLERANCE_SECONDS,
    registry: CollectorRegistry | None = None,
    progress: Callable[[IngestProgress], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
    max_examples: int = 100,
) -> IngestReport:
    """Load order-book files into ``dom_snapshots`` and report what was kept and rejected.

    ``symbols``, when given, is the set of symbols accepted (books of others are rejected
    as ``unknown_symbol``). ``tz`` is the zone of ISO times without an offset in JSON
    lines. ``layout`` forces one of ``LAYOUTS``; by default each file's first line tells.
    ``time_unit`` is the unit of epoch-number times (``s``, ``ms``, ``us``, ``ns``), or
    ``auto``: told per file by the size of its first one.

    Every file is inspected before anything is written: a file that is not order-book
    data raises NotABookFileError, and one whose first time is before 1990 or in the
    future in its unit raises ImplausibleTimeError; nothing is loaded then.
    """
    zone = parse_zone(tz) if isinstance(tz, str) else tz
    policy = QuotePolicy.of(symbols, reject_crossed, future_tolerance_seconds)
    latest_ms = int(wall_clock() * 1000) + policy.future_tolerance_ms
    files = inspect_dom_files(paths, layout=layout, time_unit=time_unit, latest_ms=latest_ms)
    metrics = dom_ingest_metrics(registry)
    report = _report(max_examples)
    load_files(
        files,
        lambda book_file: read_books(book_file, zone=zone),
        lambda chunk: _store(
            engine,
            chunk,
            policy=policy,
            now_ms=int(wall_clock() * 1000),
            report=report,
            metrics=metrics,
        ),
        report,
        progress,
    )
    if report.written >= ANALYZE_AFTER_ROWS:
        # Fresh statistics, so the service's time-ordered batch reads use the (symbol, ts)
        # index at once instead of sorting the whole table until autovacuum analyzes it.
        refresh_statistics(engine, dom_snapshots)
    return report


def write_dom(
    engine: Engine,
    snapshots: Iterable[BookSnapshot | tuple[Any, ...]],
    *,
    symbols: Collection[str] | None = None,
    reject_crossed: bool = False,
    future_tolerance_seconds: float = DEFAULT_FUTURE_TOLERANCE_SECONDS,
    registry: CollectorRegistry | None = None,
    wall_clock: Callable[[], float] = time.time,
    source: str = "write_dom",
    max_examples: int = 100,
) -> IngestReport:
    """Validate and store ``(symbol, ts_ms, bids, asks)`` snapshots in one transaction.

    ``bids`` and ``asks`` are ``(price, size)`` pairs, best first; ``ts_ms`` is UTC epoch
    milliseconds. A snapshot's "line" in the report is its position, from 1.
    """
    policy = QuotePolicy.of(symbols, reject_crossed, future_tolerance_seconds)
    raw = _snapshots_to_raw(snapshots, source)
    report = _report(max_examples)
    _store(
        engine,
        raw,
        policy=policy,
        now_ms=int(wall_clock() * 1000),
        report=report,
        metrics=dom_ingest_metrics(registry),
    )
    return report


def _snapshots_to_raw(snapshots: Iterable[BookSnapshot | tuple[Any, ...]], source: str) -> RawBooks:
    codes: dict[str, int] = {}
    symbol_codes: list[int] = []
    stamps: list[int] = []
    lines: list[int] = []
    bids: list[npt.NDArray[np.float64]] = []
    asks: list[npt.NDArray[np.float64]] = []
    rejections: list[Rejection] = []
    for number, snapshot in enumerate(snapshots, start=1):
        try:
            if len(snapshot) != 4:
                raise ValueError(
                    f"expected (symbol, ts_ms, bids, asks), got {len(snapshot)} fields"
                )
            name, stamp = snapshot[0], snapshot[1]
            if not isinstance(name, str):
                raise ValueError(f"symbol must be text, got {name!r}")
            if isinstance(stamp, bool) or not isinstance(stamp, int | np.integer):
                raise ValueError(f"ts_ms must be an integer (epoch ms), got {stamp!r}")
            sides = [_pairs(snapshot[2], "bids"), _pairs(snapshot[3], "asks")]
        except (TypeError, ValueError) as exc:
            rejections.append(Rejection(source, number, "malformed", f"snapshot {number}: {exc}"))
            continue
        symbol_codes.append(codes.setdefault(name, len(codes)))
        stamps.append(int(stamp))
        lines.append(number)
        bids.append(sides[0])
        asks.append(sides[1])

    def side(levels: list[npt.NDArray[np.float64]]) -> tuple[Any, Any]:
        counts = np.fromiter((x.shape[0] for x in levels), dtype=np.int64, count=len(levels))
        return counts, (np.concatenate(levels) if levels else np.empty((0, 2)))

    bid_counts, bid_levels = side(bids)
    ask_counts, ask_levels = side(asks)
    return RawBooks(
        source=source,
        symbols=list(codes),
        symbol_codes=np.array(symbol_codes, dtype=np.int32),
        ts=np.array(stamps, dtype=np.int64),
        lines=np.array(lines, dtype=np.int64),
        batch=BookBatch(bid_counts, bid_levels, ask_counts, ask_levels),
        rejections=rejections,
    )


def _pairs(levels: Any, name: str) -> npt.NDArray[np.float64]:
    array = np.asarray(levels, dtype=np.float64)
    if array.size == 0:
        return np.empty((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must be (price, size) pairs, got shape {array.shape}")
    return array


# -- the service ---------------------------------------------------------------------------------


class _Pass(NamedTuple):
    """A symbol's work in progress, as stored in ``service_progress``.

    Rows with ``id <= arrival_id`` have their metrics. ``target_id`` (when a pass runs)
    is the newest id the pass covers, and ``cursor_ts`` the time from which its new
    rows still wait.
    """

    arrival_id: int
    target_id: int | None
    cursor_ts: int | None


class DOMAggregatorService(ThreadedBackgroundService):
    """Book metrics for every new order-book snapshot, into ``dom_metrics``.

    Each iteration, per symbol: the snapshots that arrived since the last one (by id,
    the arrival order) are read in time order in batches of ``batch_size``, decoded in
    one ``numpy.frombuffer`` per batch, computed with array arithmetic, and written with
    one multi-row upsert together with the progress. A snapshot that arrives late (older
    than ones already done) gets its metrics, and the snapshot after it gets its OFI
    recomputed. An iteration works for about ``interval_seconds`` and then yields; the
    stored progress resumes where it stopped. ``catch_up()`` works until done.

    Memory: one batch, i.e. about ``batch_size`` x levels per book x 32 bytes.
    """

    def __init__(
        self,
        engine: Engine,
        symbols: Sequence[str] | None = None,
        interval_seconds: float = 5.0,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        registry: CollectorRegistry | None = None,
        **kwargs: Any,
    ) -> None:
        self._batch_size = positive_int(batch_size, "batch_size", minimum=2)
        super().__init__(
            engine,
            symbols,
            interval_seconds,
            enable_circuit_breaker=kwargs.pop("enable_circuit_breaker", True),
            registry=registry,
            **kwargs,
        )
        self._families = families_for(registry, _ServiceFamilies)
        self._ingest_families = dom_ingest_metrics(registry)
        # Owned by the thread running iterations (the loop, or run_once/catch_up's caller).
        self._per_symbol: dict[str, _SymbolMetrics] = {}
        self._latest_ts: dict[str, int] = {}
        # Set and read on the thread calling catch_up (run_once refuses while the loop runs).
        self._catch_up: list[str] | None = None
        self._catch_up_error: Exception | None = None

    @property
    def service_name(self) -> str:
        return SERVICE_NAME

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def _process_iteration(self) -> None:
        request = self._catch_up
        if request is not None:
            try:
                self._for_each_symbol(request, None)
            except Exception as exc:
                self._catch_up_error = exc
                raise
            return
        deadline = self._clock() + self.interval_seconds
        self._for_each_symbol(self.get_symbols(), deadline)

    def catch_up(self, symbols: Sequence[str] | None = None) -> None:
        """Work until every stored snapshot of ``symbols`` (default: the service's) has
        its metrics, however long it takes: the backfill of stored history.

        Runs one iteration through ``run_once()`` (so it is counted, traced and guarded by
        the breaker) on the caller's thread; raises if the loop is running, if the
        iteration failed (its error) or if the breaker is open.
        """
        names = self.get_symbols() if symbols is None else [check_symbol(s) for s in symbols]
        self._catch_up, self._catch_up_error = names, None
        try:
            outcome = self.run_once()
        finally:
            self._catch_up = None
        if self._catch_up_error is not None:
            raise self._catch_up_error
        _raise_if_skipped(self, outcome)

    def _for_each_symbol(self, symbols: Sequence[str], deadline: float | None) -> None:
        failures: list[Exception] = []
        for symbol in symbols:
            if self.stop_requested():
                break
            try:
                with self.symbol_span(symbol):
                    self._work_on(symbol, deadline)
            except Exception as exc:
                failures.append(exc)
                logger.warning(
                    "dom.symbol_failed",
                    extra={
                        "service": self.service_name,
                        "symbol": symbol,
                        "error_type": type(exc).__name__,
                    },
                )
        if failures:
            raise failures[0]

    def _metrics_of(self, symbol: str) -> _SymbolMetrics:
        found = self._per_symbol.get(symbol)
        if found is None:
            found = self._per_symbol[symbol] = _SymbolMetrics.of(self._families, symbol)
        return found

    # -- one symbol --------------------------------------------------------------------------

    def _work_on(self, symbol: str, deadline: float | None) -> None:
        with self.engine.connect() as connection:
            stored = read_progress(connection, SERVICE_NAME, symbol)
            state = _Pass(
                stored.get("arrival_id") or 0, stored.get("target_id"), stored.get("cursor_ts")
            )
            if state.target_id is None or state.cursor_ts is None:
                first_ts, last_id = connection.execute(
                    select(func.min(dom_snapshots.c.ts), func.max(dom_snapshots.c.id)).where(
                        dom_snapshots.c.symbol == symbol, dom_snapshots.c.id > state.arrival_id
                    )
                ).one()
                if last_id is None:
                    return
                state = _Pass(state.arrival_id, int(last_id), int(first_ts))
        while True:
            state = self._batch(symbol, state)
            if state.target_id is None:
                return
            if self.stop_requested() or (deadline is not None and self._clock() >= deadline):
                return

    def _batch(self, symbol: str, state: _Pass) -> _Pass:
        """Process one batch of the pass ``state``; returns the state after it."""
        assert state.target_id is not None and state.cursor_ts is not None
        limit = self._batch_size
        with self.engine.connect() as connection, connection.begin():
            rows = fetch_tuples(
                connection, _ROWS_SQL, (symbol, state.cursor_ts, state.target_id, limit)
            )
            before = fetch_tuples(
                connection, _BEFORE_SQL, (symbol, state.cursor_ts, state.target_id)
            )
            full = len(rows) == limit
            dirty_last = bool(rows) and rows[-1][0] > state.arrival_id
            next_cursor: int | None = None
            if full and dirty_last:
                # The last row is new: it starts the next batch, which reads its successor.
                next_cursor = int(rows[-1][1])
                rows = rows[:-1]
            elif full:
                found = fetch_tuples(
                    connection,
                    _NEXT_NEW_SQL,
                    (symbol, rows[-1][1], state.arrival_id, state.target_id),
                )[0][0]
                next_cursor = None if found is None else int(found)
        done = next_cursor is None
        after = (
            _Pass(state.target_id, None, None)
            if done
            else _Pass(state.arrival_id, state.target_id, next_cursor)
        )
        self._compute_and_write(symbol, rows, _previous_top(before), state.arrival_id, after)
        return after

    def _compute_and_write(
        self,
        symbol: str,
        rows: Sequence[Any],
        previous: Top | None,
        arrival_id: int,
        after: _Pass,
    ) -> None:
        if rows:
            id_column, ts_column, bid_blobs, ask_blobs = zip(*rows, strict=True)
        else:
            id_column, ts_column, bid_blobs, ask_blobs = (), (), (), ()
        ids = np.array(id_column, dtype=np.int64)
        stamps = np.array(ts_column, dtype=np.int64)
        batch, whole = BookBatch.from_blobs(list(bid_blobs), list(ask_blobs))
        valid, problems = check_books(batch)
        valid &= whole
        dirty = ids > arrival_id
        self._count_rejected(symbol, stamps, dirty, whole, problems)

        good = select_books(batch, valid)
        good_ts = stamps[valid]
        good_dirty = dirty[valid]
        values = compute_metrics(good, previous)
        # Write the new books and each one's successor (its OFI has a new predecessor).
        write = good_dirty.copy()
        write[1:] |= good_dirty[:-1]
        index = np.flatnonzero(write)
        columns: dict[str, Any] = {"symbol": symbol, "ts": good_ts[index]}
        columns.update((name, values[name][index]) for name in METRIC_COLUMNS)
        now_ms = int(self._wall_clock() * 1000)
        with begin_write(self.engine) as connection:
            upsert_columns(connection, dom_metrics, columns)
            write_progress(connection, SERVICE_NAME, symbol, after._asdict(), now_ms=now_ms)
        metrics = self._metrics_of(symbol)
        metrics.processed.inc(int(good_dirty.sum()))
        if len(index):
            last = int(index[-1])
            newest = int(good_ts[last])
            if newest >= self._latest_ts.get(symbol, -1):
                self._latest_ts[symbol] = newest
                metrics.spread.set(float(values["spread"][last]))
                metrics.spread_bps.set(float(values["spread_bps"][last]))
                metrics.microprice.set(float(values["microprice"][last]))
                metrics.imbalance_1.set(float(values["imbalance_1"][last]))
                metrics.imbalance_5.set(float(values["imbalance_5"][last]))
                metrics.last_snapshot.set(newest / 1000.0)

    def _count_rejected(
        self,
        symbol: str,
        stamps: npt.NDArray[np.int64],
        dirty: npt.NDArray[np.bool_],
        whole: npt.NDArray[np.bool_],
        problems: list[Any],
    ) -> None:
        """Count and log the new stored books that are not valid (written by other tools)."""
        by_position = {p.position: p for p in problems}
        for position in np.flatnonzero(dirty & ~whole).tolist():
            by_position[position] = None
        for position, problem in sorted(by_position.items()):
            if not dirty[position]:
                continue
            reason = "malformed" if problem is None else problem.reason
            detail = "a side is not whole float64 pairs" if problem is None else problem.message
            self._ingest_families.by_reason[reason].inc()
            logger.warning(
                "dom.snapshot_rejected",
                extra={
                    "service": SERVICE_NAME,
                    "symbol": symbol,
                    "ts": format_ms(int(stamps[position])),
                    "reason": reason,
                    "detail": detail,
                },
            )


# The service's reads, with ``?`` placeholders (see ``fetch_tuples``). Rows of a pass are read in
# time order through the (symbol, ts) index; ``id <= target`` keeps rows that arrive
# during the pass for the next one.
_ROWS_SQL = (
    "SELECT id, ts, bids, asks FROM dom_snapshots "
    "WHERE symbol = ? AND ts >= ? AND id <= ? ORDER BY ts LIMIT ?"
)
_BEFORE_SQL = (
    "SELECT bids, asks FROM dom_snapshots "
    "WHERE symbol = ? AND ts < ? AND id <= ? ORDER BY ts DESC LIMIT 8"
)
_NEXT_NEW_SQL = (
    "SELECT MIN(ts) FROM dom_snapshots WHERE symbol = ? AND ts > ? AND id > ? AND id <= ?"
)


def _raise_if_skipped(service: ThreadedBackgroundService, outcome: IterationOutcome) -> None:
    """A catch-up the open breaker skipped did nothing: say so instead of returning."""
    if outcome is IterationOutcome.SKIPPED:
        raise RuntimeError(
            f"{service.service_name}: the circuit breaker is open, nothing was done; "
            f"reset_circuit_breaker() to try now"
        )


def _previous_top(rows: Sequence[Any]) -> Top | None:
    """The best levels of the newest valid book among ``rows`` (newest first)."""
    if not rows:
        return None
    batch, whole = BookBatch.from_blobs([r[0] for r in rows], [r[1] for r in rows])
    valid, _ = check_books(batch)
    valid &= whole
    good = np.flatnonzero(valid)
    if not len(good):
        return None
    b, qb, a, qa = top_of_book(batch)
    first = int(good[0])
    return Top(float(b[first]), float(qb[first]), float(a[first]), float(qa[first]))


def stored_dom_symbols(engine: Engine) -> list[str]:
    """Every symbol with rows in ``dom_snapshots``, for backfills over the whole database."""
    with engine.connect() as connection:
        return stored_symbols_of(connection, dom_snapshots)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DOM_WRITE_LOCK_KEY",
    "LAYOUTS",
    "REJECT_REASONS",
    "SERVICE_NAME",
    "BookFile",
    "BookSnapshot",
    "DOMAggregatorService",
    "ImplausibleTimeError",
    "NotABookFileError",
    "dom_ingest_metrics",
    "ingest_dom",
    "inspect_dom_files",
    "pack_levels",
    "stored_dom_symbols",
    "unpack_levels",
    "write_dom",
]
