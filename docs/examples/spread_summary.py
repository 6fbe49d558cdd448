"""A service from outside the package: per symbol and minute, the mean, lowest and highest
spread (basis points) of the order books the dom service turned into ``dom_metrics``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter

from market_data_services.aggregators.base import PerSymbolService
from market_data_services.app.catalog import ServiceContext, ServiceEntry, catch_up_backfill
from market_data_services.runtime.telemetry import families_for
from market_data_services.storage.engine import begin_write
from market_data_services.storage.schema import dom_metrics
from market_data_services.storage.upsert import upsert

# Our own table, beside the package's schema (whose migrations are the package's).
metadata = sa.MetaData()
spread_summary = sa.Table(
    "spread_summary",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),  # unix ms of the minute's start
    sa.Column("books", sa.Integer, nullable=False),
    sa.Column("mean_bps", sa.Float, nullable=False),
    sa.Column("min_bps", sa.Float, nullable=False),
    sa.Column("max_bps", sa.Float, nullable=False),
)
COLUMNS = ("symbol", "minute", "books", "mean_bps", "min_bps", "max_bps")


class _Families:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.minutes = Counter(
            "mds_spread_summary_minutes_written",
            "Minutes of spread summary written (the newest again while it fills), by symbol.",
            ["symbol"],
            registry=registry,
        )


class SpreadSummaryService(PerSymbolService[Any]):
    SERVICE_NAME = "SpreadSummaryService"
    source_table = dom_metrics
    log_event_prefix = "spread_summary"

    def __init__(self, engine: Any, *args: Any, registry: Any = None, **kwargs: Any) -> None:
        super().__init__(engine, *args, registry=registry, **kwargs)
        self._families = families_for(registry, _Families)

    def _prepare(self) -> None:
        metadata.create_all(self.engine)

    def _new_symbol_metrics(self, symbol: str) -> Any:
        return self._families.minutes.labels(symbol)

    def _work_on(self, symbol: str, deadline: float | None) -> None:
        m = dom_metrics.c
        minute = m.ts - m.ts % 60_000
        with self.engine.connect() as connection:
            start = self._read_progress(connection, symbol).get("minute") or 0
            rows = connection.execute(
                sa.select(
                    minute,
                    sa.func.count(),
                    sa.func.avg(m.spread_bps),
                    sa.func.min(m.spread_bps),
                    sa.func.max(m.spread_bps),
                )
                .where(m.symbol == symbol, m.ts >= start, m.spread_bps.is_not(None))
                .group_by(minute)
                .order_by(minute)
            ).all()
        if not rows:
            return
        with begin_write(self.engine) as connection:
            upsert(connection, spread_summary, [(symbol, *row) for row in rows], columns=COLUMNS)
            # The newest minute may still get books: the next pass starts there again.
            self._write_progress(connection, symbol, {"minute": int(rows[-1][0])})
        self._metrics_of(symbol).inc(len(rows))


def _build(ctx: ServiceContext) -> SpreadSummaryService:
    return SpreadSummaryService(ctx.engine, **ctx.base_kwargs())


ENTRY = ServiceEntry(
    service_name=SpreadSummaryService.SERVICE_NAME,
    factory=_build,
    backfill=catch_up_backfill(
        SpreadSummaryService,
        what="spread summary",
        rows="minutes",
        counter="mds_spread_summary_minutes_written",
    ),
)
