"""``AggregatorService``: ticks into OHLC candles for every timeframe.

Each iteration finds the ticks that arrived since the last one (an ``id`` range of the
``ticks`` primary key, from a watermark kept in ``service_progress``), marks the minutes
they fall in as dirty, and rebuilds the dirty buckets that have closed:

- one-minute candles are aggregated in the database from every tick of the minute, so a
  late tick, or a tick that arrives in two batches' seam, simply makes its minute dirty
  again and the whole minute is rebuilt;
- every higher timeframe is rolled up from one-minute candles;
- a bucket is written once it has closed, ``lateness_seconds`` after its end; dirty
  buckets still open are remembered in ``service_progress`` as pending and built when
  they close, so a restart loses nothing and fills every bucket missed while down;
- writes are upserts, so running a pass twice gives the same tables.

The work of a pass grows with the new ticks, not with the stored history.

The same pass backfills: ``backfill()`` treats every minute of the stored history (or of
a time window) as dirty and runs through ``run_once()``, the loop's own guarded path.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from opentelemetry import context as otel_context
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Connection, delete, func, select
from sqlalchemy.engine import Engine

from market_data_services.aggregators.base import SettingsMismatchError
from market_data_services.market.candles import PRICE_BASES, MinuteCandles, roll_up
from market_data_services.market.timeframes import (
    HIGHER_TIMEFRAMES,
    MINUTE_MS,
    TF_RULES,
    TIMEFRAMES,
    Bucketing,
)
from market_data_services.runtime import ThreadedBackgroundService, validate
from market_data_services.runtime.telemetry import families_for
from market_data_services.storage.bulk import upsert_columns_in_range
from market_data_services.storage.engine import begin_write, is_memory_sqlite
from market_data_services.storage.progress import forget_progress, read_settings, write_settings
from market_data_services.storage.reads import (
    MinuteAggregate,
    aggregate_minutes,
    max_tick_id,
    new_tick_minutes,
    read_minute_candles,
    start_minute_aggregate,
    stored_symbols,
    tick_time_range,
)
from market_data_services.storage.schema import candles, service_progress, ticks
from market_data_services.storage.upsert import COPY_THRESHOLD, upsert
from market_data_services.timeutil import DayStart, parse_day_start

# The package's name, as before the service had a module of its own: log filters keep working.
logger = logging.getLogger("market_data_services.aggregators.candles")

IntArray = npt.NDArray[np.int64]

SERVICE_NAME = "AggregatorService"
SETTING_PRICE_BASIS = "candles.price_basis"
SETTING_DAY_START = "candles.day_start"
#: Progress keys: the arrival watermark, and per timeframe the first pending bucket.
KEY_TICK_ID = "tick_id"
PENDING_KEY = {tf: f"pending:{tf}" for tf in TIMEFRAMES}

#: Candle lag buckets (seconds from bucket end to row written): 1 s to an hour.
LAG_BUCKETS: tuple[float, ...] = (
    0.5,
    1.0,
    2.0,
    3.0,
    5.0,
    10.0,
    15.0,
    30.0,
    60.0,
    90.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)

#: How many trading days one backfill step covers (bounded memory and transactions).
BACKFILL_DAYS = 7

_CANDLE_COLUMNS = (
    "symbol",
    "timeframe",
    "ts_open",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "tick_count",
)
_PROGRESS_COLUMNS = ("service", "symbol", "key", "value", "updated_at")
#: From this many candles of one symbol and timeframe, a write goes column-wise
#: (``upsert_columns``: multi-row statements on SQLite, binary COPY on PostgreSQL).
_COLUMN_WISE_FROM = COPY_THRESHOLD


class BackfillProgress(NamedTuple):
    """Handed to ``backfill``'s ``progress`` callback after each step."""

    symbol: str
    steps_done: int
    steps_total: int
    window_start_ms: int
    window_end_ms: int
    candles_written: int


@dataclass
class PassReport:
    """What one pass wrote."""

    symbols: int = 0
    minutes_built: int = 0
    candles: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIMEFRAMES, 0))
    tick_watermark: int = 0

    @property
    def candles_written(self) -> int:
        return sum(self.candles.values())


@dataclass
class _State:
    """Where one symbol got to (a copy of its ``service_progress`` rows)."""

    tick_id: int = 0
    pending: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(TIMEFRAMES))


@dataclass
class _Built:
    """Candles of one symbol from one step, and its new pending buckets."""

    symbol: str
    batches: list[tuple[str, MinuteCandles]]  # (timeframe, candles), none empty
    per_timeframe: dict[str, int]
    bucket_ends: dict[str, IntArray]
    pending: dict[str, int | None]
    minutes_built: int
    newest: dict[str, int]


@dataclass(frozen=True)
class _Step:
    """One backfill step: the minutes of whole trading days ``[start, end)`` of a symbol
    with ticks in ``[lowest, highest)``; step ``number`` of ``total``."""

    symbol: str
    number: int
    total: int
    start: int
    end: int
    lowest: int
    highest: int

    def minutes(self) -> IntArray:
        return np.arange(
            max(self.start, self.lowest), min(self.end, self.highest), MINUTE_MS, dtype=np.int64
        )


_T = TypeVar("_T")
_R = TypeVar("_R")


class _Ahead(Generic[_T, _R]):
    """``start(item)`` of each item in order, up to ``workers`` items ahead on worker
    threads (with none, each when it is asked for); ``next()`` gives the results in order.
    ``close(release)`` stops starting and hands what was started and not taken to
    ``release``. One owner: the thread that calls ``next`` and ``close``."""

    def __init__(self, start: Callable[[_T], _R], items: list[_T], *, workers: int) -> None:
        self._start = start
        self._items = iter(items)
        self._workers = workers
        self._ahead: deque[Future[_R]] = deque()
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="mds-candles") if workers else None
        )

    def next(self) -> _R:
        if self._pool is None:
            return self._start(next(self._items))
        self._fill()
        future = self._ahead.popleft()
        self._fill()  # the workers go on while the caller uses this one
        return future.result()

    def _fill(self) -> None:
        assert self._pool is not None
        while len(self._ahead) < self._workers:
            item = next(self._items, None)
            if item is None:
                return
            self._ahead.append(self._pool.submit(self._start, item))

    def close(self, release: Callable[[_R], None]) -> None:
        if self._pool is None:
            return
        while self._ahead:
            future = self._ahead.popleft()
            if future.cancel():
                continue
            try:
                result = future.result()
            except Exception:
                logger.debug("candles.step_abandoned", exc_info=True)
                continue
            release(result)
        self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class _Backfill:
    start_ms: int | None
    end_ms: int | None
    progress: Callable[[BackfillProgress], None] | None


class _Families:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "mds_candles_written",
            "Candle rows written (inserted or rewritten), by timeframe.",
            ["timeframe"],
            registry=registry,
        )
        self.rewritten = Counter(
            "mds_candles_rewritten",
            "Candles written for buckets that had closed before the previous pass: "
            "late ticks and backfills.",
            ["timeframe"],
            registry=registry,
        )
        self.lag = Histogram(
            "mds_candle_lag_seconds",
            "Time from a bucket's end to its candle being written (timely candles only).",
            ["timeframe"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.freshness = Gauge(
            "mds_data_freshness_seconds",
            "Age of the newest stored tick of a symbol (NaN before one is seen).",
            ["symbol"],
            registry=registry,
        )


def candle_metrics(registry: CollectorRegistry | None = None) -> _Families:
    return families_for(registry, _Families)


def check_price_basis(basis: str) -> str:
    if basis not in PRICE_BASES:
        raise ValueError(f"unknown price basis {basis!r}; valid: {', '.join(PRICE_BASES)}")
    return basis


class AggregatorService(ThreadedBackgroundService):
    """Builds candles for 1m, 5m, 15m, 30m, 1h, 4h and 1d from the ``ticks`` table.

    ``AggregatorService(engine, symbols=["EUR/USD"])`` as in the specification; keyword
    options:

    - ``day_start``: ``"HH:MM ZONE"`` where the daily candle opens (default
      ``"00:00 UTC"``; ``"17:00 America/New_York"`` is the forex convention, DST-correct);
      1h and 4h buckets are counted from it so they nest in the day;
    - ``price_basis``: ``"mid"`` (default), ``"bid"`` or ``"ask"``;
    - ``lateness_seconds``: how long after a bucket's end it is written (default 2 s);
    - ``rebuild``: when the database's candles were built with another basis or day
      start, delete them and rebuild instead of refusing;
    - ``workers``: threads for the database's work (which runs without the GIL): the
      symbols of a live pass built in parallel, and a backfill's steps aggregated ahead
      while this thread rolls up and writes the ones before, in order.

    Basis and day start are recorded in the ``settings`` table; a service configured
    differently fails its iterations with ``SettingsMismatchError`` until rebuilt.
    """

    def __init__(
        self,
        engine: Engine,
        symbols: Sequence[str] | None = None,
        interval_seconds: float | timedelta = 60.0,
        *,
        day_start: str | DayStart = "00:00 UTC",
        price_basis: str = "mid",
        lateness_seconds: float | timedelta = 2.0,
        rebuild: bool = False,
        workers: int = 1,
        registry: CollectorRegistry | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("enable_circuit_breaker", True)
        super().__init__(engine, symbols, interval_seconds, registry=registry, **kwargs)
        self._day_start = parse_day_start(day_start) if isinstance(day_start, str) else day_start
        self._basis = check_price_basis(price_basis)
        self._lateness_ms = int(
            validate.seconds(lateness_seconds, "lateness_seconds", allow_zero=True) * 1000
        )
        self._workers = validate.positive_int(workers, "workers")
        self._bucketing = Bucketing(self._day_start)
        self._metrics = candle_metrics(registry)
        self._written = {tf: self._metrics.written.labels(tf) for tf in TIMEFRAMES}
        self._rewritten = {tf: self._metrics.rewritten.labels(tf) for tf in TIMEFRAMES}
        self._lag = {tf: self._metrics.lag.labels(tf) for tf in TIMEFRAMES}

        # Guarded by _state_lock: written by the thread running the pass, read anywhere.
        self._state_lock = threading.Lock()
        # The specification's name: (symbol, timeframe) -> ts_open of the newest bucket
        # written (UTC epoch ms).
        self._last_processed_ts: dict[tuple[str, str], int] = {}
        self._newest_tick: dict[str, int] = {}  # symbol -> newest tick ts seen (ms)
        self._freshness_tracked: set[str] = set()
        self._last_cutoff: int | None = None
        self._rebuild = bool(rebuild)
        self._backfill: _Backfill | None = None
        self._backfill_error: BaseException | None = None
        self._last_pass = PassReport()

    @property
    def service_name(self) -> str:
        return SERVICE_NAME

    @property
    def day_start(self) -> DayStart:
        return self._day_start

    @property
    def price_basis(self) -> str:
        return self._basis

    def last_processed(self) -> dict[tuple[str, str], int]:
        """(symbol, timeframe) -> start of the newest bucket written (UTC epoch ms)."""
        with self._state_lock:
            return dict(self._last_processed_ts)

    def last_pass(self) -> PassReport:
        with self._state_lock:
            return self._last_pass

    def get_metrics(self) -> dict[str, Any]:
        metrics = super().get_metrics()
        metrics.update(
            price_basis=self._basis,
            day_start=str(self._day_start),
            lateness_seconds=self._lateness_ms / 1000,
        )
        return metrics

    # -- backfill ---------------------------------------------------------------------------------

    def backfill(
        self,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        progress: Callable[[BackfillProgress], None] | None = None,
    ) -> PassReport:
        """Build every closed bucket of the stored history, or every bucket that overlaps
        ``[start_ms, end_ms)`` (the window is widened to whole trading days).

        Runs one iteration through ``run_once()``, the loop's guarded and instrumented
        path, so it counts in the service's metrics and spans. Raises the iteration's
        error if it failed. Without a window, the watermark moves to the newest tick, so
        a service started afterwards goes on from there.
        """
        if start_ms is not None and end_ms is not None and end_ms <= start_ms:
            raise ValueError(f"the window is empty: end {end_ms} <= start {start_ms}")
        with self._state_lock:
            self._backfill = _Backfill(start_ms, end_ms, progress)
            self._backfill_error = None
        try:
            self.run_once()
        finally:
            with self._state_lock:
                self._backfill = None
                error = self._backfill_error
        if error is not None:
            raise error
        return self.last_pass()

    # -- the iteration --------------------------------------------------------------------------

    def _process_iteration(self) -> None:
        with self._state_lock:
            request = self._backfill
        try:
            self._run_pass(request)
        except BaseException as exc:
            if request is not None:
                with self._state_lock:
                    self._backfill_error = exc
            raise

    def _now_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _run_pass(self, request: _Backfill | None) -> None:
        engine: Engine = self.engine
        symbols = self.owned_symbols()  # all of them, unless shared with other instances
        self._ensure_settings(engine)
        now_ms = self._now_ms()
        cutoff = now_ms - self._lateness_ms
        report = PassReport(symbols=len(symbols))
        with engine.connect() as connection:
            states = self._load_states(connection, symbols)
            watermark = max_tick_id(connection)
            if request is None:
                incremental = [s for s in symbols if states[s].tick_id != 0]
                after = min((states[s].tick_id for s in incremental), default=watermark)
                dirty = new_tick_minutes(connection, incremental, after, watermark)
            else:
                incremental, dirty = [], {}
            for symbol in symbols:
                self._track_freshness(connection, symbol)
        report.tick_watermark = watermark

        def work(symbol: str) -> list[_Built]:
            with self.symbol_span(symbol):
                empty = np.empty(0, dtype=np.int64)
                minutes = dirty.get(symbol, empty)
                return [self._build(symbol, minutes, states[symbol].pending, cutoff)]

        # Incremental symbols are written together at the end (one short transaction);
        # a history is written step by step as it is built.
        incremental_results: list[_Built] = []
        continuing = set(incremental)
        histories = [s for s in symbols if s not in continuing]
        built_histories = self._build_histories(histories, watermark, cutoff, request)
        try:
            for symbol, results in itertools.chain(self._map(work, incremental), built_histories):
                if symbol in continuing:
                    incremental_results.extend(results)
                for built in results:
                    report.minutes_built += built.minutes_built
                    for tf, count in built.per_timeframe.items():
                        report.candles[tf] += count
        finally:
            built_histories.close()  # at once: it holds threads and connections
        if incremental_results:
            # Only the symbols built: one a stop left out keeps its watermark, and its
            # new ticks are built by the next pass.
            done = [b.symbol for b in incremental_results]
            self._write(incremental_results, done, watermark, cutoff)
        with self._state_lock:
            self._last_cutoff = cutoff if request is None else self._last_cutoff
            self._last_pass = report

    def _threads(self) -> int:
        """Worker threads for the database's work: none for one worker, and none on an
        in-memory SQLite database, which the pool gives each thread a blank copy of."""
        if self._workers == 1 or is_memory_sqlite(self.engine):
            return 0
        return self._workers

    def _map(
        self, work: Callable[[str], list[_Built]], symbols: list[str]
    ) -> Iterator[tuple[str, list[_Built]]]:
        """``work`` per symbol, in order, until a stop is asked for; on ``workers``
        threads when more than one."""
        parent = otel_context.get_current()

        def in_context(symbol: str) -> list[_Built]:
            token = otel_context.attach(parent)
            try:
                return [] if self.stop_requested() else work(symbol)
            finally:
                otel_context.detach(token)

        started = _Ahead(in_context, symbols, workers=self._threads() if len(symbols) > 1 else 0)
        try:
            for symbol in symbols:
                if self.stop_requested():
                    return
                yield symbol, started.next()
        finally:
            started.close(lambda _: None)

    # -- settings and progress ------------------------------------------------------------------

    def _ensure_settings(self, engine: Engine) -> None:
        wanted = {SETTING_PRICE_BASIS: self._basis, SETTING_DAY_START: str(self._day_start)}
        with engine.connect() as connection:
            stored = read_settings(connection, wanted)
        if stored == wanted:
            return
        with self._state_lock:
            rebuild = self._rebuild
        differing = {k: v for k, v in stored.items() if wanted[k] != v}
        if differing and not rebuild:
            raise SettingsMismatchError(
                "the candles in this database were built with price basis "
                f"{stored.get(SETTING_PRICE_BASIS, '?')!r} and day start "
                f"{stored.get(SETTING_DAY_START, '?')!r}; this service is configured with "
                f"{self._basis!r} and {str(self._day_start)!r}. Configure the same, or "
                f"rebuild the candles (mds backfill --rebuild; rebuild=True)"
            )
        now = self._now_ms()
        with begin_write(engine) as connection:
            if differing:
                connection.execute(delete(candles))
                forget_progress(connection, SERVICE_NAME)
                logger.warning(
                    "candles.rebuild",
                    extra={"service": SERVICE_NAME, "previous": stored, "new": wanted},
                )
            write_settings(connection, wanted, now_ms=now)
        if differing:
            with self._state_lock:
                self._last_processed_ts.clear()
                self._rebuild = False

    def _load_states(self, connection: Connection, symbols: list[str]) -> dict[str, _State]:
        states = {symbol: _State() for symbol in symbols}
        if not symbols:
            return states
        rows = connection.execute(
            select(service_progress.c.symbol, service_progress.c.key, service_progress.c.value)
            .where(service_progress.c.service == SERVICE_NAME)
            .where(service_progress.c.symbol.in_(symbols))
        ).all()
        by_key = {key: tf for tf, key in PENDING_KEY.items()}
        for symbol, key, value in rows:
            state = states[symbol]
            if key == KEY_TICK_ID:
                state.tick_id = int(value or 0)
            elif key in by_key:
                state.pending[by_key[key]] = None if value is None else int(value)
        return states

    def _track_freshness(self, connection: Connection, symbol: str) -> None:
        newest = connection.execute(
            select(func.max(ticks.c.ts)).where(ticks.c.symbol == symbol)
        ).scalar()
        with self._state_lock:
            if newest is not None:
                self._newest_tick[symbol] = int(newest)
            tracked = symbol in self._freshness_tracked
            self._freshness_tracked.add(symbol)
        if not tracked:
            self._metrics.freshness.labels(symbol).set_function(
                functools.partial(self._freshness_seconds, symbol)
            )

    def _freshness_seconds(self, symbol: str) -> float:
        with self._state_lock:
            newest = self._newest_tick.get(symbol)
        if newest is None:
            return math.nan
        return max(0.0, float(self._wall_clock()) - newest / 1000)

    # -- building -------------------------------------------------------------------------------

    def _build_histories(
        self, symbols: list[str], watermark: int, cutoff: int, request: _Backfill | None
    ) -> Generator[tuple[str, list[_Built]], None, None]:
        """Every minute of each symbol's history (or of the window), in steps of whole
        trading days, each written at once; then each symbol's watermark, unless a window
        was asked for.

        With ``workers`` above one, the steps' one-minute aggregates run ahead on that
        many threads, where the database works without the GIL, while this thread reads
        back, rolls up and writes the steps in order.

        ``watermark`` was read before the time ranges are, so every tick up to it falls
        in the range built; ticks arriving meanwhile are left for the next pass.
        """
        steps = self._history_steps(symbols, request)
        started = _Ahead(
            functools.partial(self._start_step, cutoff=cutoff),
            [step for symbol in symbols for step in steps[symbol]],
            workers=self._threads(),
        )
        try:
            for symbol in symbols:
                results: list[_Built] = []
                with self.symbol_span(symbol):
                    for step in steps[symbol]:
                        if self.stop_requested():
                            return
                        connection, aggregate = started.next()
                        try:
                            fresh = aggregate()
                        finally:
                            connection.close()
                        built = self._build(
                            symbol, step.minutes(), dict.fromkeys(TIMEFRAMES), cutoff, fresh=fresh
                        )
                        self._write([built], [], None, cutoff)
                        results.append(built)
                        if request is not None and request.progress is not None:
                            request.progress(
                                BackfillProgress(
                                    symbol=symbol,
                                    steps_done=step.number,
                                    steps_total=step.total,
                                    window_start_ms=step.start,
                                    window_end_ms=step.end,
                                    candles_written=sum(built.per_timeframe.values()),
                                )
                            )
                    if request is None or (request.start_ms is None and request.end_ms is None):
                        pending = _merge_pending([b.pending for b in results])
                        self._write_progress({symbol: pending}, [symbol], watermark)
                yield symbol, results
        finally:
            started.close(lambda item: item[0].close())

    def _history_steps(
        self, symbols: list[str], request: _Backfill | None
    ) -> dict[str, list[_Step]]:
        """The backfill steps of each symbol, in order (none for a symbol without ticks)."""
        steps: dict[str, list[_Step]] = {symbol: [] for symbol in symbols}
        with self.engine.connect() as connection:
            for symbol in symbols:
                span = tick_time_range(connection, symbol)
                if span is None:
                    continue
                first, last = span
                # A window is widened to whole trading days: every bucket that overlaps
                # it is rebuilt from all of its ticks, never from part of them.
                if request is not None and request.start_ms is not None:
                    first = max(
                        first, self._day_start.boundaries(request.start_ms, request.start_ms)[0]
                    )
                if request is not None and request.end_ms is not None:
                    end_ms = request.end_ms
                    last = min(last, self._day_start.boundaries(end_ms - 1, end_ms - 1)[-1] - 1)
                windows = self._windows(first, last) if first <= last else []
                lowest, highest = first - first % MINUTE_MS, last - last % MINUTE_MS + MINUTE_MS
                steps[symbol].extend(
                    _Step(symbol, number, len(windows), start, end, lowest, highest)
                    for number, (start, end) in enumerate(windows, start=1)
                )
        return steps

    def _start_step(self, step: _Step, *, cutoff: int) -> tuple[Connection, MinuteAggregate]:
        """The database's part of a step's one-minute aggregate, on a connection of its
        own (the caller reads the result back and closes it)."""
        minutes = self._one_minute_plan(step.minutes(), dict.fromkeys(TIMEFRAMES), cutoff)[1]
        connection = self.engine.connect()
        try:
            started = start_minute_aggregate(
                connection, step.symbol, minutes, self._basis, ahead=self._threads() > 0
            )
            return connection, started
        except BaseException:
            connection.close()
            raise

    def _windows(self, first: int, last: int) -> list[tuple[int, int]]:
        """Steps of ``BACKFILL_DAYS`` whole trading days covering ``[first, last]``: every
        bucket of every timeframe lies in one step."""
        bounds = self._day_start.boundaries(first, last)
        steps = bounds[::BACKFILL_DAYS]
        if steps[-1] != bounds[-1]:
            steps.append(bounds[-1])
        return list(itertools.pairwise(steps))

    def _build(
        self,
        symbol: str,
        new_minutes: IntArray,
        pending: dict[str, int | None],
        cutoff: int,
        *,
        fresh: MinuteCandles | None = None,
    ) -> _Built:
        """Candles for the closed buckets made dirty by ``new_minutes`` or pending.

        ``fresh``: the one-minute candles of ``new_minutes``, already aggregated, for a
        backfill step: every minute of whole trading days, so every bucket they touch
        lies wholly inside them."""
        bucketing = self._bucketing
        engine: Engine = self.engine
        new_pending: dict[str, int | None] = {}

        # One-minute buckets: explicit dirty minutes and the pending range.
        plan_1m, minutes = self._one_minute_plan(new_minutes, pending, cutoff)
        new_pending["1m"] = plan_1m.pending
        whole_steps = fresh is not None
        if fresh is None:
            with engine.connect() as connection:
                fresh = aggregate_minutes(connection, symbol, minutes, self._basis)
        if whole_steps:
            # A backfill step: a closed minute without ticks adds nothing to any bucket,
            # so only the minutes with ticks, and the open ones (they stay pending), make
            # higher buckets dirty: no work per empty minute of a sparse history.
            still_open = new_minutes[new_minutes + MINUTE_MS > cutoff]
            touched = np.union1d(fresh.ts_open, still_open)
        else:
            # Every minute touched, closed or not, makes its higher buckets dirty.
            touched = np.union1d(new_minutes, minutes)

        plans = {
            tf: _plan(bucketing, tf, bucketing.starts(tf, touched), pending[tf], cutoff)
            for tf in HIGHER_TIMEFRAMES
        }
        for tf, plan in plans.items():
            new_pending[tf] = plan.pending

        # The one-minute candles the higher buckets need: [lo, hi) covers them all.
        lows = [int(p.closed[0]) for p in plans.values() if len(p.closed)]
        lows += [p.range[0] for p in plans.values() if p.range is not None]
        highs = [
            int(bucketing.ends(tf, p.closed[-1:])[0]) for tf, p in plans.items() if len(p.closed)
        ]
        highs += [p.range[1] for p in plans.values() if p.range is not None]
        span = (min(lows), max(highs)) if lows else None

        with engine.connect() as connection:
            stored = MinuteCandles.empty()
            if span is not None:
                lo, hi = span
                rebuilt = int(np.searchsorted(minutes, hi) - np.searchsorted(minutes, lo))
                if rebuilt < (hi - lo) // MINUTE_MS:
                    # Some minutes of these buckets were not rebuilt now: read them.
                    stored = read_minute_candles(connection, symbol, lo, hi)
        batches: list[tuple[str, MinuteCandles]] = []
        per_tf: dict[str, int] = dict.fromkeys(TIMEFRAMES, 0)
        ends: dict[str, IntArray] = {}
        newest: dict[str, int] = {}
        if len(fresh):
            batches.append(("1m", fresh))
        per_tf["1m"] = len(fresh)
        ends["1m"] = fresh.ts_open + MINUTE_MS
        if len(fresh):
            newest["1m"] = int(fresh.ts_open[-1])
        if span is not None:
            lo, hi = span
            inside = (fresh.ts_open >= lo) & (fresh.ts_open < hi)
            base = MinuteCandles.merge(stored, fresh.select(inside))
            for tf, plan in plans.items():
                rolled, starts = _roll_up(bucketing, tf, base)
                keep = plan.selects(starts)
                chosen = rolled.select(keep)
                if len(chosen):
                    batches.append((tf, chosen))
                per_tf[tf] = len(chosen)
                ends[tf] = bucketing.ends(tf, chosen.ts_open)
                if len(chosen):
                    newest[tf] = int(chosen.ts_open[-1])
        return _Built(
            symbol=symbol,
            batches=batches,
            per_timeframe=per_tf,
            bucket_ends=ends,
            pending=new_pending,
            minutes_built=len(minutes),
            newest=newest,
        )

    def _one_minute_plan(
        self, new_minutes: IntArray, pending: dict[str, int | None], cutoff: int
    ) -> tuple[_Plan, IntArray]:
        """The one-minute buckets to build: the closed ones of ``new_minutes`` and of the
        pending range."""
        plan = _plan(self._bucketing, "1m", new_minutes, pending["1m"], cutoff)
        minutes = plan.closed
        if plan.range is not None:
            lo, hi = plan.range
            minutes = np.union1d(minutes, np.arange(lo, hi, MINUTE_MS, dtype=np.int64))
        return plan, minutes

    # -- writing --------------------------------------------------------------------------------

    def _write(
        self,
        results: list[_Built],
        progress_symbols: list[str],
        watermark: int | None,
        cutoff: int,
    ) -> None:
        """Upsert the candles and, for ``progress_symbols``, the new progress, in one
        transaction; then count what was written."""
        pending = {b.symbol: b.pending for b in results}
        engine: Engine = self.engine
        now = self._now_ms()
        with begin_write(engine) as connection:
            _upsert_candles(connection, results)
            if watermark is not None and progress_symbols:
                _upsert_progress(connection, pending, progress_symbols, watermark, now)
        written_at = self._now_ms()
        self._account(results, cutoff, written_at)

    def _write_progress(
        self, pending: dict[str, dict[str, int | None]], symbols: list[str], watermark: int
    ) -> None:
        with begin_write(self.engine) as connection:
            _upsert_progress(connection, pending, symbols, watermark, self._now_ms())

    def _account(self, results: list[_Built], cutoff: int, written_at: int) -> None:
        with self._state_lock:
            previous = self._last_cutoff
            for built in results:
                for tf, start in built.newest.items():
                    key = (built.symbol, tf)
                    if start > self._last_processed_ts.get(key, -1):
                        self._last_processed_ts[key] = start
        for built in results:
            for tf, count in built.per_timeframe.items():
                if not count:
                    continue
                self._written[tf].inc(count)
                ends = built.bucket_ends[tf]
                if previous is None:
                    # First pass: buckets that closed within the last interval are timely.
                    timely = ends > cutoff - int(self.interval_seconds * 1000)
                else:
                    timely = ends > previous
                late = int((~timely).sum())
                if late:
                    self._rewritten[tf].inc(late)
                histogram = self._lag[tf]
                for end in ends[timely].tolist():
                    histogram.observe(max(0.0, (written_at - end) / 1000))


# -- helpers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Which buckets of one timeframe to build, and what stays pending."""

    closed: IntArray  # starts of dirty buckets that have closed
    range: tuple[int, int] | None  # every bucket starting in [a, b) is dirty and closed
    pending: int | None  # first dirty bucket still open

    def selects(self, starts: IntArray) -> npt.NDArray[np.bool_]:
        mask = np.isin(starts, self.closed)
        if self.range is not None:
            mask |= (starts >= self.range[0]) & (starts < self.range[1])
        return mask


def _plan(
    bucketing: Bucketing, timeframe: str, dirty: IntArray, pending: int | None, cutoff: int
) -> _Plan:
    # Already sorted and unique (a backfill step's minutes) is checked in one pass: cheaper
    # than np.unique's hash and sort on a million minutes.
    increasing = len(dirty) < 2 or bool(np.all(dirty[1:] > dirty[:-1]))
    starts = dirty if increasing else np.unique(dirty)
    ends = bucketing.ends(timeframe, starts)
    closed = starts[ends <= cutoff]
    still_open = starts[ends > cutoff]
    current = int(bucketing.starts(timeframe, np.array([cutoff], dtype=np.int64))[0])
    span = None
    candidates = still_open.tolist()
    if pending is not None:
        if pending < current:
            span = (pending, current)
        candidates.append(max(pending, current))
    return _Plan(closed, span, min(candidates) if candidates else None)


def _merge_pending(items: list[dict[str, int | None]]) -> dict[str, int | None]:
    merged: dict[str, int | None] = dict.fromkeys(TIMEFRAMES)
    for item in items:
        for tf, value in item.items():
            if value is not None:
                current = merged[tf]
                merged[tf] = value if current is None else min(current, value)
    return merged


def _roll_up(
    bucketing: Bucketing, timeframe: str, base: MinuteCandles
) -> tuple[MinuteCandles, IntArray]:
    """Candles of ``timeframe`` from one-minute candles sorted by time, and their starts."""
    rolled = roll_up(bucketing, timeframe, base)
    return rolled, rolled.ts_open


def _upsert_candles(connection: Connection, results: Sequence[_Built]) -> None:
    """Upsert every batch of ``results``: a large one (a backfill step's) column-wise,
    with no Python tuple per candle; the small ones of a live pass (a few candles for
    each of many symbols) together as tuples in one statement."""
    rows: list[tuple[Any, ...]] = []
    for built in results:
        for timeframe, batch in built.batches:
            if len(batch) >= _COLUMN_WISE_FROM:
                columns: dict[str, npt.NDArray[Any] | str] = {
                    "symbol": built.symbol,
                    "timeframe": timeframe,
                    "ts_open": batch.ts_open,
                    "open": batch.open,
                    "high": batch.high,
                    "low": batch.low,
                    "close": batch.close,
                    "volume": batch.volume,
                    "tick_count": batch.count,
                }
                # A first build of these buckets (a backfill) goes straight in.
                upsert_columns_in_range(connection, candles, columns, ranged="ts_open")
                continue
            rows.extend((built.symbol, timeframe, *row) for row in batch.to_rows())
    if rows:
        upsert(connection, candles, rows, columns=_CANDLE_COLUMNS)


def _upsert_progress(
    connection: Connection,
    pending: dict[str, dict[str, int | None]],
    symbols: list[str],
    watermark: int,
    now: int,
) -> None:
    rows: list[tuple[Any, ...]] = []
    for symbol in symbols:
        rows.append((SERVICE_NAME, symbol, KEY_TICK_ID, watermark, now))
        state = pending.get(symbol, dict.fromkeys(TIMEFRAMES))
        for tf in TIMEFRAMES:
            rows.append((SERVICE_NAME, symbol, PENDING_KEY[tf], state.get(tf), now))
    upsert(connection, service_progress, rows, columns=_PROGRESS_COLUMNS)


def all_stored_symbols(engine: Engine) -> list[str]:
    """Every symbol with ticks, for backfills over the whole database."""
    with engine.connect() as connection:
        return stored_symbols(connection)


__all__ = [
    "PRICE_BASES",
    "SERVICE_NAME",
    "TF_RULES",
    "TIMEFRAMES",
    "AggregatorService",
    "BackfillProgress",
    "PassReport",
    "SettingsMismatchError",
    "all_stored_symbols",
    "candle_metrics",
    "check_price_basis",
]
