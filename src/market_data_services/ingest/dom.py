"""Order books (depth of market) in: validation and storage of snapshots.

``ingest_dom(engine, paths, ...)`` loads order-book files (``jsonl``, ``tardis``,
``bybit``, ``binance`` layouts; see ``layouts/books/``) into ``dom_snapshots``, as
``mds ingest dom`` does; ``write_dom(engine, snapshots)`` stores snapshots from a live
feed. Both validate every book and return an ``IngestReport``: empty and one-sided books,
NaN, zero or negative prices and sizes, unsorted and duplicated levels are rejected with
the reason and their file and line; crossed and locked books are kept and counted
(crossed ones rejected only with ``reject_crossed=True``).

One snapshot per symbol and millisecond: the first one stored is kept, and loading the
same file twice adds nothing.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Collection, Iterable
from datetime import tzinfo
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from market_data_services.ingest.files import (
    BadFileError,
    ImplausibleTimeError,
    ReadLimits,
    reading_with,
)
from market_data_services.ingest.layouts.base import layout_names
from market_data_services.ingest.layouts.books import (
    LAYOUTS,
    BookFile,
    NotABookFileError,
    RawBooks,
    find_book_files,
    inspect_book_file,
    read_books,
)
from market_data_services.ingest.pipeline import (
    DEFAULT_FUTURE_TOLERANCE_SECONDS,
    BoolArray,
    Checks,
    IngestFamilies,
    IngestKind,
    IngestProgress,
    IngestReport,
    MetricNames,
    QuotePolicy,
    Rejection,
    ingest_chunks,
    inspect_files,
    write_chunk,
)
from market_data_services.market.book import (
    BOOK_REASONS,
    BookBatch,
    check_books,
    crossed_and_locked,
    pack_levels,
    top_of_book,
    unpack_levels,
)
from market_data_services.runtime.telemetry import families_for
from market_data_services.storage.locks import DOM_WRITE_LOCK_KEY
from market_data_services.storage.schema import dom_snapshots
from market_data_services.storage.upsert import upsert
from market_data_services.timeutil import format_ms, parse_zone

#: Why a snapshot can be rejected: the ``reason`` label of ``mds_dom_snapshots_rejected_total``.
REJECT_REASONS = (
    "malformed",  # unparseable line or row, bad symbol text
    "delta_before_snapshot",  # a delta stream's update before its first snapshot
    *BOOK_REASONS,
    "timestamp_out_of_range",  # before 1990 (in a file's unit) or 1970, after year 9999
    "future_timestamp",  # later than now + future_tolerance_seconds
    "unknown_symbol",  # not among the symbols being loaded
    "crossed",  # best ask below best bid, only with reject_crossed=True
    "line_too_long",  # a line over ingest.max_line_bytes (not read)
    "field_too_long",  # a CSV field over ingest.max_field_chars
    "too_many_levels",  # a side of a message or rebuilt book over ingest.max_book_levels
)

#: After a load of this many new snapshots, PostgreSQL's statistics are refreshed.
ANALYZE_AFTER_ROWS = 10_000

_SNAPSHOT_COLUMNS = ("symbol", "ts", "bids", "asks")
_SNAPSHOT_KEY = ("symbol", "ts")
_METRICS = MetricNames(
    written=("mds_dom_snapshots_written", "Order-book snapshots stored as new rows."),
    duplicates=(
        "mds_dom_snapshots_duplicate",
        "Valid snapshots skipped because one of that symbol and millisecond was stored.",
    ),
    rejected=(
        "mds_dom_snapshots_rejected",
        "Order-book snapshots rejected (at ingestion or by the service), by reason.",
    ),
    crossed=(
        "mds_dom_books_crossed",
        "Crossed books seen (best ask below best bid); kept unless reject_crossed.",
    ),
    locked=("mds_dom_books_locked", "Locked books seen (best ask equal to best bid); kept."),
)


class BookSnapshot(NamedTuple):
    """One book for ``write_dom``: ``bids``/``asks`` are ``(price, size)`` pairs, best first."""

    symbol: str
    ts_ms: int
    bids: Any
    asks: Any


def _families(registry: CollectorRegistry) -> IngestFamilies:
    return IngestFamilies(registry, _METRICS, REJECT_REASONS)


def dom_ingest_metrics(registry: CollectorRegistry | None = None) -> IngestFamilies:
    """The order-book ingestion counters of ``registry`` (created, at zero, on first use)."""
    return families_for(registry, _families)


class _Books(IngestKind[RawBooks]):
    """Order-book snapshots: ``market.book``'s checks; crossed and locked books; one
    snapshot per symbol and millisecond (the first stored is kept)."""

    unit = "snapshots"
    kind = "dom"
    crossed_noun = "books"
    reasons = REJECT_REASONS
    lock_key = DOM_WRITE_LOCK_KEY
    analyze = (dom_snapshots, ANALYZE_AFTER_ROWS)

    def families(self, registry: CollectorRegistry | None) -> IngestFamilies:
        return dom_ingest_metrics(registry)

    def check(self, raw: RawBooks, checks: Checks, policy: QuotePolicy) -> None:
        _, problems = check_books(raw.batch)
        for problem in problems:
            checks.set(problem.position, problem.reason, problem.message)

    def crossed_and_locked(self, raw: RawBooks, valid: BoolArray) -> tuple[BoolArray, BoolArray]:
        return crossed_and_locked(raw.batch, valid)

    def describe(
        self, raw: RawBooks, name: str, index: int, checks: Checks, policy: QuotePolicy
    ) -> str:
        symbol = raw.symbols[int(raw.symbol_codes[index])]
        ts = int(raw.ts[index])
        when = f"{symbol} at {format_ms(ts)}" if ts >= 0 else f"{symbol} at {ts} ms"
        if name in BOOK_REASONS:
            return f"{when}: {checks.messages[index]}"
        best_bid, _, best_ask, _ = top_of_book(raw.batch)
        return (
            f"{when}: crossed book: best ask {float(best_ask[index])} below best bid "
            f"{float(best_bid[index])} (rejected by reject_crossed)"
        )

    def write(self, connection: Connection, raw: RawBooks, keep: BoolArray) -> int:
        index = np.flatnonzero(keep)
        bid_blobs, ask_blobs = raw.batch.side_blobs(index)
        names = raw.symbols
        symbol_column: Iterable[str] = (
            itertools.repeat(names[0], len(index))
            if len(names) == 1
            else [names[c] for c in raw.symbol_codes[index].tolist()]
        )
        rows = zip(symbol_column, raw.ts[index].tolist(), bid_blobs, ask_blobs, strict=False)
        return upsert(
            connection,
            dom_snapshots,
            rows,
            columns=_SNAPSHOT_COLUMNS,
            key=_SNAPSHOT_KEY,
            update=(),
        )


def inspect_dom_files(
    paths: str | Path | Iterable[str | Path],
    *,
    layout: str | None = None,
    time_unit: str = "auto",
    latest_ms: int | None = None,
    failures: list[BadFileError] | None = None,
) -> list[BookFile]:
    """Find the order-book files under ``paths`` and tell each one's layout and time unit.

    Raises NotABookFileError for the first file that is not order-book data, and
    ImplausibleTimeError for one whose first time is before 1990 or after ``latest_ms``
    (default: an hour from now) in ``time_unit``, so a mistake is reported before
    anything is written.

    With ``failures`` (a list), a file that cannot be inspected (not of the kind, an
    implausible first time, a special or unreadable file) is added to it as a
    ``BadFileError`` instead, and the other files are inspected still.
    """
    inspect_one = functools.partial(inspect_book_file, time_unit=time_unit, latest_ms=latest_ms)
    return inspect_files(
        paths, layout, layout_names("dom"), find_book_files, inspect_one, failures=failures
    )


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
    limits: ReadLimits | None = None,
) -> IngestReport:
    """Load order-book files into ``dom_snapshots`` and report what was kept and rejected.

    ``symbols``, when given, is the set of symbols accepted (books of others are rejected
    as ``unknown_symbol``). ``tz`` is the zone of ISO times without an offset in JSON
    lines. ``layout`` forces one of ``LAYOUTS``; by default each file's first line tells.
    ``time_unit`` is the unit of epoch-number times (``s``, ``ms``, ``us``, ``ns``), or
    ``auto``: told per file by the size of its first one.

    Every file is inspected before anything is written: a file that is not order-book
    data raises NotABookFileError, and one whose first time is before 1990 or in the
    future in its unit raises ImplausibleTimeError; nothing is loaded then. A file
    damaged part way (corrupt compression, bytes that are not UTF-8, a CSV error) is read
    up to the damage, those rows stored, and the damage reported in
    ``report.failed_files`` (a ``BadFileError`` naming file, line and reason); the next
    file goes on.
    """
    zone = parse_zone(tz) if isinstance(tz, str) else tz
    policy = QuotePolicy.of(symbols, reject_crossed, future_tolerance_seconds)
    latest_ms = int(wall_clock() * 1000) + policy.future_tolerance_ms
    with reading_with(limits or ReadLimits()):  # inspection skips the lines reading will
        files = inspect_dom_files(paths, layout=layout, time_unit=time_unit, latest_ms=latest_ms)
    return ingest_chunks(
        engine,
        _Books(),
        files,
        lambda book_file: read_books(book_file, zone=zone),
        policy=policy,
        registry=registry,
        progress=progress,
        wall_clock=wall_clock,
        max_examples=max_examples,
        limits=limits,
    )


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
    return write_chunk(
        engine,
        _Books(),
        _snapshots_to_raw(snapshots, source),
        policy=policy,
        registry=registry,
        wall_clock=wall_clock,
        max_examples=max_examples,
    )


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


__all__ = [
    "DEFAULT_FUTURE_TOLERANCE_SECONDS",
    "DOM_WRITE_LOCK_KEY",
    "LAYOUTS",
    "REJECT_REASONS",
    "BookFile",
    "BookSnapshot",
    "ImplausibleTimeError",
    "NotABookFileError",
    "dom_ingest_metrics",
    "ingest_dom",
    "inspect_dom_files",
    "pack_levels",
    "unpack_levels",
    "write_dom",
]
