"""``SentimentAggregatorService``: smoothed sentiment and a contrarian signal.

It turns the readings of each symbol (stored through ``ingest/sentiment.py``) into
``sentiment_metrics``: the long share, its EMA, its change over the history window, the
window's extremes, and a contrarian signal with hysteresis. Readings of several sources
at the same time are averaged (or pick one with ``source``).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Connection, func, select
from sqlalchemy.engine import Engine

from market_data_services.aggregators.base import PerSymbolService, SettingsMismatchError
from market_data_services.aggregators.sentiment.signal import ContrarianThresholds
from market_data_services.runtime.telemetry import families_for
from market_data_services.runtime.validate import fraction, positive_int, seconds
from market_data_services.storage.arrival import position_of
from market_data_services.storage.engine import begin_write
from market_data_services.storage.schema import SOURCE_LENGTH, sentiment_metrics, sentiment_readings
from market_data_services.storage.upsert import upsert

# The package's name, as before the service had a module of its own: log filters keep working.
logger = logging.getLogger("market_data_services.aggregators.sentiment")


SERVICE_NAME = "SentimentAggregatorService"
#: The ``settings`` key recording what the stored sentiment metrics were computed with.
SETTING_KEY = "sentiment.settings"
DEFAULT_BATCH_SIZE = 5000
#: Default bound of each symbol's history deque (readings in the window kept).
DEFAULT_HISTORY_MAX_READINGS = 10_000

_METRIC_COLUMNS = (
    "symbol",
    "ts",
    "long_share",
    "long_share_ema",
    "change_window",
    "window_min",
    "window_max",
    "signal",
)


# -- metrics families ----------------------------------------------------------------------------


class _ServiceFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed = Counter(
            "mds_sentiment_readings_processed",
            "New sentiment readings taken into the metrics, by symbol.",
            ["symbol"],
            registry=registry,
        )
        self.long_share = Gauge(
            "mds_sentiment_long_share_ratio",
            "Latest share of clients long (0..1).",
            ["symbol"],
            registry=registry,
        )
        self.long_share_ema = Gauge(
            "mds_sentiment_long_share_ema_ratio",
            "Exponential moving average of the long share (0..1).",
            ["symbol"],
            registry=registry,
        )
        self.signal = Gauge(
            "mds_sentiment_signal",
            "Contrarian signal: -1 crowd long, +1 crowd short, 0 neither.",
            ["symbol"],
            registry=registry,
        )
        self.last_reading = Gauge(
            "mds_sentiment_last_reading_timestamp_seconds",
            "Time of the latest reading turned into metrics (unix seconds).",
            ["symbol"],
            registry=registry,
        )


@dataclass(frozen=True)
class _SymbolMetrics:
    processed: Any
    long_share: Any
    long_share_ema: Any
    signal: Any
    last_reading: Any

    @classmethod
    def of(cls, families: _ServiceFamilies, symbol: str) -> _SymbolMetrics:
        return cls(
            families.processed.labels(symbol),
            families.long_share.labels(symbol),
            families.long_share_ema.labels(symbol),
            families.signal.labels(symbol),
            families.last_reading.labels(symbol),
        )


# -- the signal and the history ------------------------------------------------------------------


class _Row(NamedTuple):
    ts: int
    long_share: float
    ema: float
    change: float
    low: float
    high: float
    signal: int


@dataclass
class _History:
    """One symbol's rolling state: the window's readings (bounded), EMA and signal.

    Owned by the thread running iterations. ``lows``/``highs`` are monotonic deques over
    ``window``, so the window's extremes cost O(1) per reading.
    """

    window_ms: int
    max_readings: int
    alpha: float
    thresholds: ContrarianThresholds
    window: deque[tuple[int, float]] = field(default_factory=deque)
    lows: deque[tuple[int, float]] = field(default_factory=deque)
    highs: deque[tuple[int, float]] = field(default_factory=deque)
    ema: float | None = None
    signal: int = 0
    last_ts: int | None = None

    def _admit(self, ts: int, share: float) -> None:
        self.window.append((ts, share))
        while self.lows and self.lows[-1][1] >= share:
            self.lows.pop()
        self.lows.append((ts, share))
        while self.highs and self.highs[-1][1] <= share:
            self.highs.pop()
        self.highs.append((ts, share))
        oldest_allowed = ts - self.window_ms
        window = self.window
        while window[0][0] <= oldest_allowed or len(window) > self.max_readings:
            window.popleft()
        first = window[0][0]
        while self.lows[0][0] < first:
            self.lows.popleft()
        while self.highs[0][0] < first:
            self.highs.popleft()
        self.last_ts = ts

    def push(self, ts: int, share: float) -> _Row:
        self._admit(ts, share)
        self.ema = share if self.ema is None else self.alpha * share + (1 - self.alpha) * self.ema
        self.signal = self.thresholds.next_signal(self.signal, share)
        return _Row(
            ts,
            share,
            self.ema,
            share - self.window[0][1],
            self.lows[0][1],
            self.highs[0][1],
            self.signal,
        )


class SentimentAggregatorService(PerSymbolService[_SymbolMetrics]):
    """Sentiment metrics for every reading time, into ``sentiment_metrics``.

    Per symbol and reading time ``t`` (readings of several sources at ``t`` averaged):
    the long share; its EMA over readings (``ema_alpha``, or ``2 / (ema_span + 1)``);
    ``change_window``, the long share minus the oldest one in ``(t - window, t]``;
    ``window_min``/``window_max`` over that window; and the contrarian signal of
    ``thresholds``. EMA and signal depend on the whole past, so a late reading makes
    every later row of its symbol be recomputed.

    The window lives in a bounded deque per symbol (``history_max_readings``), rebuilt
    from the database after a restart or a late reading, so neither resets the window.

    The settings (window, EMA, thresholds, source) are recorded in the ``settings`` table;
    a service configured differently fails its iterations with ``SettingsMismatchError``
    until it is started with ``rebuild=True``, which recomputes every row.
    """

    SERVICE_NAME = SERVICE_NAME
    source_table = sentiment_readings
    log_event_prefix = "sentiment"
    service_logger = logger
    settings_key = SETTING_KEY
    derived_table = sentiment_metrics
    derived_label = "sentiment metrics"

    def __init__(
        self,
        engine: Engine,
        symbols: Sequence[str] | None = None,
        interval_seconds: float = 30.0,
        *,
        history_window_seconds: float | timedelta = 3600.0,
        thresholds: ContrarianThresholds | None = None,
        ema_span: float = 10.0,
        ema_alpha: float | None = None,
        source: str | None = None,
        history_max_readings: int = DEFAULT_HISTORY_MAX_READINGS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        rebuild: bool = False,
        registry: CollectorRegistry | None = None,
        **kwargs: Any,
    ) -> None:
        self._window_ms = int(seconds(history_window_seconds, "history_window_seconds") * 1000)
        self._thresholds = ContrarianThresholds() if thresholds is None else thresholds
        if ema_alpha is None:
            if (
                isinstance(ema_span, bool)
                or not isinstance(ema_span, int | float)
                or not (math.isfinite(ema_span) and ema_span >= 1)
            ):
                raise ValueError(f"ema_span must be a number of readings >= 1, got {ema_span!r}")
            ema_alpha = 2.0 / (ema_span + 1.0)
        self._alpha = fraction(ema_alpha, "ema_alpha", allow_zero=False)
        if source is not None and (len(source) > SOURCE_LENGTH or not source.isprintable()):
            raise ValueError(f"source must be at most {SOURCE_LENGTH} printable characters")
        self._source = source
        self._max_readings = positive_int(history_max_readings, "history_max_readings")
        self._batch_size = positive_int(batch_size, "batch_size")
        super().__init__(
            engine, symbols, interval_seconds, rebuild=rebuild, registry=registry, **kwargs
        )
        self._families = families_for(registry, _ServiceFamilies)
        # Owned by the thread running iterations (the loop, or run_once/catch_up's caller).
        self._histories: dict[str, _History] = {}

    @property
    def thresholds(self) -> ContrarianThresholds:
        return self._thresholds

    @property
    def ema_alpha(self) -> float:
        return self._alpha

    @property
    def history_window_seconds(self) -> float:
        return self._window_ms / 1000.0

    def history(self, symbol: str) -> list[tuple[int, float]]:
        """The readings ``(ts_ms, long_share)`` in ``symbol``'s window, oldest first.

        Call it from the thread running iterations (or with the loop stopped).
        """
        found = self._histories.get(symbol)
        return [] if found is None else list(found.window)

    def settings_text(self) -> str:
        """What the stored metrics depend on, as recorded in the ``settings`` table."""
        th = self._thresholds
        return (
            f"window_seconds={self._window_ms / 1000:g} ema_alpha={self._alpha!r} "
            f"long_enter={th.long_enter!r} long_exit={th.long_exit!r} "
            f"short_enter={th.short_enter!r} short_exit={th.short_exit!r} "
            f"source={'*' if self._source is None else repr(self._source)} "
            f"history_max_readings={self._max_readings}"
        )

    def _settings_reset(self) -> None:
        self._histories.clear()

    def _symbol_failed(self, symbol: str) -> None:
        # The rolling state may be ahead of what was stored: rebuild it next time.
        self._histories.pop(symbol, None)

    def _new_symbol_metrics(self, symbol: str) -> _SymbolMetrics:
        return _SymbolMetrics.of(self._families, symbol)

    def _readings_filter(self, symbol: str) -> list[Any]:
        conditions = [sentiment_readings.c.symbol == symbol]
        if self._source is not None:
            conditions.append(sentiment_readings.c.source == self._source)
        return conditions

    def _work_on(self, symbol: str, deadline: float | None) -> None:
        table = sentiment_readings
        with self.engine.connect() as connection:
            stored = self._read_progress(connection, symbol)
            arrival_id = stored.get("arrival_id") or 0
            pending = stored.get("pending_ts")
            # Only up to the horizon: on PostgreSQL a row below it can no longer appear.
            position = position_of(connection, table)
            horizon = self._source_horizon(connection)
            first_ts, last_id, count = connection.execute(
                select(func.min(table.c.ts), func.max(position), func.count()).where(
                    *self._readings_filter(symbol), position > arrival_id, position <= horizon
                )
            ).one()
        if last_id is not None:
            arrival_id = int(last_id)
            pending = int(first_ts) if pending is None else min(pending, int(first_ts))
            self._metrics_of(symbol).processed.inc(int(count))
            if pending is not None:
                # Remember the pass before working on it: ids up to arrival_id are covered.
                with begin_write(self.engine) as connection:
                    self._write_progress(
                        connection, symbol, {"arrival_id": arrival_id, "pending_ts": pending}
                    )
        while pending is not None:
            pending = self._batch(symbol, arrival_id, pending)
            if pending is None or self._past(deadline):
                return

    def _history_before(
        self, connection: Connection, symbol: str, arrival_id: int, start: int
    ) -> _History:
        """The rolling state just before ``start``: from memory when it is there and
        current, else rebuilt from the last stored metrics row and the raw readings."""
        found = self._histories.get(symbol)
        if found is not None and found.last_ts is not None and found.last_ts < start:
            return found
        history = _History(self._window_ms, self._max_readings, self._alpha, self._thresholds)
        m = sentiment_metrics
        last = connection.execute(
            select(m.c.ts, m.c.long_share_ema, m.c.signal)
            .where(m.c.symbol == symbol, m.c.ts < start)
            .order_by(m.c.ts.desc())
            .limit(1)
        ).first()
        if last is not None:
            last_ts = int(last[0])
            r = sentiment_readings
            window = connection.execute(
                select(r.c.ts, func.avg(r.c.long_share))
                .where(
                    *self._readings_filter(symbol),
                    position_of(connection, r) <= arrival_id,
                    r.c.ts > last_ts - self._window_ms,
                    r.c.ts <= last_ts,
                )
                .group_by(r.c.ts)
                .order_by(r.c.ts.desc())
                .limit(self._max_readings)
            ).all()
            for ts, share in reversed(window):
                history._admit(int(ts), float(share))
            history.ema = float(last[1])
            history.signal = int(last[2])
            history.last_ts = last_ts
        self._histories[symbol] = history
        return history

    def _batch(self, symbol: str, arrival_id: int, start: int) -> int | None:
        """Compute the readings from ``start`` on (one batch); returns the next start."""
        r = sentiment_readings
        with self.engine.connect() as connection:
            history = self._history_before(connection, symbol, arrival_id, start)
            readings = connection.execute(
                select(r.c.ts, func.avg(r.c.long_share))
                .where(
                    *self._readings_filter(symbol),
                    position_of(connection, r) <= arrival_id,
                    r.c.ts >= start,
                )
                .group_by(r.c.ts)
                .order_by(r.c.ts)
                .limit(self._batch_size)
            ).all()
        rows = [history.push(int(ts), float(share)) for ts, share in readings]
        following = rows[-1].ts + 1 if len(rows) == self._batch_size else None
        with begin_write(self.engine) as connection:
            if rows:
                upsert(
                    connection,
                    sentiment_metrics,
                    [(symbol, *row) for row in rows],
                    columns=_METRIC_COLUMNS,
                )
            self._write_progress(
                connection, symbol, {"arrival_id": arrival_id, "pending_ts": following}
            )
        if following is None and rows:
            last = rows[-1]
            metrics = self._metrics_of(symbol)
            metrics.long_share.set(last.long_share)
            metrics.long_share_ema.set(last.ema)
            metrics.signal.set(last.signal)
            metrics.last_reading.set(last.ts / 1000.0)
        return following


#: Every symbol with rows in ``sentiment_readings``, for backfills over the whole database.
stored_sentiment_symbols = SentimentAggregatorService.stored_symbols


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_HISTORY_MAX_READINGS",
    "SERVICE_NAME",
    "SETTING_KEY",
    "ContrarianThresholds",
    "SentimentAggregatorService",
    "SettingsMismatchError",
    "stored_sentiment_symbols",
]
