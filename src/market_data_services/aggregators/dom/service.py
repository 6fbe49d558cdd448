"""``DOMAggregatorService``: book metrics for every new order-book snapshot.

It turns each new snapshot into one row of ``dom_metrics``: best bid and ask, spread
(price and basis points), mid, microprice, imbalance over the top level and the top 5
levels, depth within 10 bps of mid per side, and the order-flow imbalance against the
symbol's previous snapshot (Cont, Kukanov and Stoikov). Snapshots come in through
``ingest/dom.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from market_data_services.aggregators.base import PerSymbolService
from market_data_services.ingest.dom import dom_ingest_metrics
from market_data_services.market.book import (
    METRIC_COLUMNS,
    BookBatch,
    Top,
    check_books,
    compute_metrics,
    top_of_book,
)
from market_data_services.market.book import select as select_books
from market_data_services.runtime.telemetry import families_for
from market_data_services.runtime.validate import positive_int
from market_data_services.storage.arrival import position_name, position_of
from market_data_services.storage.bulk import insert_columns, upsert_columns
from market_data_services.storage.engine import begin_write
from market_data_services.storage.reads import fetch_tuples, read_joined_books
from market_data_services.storage.schema import dom_metrics, dom_snapshots
from market_data_services.timeutil import format_ms

# The package's name, as before the service had a module of its own: log filters keep working.
logger = logging.getLogger("market_data_services.aggregators.dom")

SERVICE_NAME = "DOMAggregatorService"
#: Snapshots read, computed and written per transaction by the service.
DEFAULT_BATCH_SIZE = 5000

# -- metrics families ----------------------------------------------------------------------------


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


# -- the service ---------------------------------------------------------------------------------


class _Pass(NamedTuple):
    """A symbol's work in progress, as stored in ``service_progress``.

    Rows with arrival position ``<= arrival_id`` have their metrics (the position is the id
    on SQLite, the inserting transaction on PostgreSQL: ``storage/arrival.py``).
    ``target_id`` (when a pass runs) is the newest position the pass covers, and
    ``cursor_ts`` the time from which its new rows still wait.
    """

    arrival_id: int
    target_id: int | None
    cursor_ts: int | None


class DOMAggregatorService(PerSymbolService[_SymbolMetrics]):
    """Book metrics for every new order-book snapshot, into ``dom_metrics``.

    Each iteration, per symbol: the snapshots that arrived since the last one (by id,
    the arrival order) are read in time order in batches of ``batch_size`` (as arrays:
    ``read_joined_books``), decoded in one ``numpy.frombuffer`` per side, computed with
    array arithmetic, and written together with the progress (``_store_metrics``). A
    snapshot that arrives late (older than ones already done) gets its metrics, and the
    snapshot after it gets its OFI recomputed. An iteration works for about
    ``interval_seconds`` and then yields; the stored progress resumes where it stopped.
    ``catch_up()`` works until done.

    Memory: one batch, i.e. about ``batch_size`` x levels per book x 32 bytes.
    """

    SERVICE_NAME = SERVICE_NAME
    source_table = dom_snapshots
    log_event_prefix = "dom"
    service_logger = logger

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
        super().__init__(engine, symbols, interval_seconds, registry=registry, **kwargs)
        self._families = families_for(registry, _ServiceFamilies)
        self._ingest_families = dom_ingest_metrics(registry)
        # Owned by the thread running iterations (the loop, or run_once/catch_up's caller).
        self._latest_ts: dict[str, int] = {}

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def _new_symbol_metrics(self, symbol: str) -> _SymbolMetrics:
        return _SymbolMetrics.of(self._families, symbol)

    # -- one symbol --------------------------------------------------------------------------

    def _work_on(self, symbol: str, deadline: float | None) -> None:
        with self.engine.connect() as connection:
            stored = self._read_progress(connection, symbol)
            state = _Pass(
                stored.get("arrival_id") or 0, stored.get("target_id"), stored.get("cursor_ts")
            )
            if state.target_id is None or state.cursor_ts is None:
                # Only up to the horizon: on PostgreSQL a row below it can no longer appear.
                position = position_of(connection, dom_snapshots)
                horizon = self._source_horizon(connection)
                first_ts, last_id = connection.execute(
                    select(func.min(dom_snapshots.c.ts), func.max(position)).where(
                        dom_snapshots.c.symbol == symbol,
                        position > state.arrival_id,
                        position <= horizon,
                    )
                ).one()
                if last_id is None:
                    return
                state = _Pass(state.arrival_id, int(last_id), int(first_ts))
        while True:
            state = self._batch(symbol, state)
            if state.target_id is None:
                return
            if self._past(deadline):
                return

    def _batch(self, symbol: str, state: _Pass) -> _Pass:
        """Process one batch of the pass ``state``; returns the state after it.

        Read, compute and write in one write transaction (on SQLite the write lock is
        taken at its start, for the few milliseconds of a batch): a read transaction of
        its own cost a connection checkout and a commit per batch, about a numpy compute
        of the whole data set over a catch-up.
        """
        assert state.target_id is not None and state.cursor_ts is not None
        limit = self._batch_size
        with begin_write(self.engine) as connection:
            position = position_name(connection)
            books = _read_books(connection, symbol, state.cursor_ts, state.target_id, limit)
            before = fetch_tuples(
                connection,
                _BEFORE_SQL.format(position=position),
                (symbol, state.cursor_ts, state.target_id),
            )
            full = len(books) == limit
            dirty_last = full and int(books.ids[-1]) > state.arrival_id
            next_cursor: int | None = None
            if full and dirty_last:
                # The last row is new: it starts the next batch, which reads its successor.
                next_cursor = int(books.stamps[-1])
                books = books.without_last()
            elif full:
                found = fetch_tuples(
                    connection,
                    _NEXT_NEW_SQL.format(position=position),
                    (symbol, int(books.stamps[-1]), state.arrival_id, state.target_id),
                )[0][0]
                next_cursor = None if found is None else int(found)
            done = next_cursor is None
            after = (
                _Pass(state.target_id, None, None)
                if done
                else _Pass(state.arrival_id, state.target_id, next_cursor)
            )
            columns, processed = self._compute(
                symbol, books, _previous_top(before), state.arrival_id
            )
            _store_metrics(connection, symbol, columns)
            self._write_progress(connection, symbol, after._asdict())
        self._publish(symbol, columns, processed)
        return after

    def _compute(
        self, symbol: str, books: _Books, previous: Top | None, arrival_id: int
    ) -> tuple[dict[str, Any], int]:
        """The rows to write (the new books and their successors), and how many new
        valid books they hold; rejected new books are counted and logged."""
        ids, stamps, batch = books.ids, books.stamps, books.batch
        valid, problems = check_books(batch)
        valid &= books.whole
        dirty = ids > arrival_id
        self._count_rejected(symbol, stamps, dirty, books.whole, problems)

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
        return columns, int(good_dirty.sum())

    def _publish(self, symbol: str, columns: dict[str, Any], processed: int) -> None:
        """After the commit: count the books, and show the newest written one's metrics."""
        metrics = self._metrics_of(symbol)
        metrics.processed.inc(processed)
        if not len(columns["ts"]):
            return
        newest = int(columns["ts"][-1])
        if newest >= self._latest_ts.get(symbol, -1):
            self._latest_ts[symbol] = newest
            metrics.spread.set(float(columns["spread"][-1]))
            metrics.spread_bps.set(float(columns["spread_bps"][-1]))
            metrics.microprice.set(float(columns["microprice"][-1]))
            metrics.imbalance_1.set(float(columns["imbalance_1"][-1]))
            metrics.imbalance_5.set(float(columns["imbalance_5"][-1]))
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


class _Books(NamedTuple):
    """A batch of stored snapshots in time order, as arrays."""

    ids: npt.NDArray[np.int64]  # arrival positions
    stamps: npt.NDArray[np.int64]
    batch: BookBatch
    whole: npt.NDArray[np.bool_]  # both sides' blobs are whole levels

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def without_last(self) -> _Books:
        """The batch without its last book (views, no copy)."""
        b = self.batch
        bids_kept = b.bids.shape[0] - int(b.bid_counts[-1])
        asks_kept = b.asks.shape[0] - int(b.ask_counts[-1])
        batch = BookBatch(
            b.bid_counts[:-1], b.bids[:bids_kept], b.ask_counts[:-1], b.asks[:asks_kept]
        )
        return _Books(self.ids[:-1], self.stamps[:-1], batch, self.whole[:-1])


def _read_books(
    connection: Connection, symbol: str, cursor_ts: int, target_id: int, limit: int
) -> _Books:
    """The first ``limit`` snapshots of ``symbol`` from ``cursor_ts`` on, up to position
    ``target_id``, in time order, decoded without a Python object per book."""
    joined = read_joined_books(
        connection, symbol, from_ts=cursor_ts, up_to_position=target_id, limit=limit
    )
    batch, whole = BookBatch.from_joined(
        joined.bids, joined.bid_lengths, joined.asks, joined.ask_lengths
    )
    return _Books(joined.positions, joined.stamps, batch, whole)


# The service's reads, with ``?`` placeholders (see ``fetch_tuples``).
# ``{position}`` is the arrival order's column (``storage/arrival.py``).
_BEFORE_SQL = (
    "SELECT bids, asks FROM dom_snapshots "
    "WHERE symbol = ? AND ts < ? AND {position} <= ? ORDER BY ts DESC LIMIT 8"
)
_NEXT_NEW_SQL = (
    "SELECT MIN(ts) FROM dom_snapshots "
    "WHERE symbol = ? AND ts > ? AND {position} > ? AND {position} <= ?"
)


def _store_metrics(connection: Connection, symbol: str, columns: dict[str, Any]) -> None:
    """Write the rows of ``columns`` (times ascending), overwriting stored ones.

    When no metrics are stored in the batch's time range (a first pass, the usual case)
    the rows are inserted plainly: on PostgreSQL a binary ``COPY`` straight into
    ``dom_metrics``, where the upsert's staging and conflict checks were most of the
    iteration's time. On SQLite the write lock is held from the check on. On PostgreSQL
    two instances working on one symbol at once (no ownership configured) could both find
    the range empty: the second insert then fails on the key, its transaction (metrics and
    progress) rolls back, and the next iteration redoes the batch with an upsert.
    """
    stamps = columns["ts"]
    if not len(stamps):
        return
    stored = connection.execute(
        select(dom_metrics.c.ts)
        .where(
            dom_metrics.c.symbol == symbol,
            dom_metrics.c.ts.between(int(stamps[0]), int(stamps[-1])),
        )
        .limit(1)
    ).first()
    if stored is None:
        insert_columns(connection, dom_metrics, columns)
    else:
        upsert_columns(connection, dom_metrics, columns)


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


#: Every symbol with rows in ``dom_snapshots``, for backfills over the whole database.
stored_dom_symbols = DOMAggregatorService.stored_symbols


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "SERVICE_NAME",
    "DOMAggregatorService",
    "stored_dom_symbols",
]
