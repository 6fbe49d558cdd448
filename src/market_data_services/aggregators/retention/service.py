"""``RetentionService``: a retention per table, as TimescaleDB's ``add_retention_policy``
gives one per hypertable ("drop rows older than this").

Raw rows (ticks, order-book snapshots, sentiment readings) are deleted only when they are
older than their retention **and** already aggregated: at or below the arrival watermark
that the service deriving from them stored for that symbol, and older than any time from
which that service still waits for rows (a pending bucket, a pass in progress). A symbol
no service has read yet keeps all its rows. Derived candles of a timeframe may have a
retention of their own; nothing reads them again but a late tick's roll-up, hence the
minimum of two days for one-minute candles (a late tick rebuilds its day from them).

Deletes go in batches of ``batch_size`` rows, one short transaction each, oldest first;
an iteration stops at ``interval_seconds`` or at ``stop()`` and the next goes on. Rows
deleted are counted in ``mds_retention_rows_deleted_total{table}``; each table's work is
a child span ``RetentionService.table``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Table
from sqlalchemy.engine import Engine

from market_data_services.aggregators.candles.service import KEY_TICK_ID, PENDING_KEY
from market_data_services.aggregators.candles.service import SERVICE_NAME as CANDLES
from market_data_services.aggregators.dom.service import SERVICE_NAME as BOOKS
from market_data_services.aggregators.retention.policies import (
    DEFAULT_BATCH_SIZE,
    MIN_CANDLES_1M_SECONDS,
    RAW_TABLES,
    RETENTION_TABLES,
    check_policies,
)
from market_data_services.aggregators.sentiment.service import SERVICE_NAME as SENTIMENT
from market_data_services.runtime import ThreadedBackgroundService
from market_data_services.runtime.telemetry import child_span, families_for
from market_data_services.runtime.validate import positive_int
from market_data_services.storage.engine import begin_write
from market_data_services.storage.retention import (
    delete_candles_batch,
    delete_raw_batch,
    progress_by_symbol,
)
from market_data_services.storage.schema import dom_snapshots, sentiment_readings, ticks

logger = logging.getLogger(__name__)

SERVICE_NAME = "RetentionService"


@dataclass(frozen=True)
class _RawRule:
    """Which service's progress says a raw table's rows are aggregated."""

    table: Table
    service: str
    #: Rows at or below this arrival position have been read.
    watermark_key: str
    #: Keys holding a time (epoch ms) from which that service still needs rows.
    waiting_keys: tuple[str, ...]


_RAW_RULES = {
    "ticks": _RawRule(ticks, CANDLES, KEY_TICK_ID, tuple(PENDING_KEY.values())),
    "dom_snapshots": _RawRule(dom_snapshots, BOOKS, "arrival_id", ("cursor_ts",)),
    "sentiment_readings": _RawRule(sentiment_readings, SENTIMENT, "arrival_id", ("pending_ts",)),
}
# Each table a retention may be set for has its rule.
assert tuple(_RAW_RULES) == RAW_TABLES, (tuple(_RAW_RULES), RAW_TABLES)


class _Families:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deleted = Counter(
            "mds_retention_rows_deleted",
            "Rows deleted by the retention, by table (candles by timeframe).",
            ["table"],
            registry=registry,
        )


class RetentionService(ThreadedBackgroundService):
    """Deletes rows older than each table's retention (``drop_after_seconds``: table ->
    seconds; a table not named keeps its rows for ever). See the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        drop_after_seconds: Mapping[str, float],
        batch_size: int = DEFAULT_BATCH_SIZE,
        interval_seconds: float = 300.0,
        registry: CollectorRegistry | None = None,
        **kwargs: Any,
    ) -> None:
        self._policies = check_policies(drop_after_seconds)
        self._batch_size = positive_int(batch_size, "batch_size")
        super().__init__(engine, interval_seconds=interval_seconds, registry=registry, **kwargs)
        families = families_for(registry, _Families)
        # Resolved once; one child per table with a policy.
        self._deleted = {name: families.deleted.labels(name) for name in self._policies}

    @property
    def service_name(self) -> str:
        return SERVICE_NAME

    @property
    def policies(self) -> dict[str, float]:
        """Table -> retention in seconds."""
        return dict(self._policies)

    def _process_iteration(self) -> None:
        deadline = self._clock() + self.interval_seconds
        now_ms = int(self._wall_clock() * 1000)
        for name, seconds in self._policies.items():
            if self._past(deadline):
                return
            cutoff = now_ms - int(seconds * 1000)
            with self._table_span(name):
                if name in _RAW_RULES:
                    self._enforce_raw(_RAW_RULES[name], cutoff, deadline)
                else:
                    self._enforce_candles(name.removeprefix("candles_"), cutoff, deadline)

    def _enforce_raw(self, rule: _RawRule, cutoff: int, deadline: float) -> None:
        with self.engine.connect() as connection:
            progress = progress_by_symbol(connection, rule.service)
        for symbol, state in sorted(progress.items()):
            watermark = state.get(rule.watermark_key)
            if not watermark:
                continue  # nothing of this symbol read yet
            waiting = [v for k, v in state.items() if k in rule.waiting_keys and v is not None]
            before = min([cutoff, *waiting])
            name = rule.table.name

            def batch(symbol: str = symbol, before: int = before, up_to: int = watermark) -> int:
                with begin_write(self.engine) as connection:
                    return delete_raw_batch(
                        connection,
                        rule.table,
                        symbol=symbol,
                        before_ms=before,
                        up_to_position=up_to,
                        limit=self._batch_size,
                    )

            if not self._repeat(name, batch, deadline):
                return

    def _enforce_candles(self, timeframe: str, cutoff: int, deadline: float) -> None:
        with self.engine.connect() as connection:
            symbols = sorted(progress_by_symbol(connection, CANDLES))
        for symbol in symbols:

            def batch(symbol: str = symbol) -> int:
                with begin_write(self.engine) as connection:
                    return delete_candles_batch(
                        connection,
                        symbol=symbol,
                        timeframe=timeframe,
                        before_ms=cutoff,
                        limit=self._batch_size,
                    )

            if not self._repeat(f"candles_{timeframe}", batch, deadline):
                return

    def _repeat(self, name: str, batch: Callable[[], int], deadline: float) -> bool:
        """Run ``batch`` until it deletes less than a full batch; False when the time is
        up or stop was asked first."""
        while True:
            if self._past(deadline):
                return False
            deleted = batch()
            if deleted:
                self._deleted[name].inc(deleted)
            if deleted < self._batch_size:
                return True

    def _past(self, deadline: float) -> bool:
        return self.stop_requested() or self._clock() >= deadline

    def _table_span(self, name: str) -> AbstractContextManager[Any]:
        return child_span(
            self._tracing, f"{SERVICE_NAME}.table", {"mds.table": name, "mds.service": SERVICE_NAME}
        )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MIN_CANDLES_1M_SECONDS",
    "RAW_TABLES",
    "RETENTION_TABLES",
    "SERVICE_NAME",
    "RetentionService",
    "check_policies",
]
