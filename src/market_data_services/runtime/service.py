"""``ThreadedBackgroundService``: the one loop every service runs on.

A subclass names itself (``service_name``) and does one unit of work
(``_process_iteration``); the base class runs that work on a daemon thread at a fixed
rate, guards it with a circuit breaker, counts, times and traces every iteration, and
keeps the numbers ``get_metrics()`` and the health endpoint report.
"""

from __future__ import annotations

import enum
import itertools
import logging
import random as _random
import threading
import time
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opentelemetry import trace
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Exemplar

from market_data_services.runtime import validate
from market_data_services.runtime.breaker import CircuitBreaker, Permit
from market_data_services.runtime.ownership import OwnershipState, OwnershipStats, SymbolOwnership
from market_data_services.runtime.symbols import (
    DEFAULT_SYMBOL_TTL_SECONDS,
    SymbolProvider,
    SymbolSource,
)
from market_data_services.runtime.telemetry import (
    ITERATION_BUCKETS,
    IterationStats,
    ServiceTelemetry,
    Tracing,
    child_span,
    end_span,
    exemplar_for,
    start_span,
)
from market_data_services.timeutil import utc_iso

logger = logging.getLogger(__name__)

#: How many errors ``get_metrics()["recent_errors"]`` keeps (the specification's 10).
RECENT_ERRORS = 10

#: How many iteration outcomes ``recent_outcomes()`` keeps, for windowed error rates.
RECENT_OUTCOMES = 1000


class IterationOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # the circuit breaker was open


@dataclass(frozen=True, slots=True)
class FailureCondition:
    """A known cause of failing iterations that only an operator can remove.

    A service's ``failure_classifier`` returns one for such an exception (the app's
    recognises a missing or old database schema); the loop then logs the condition once
    when it starts and once when it ends, instead of a traceback per iteration.
    """

    name: str  # snake_case, from a fixed set: a log field (``schema_not_current``)
    hint: str  # what the operator should do, in one sentence


#: Names the known condition an iteration's exception shows, or None for any other error.
FailureClassifier = Callable[[Exception], FailureCondition | None]


class ThreadedBackgroundService(ABC):
    """Base class for background services: lifecycle, breaker, metrics and traces.

    Subclass it and implement ``service_name`` and ``_process_iteration``::

        class MyService(ThreadedBackgroundService):
            @property
            def service_name(self) -> str:
                return "MyService"

            def _process_iteration(self) -> None:
                for symbol in self.get_symbols():
                    with self.symbol_span(symbol):
                        ...

    The constructor does no I/O and starts nothing; ``start()`` does.
    """

    def __init__(
        self,
        engine: Any = None,
        symbols: Sequence[str] | None = None,
        interval_seconds: float | timedelta = 60.0,
        enable_circuit_breaker: bool = True,
        *,
        circuit_breaker: CircuitBreaker | None = None,
        symbol_provider: SymbolProvider | None = None,
        symbol_cache_ttl_seconds: float = DEFAULT_SYMBOL_TTL_SECONDS,
        first_start_jitter_seconds: float | timedelta = 0.0,
        stuck_after_seconds: float | timedelta | None = None,
        failure_classifier: FailureClassifier | None = None,
        ownership: SymbolOwnership | None = None,
        registry: CollectorRegistry | None = None,
        tracer: trace.Tracer | None = None,
        clock: Any = time.monotonic,
        wall_clock: Any = time.time,
        random: Any = _random.random,
    ) -> None:
        name = validate.label_value(self.service_name, "service_name")
        self._name = name
        self._span_name = f"{name}.iteration"
        self._interval = validate.seconds(interval_seconds, "interval_seconds")
        self._jitter = validate.seconds(
            first_start_jitter_seconds, "first_start_jitter_seconds", allow_zero=True
        )
        self._stuck_after = (
            3.0 * self._interval
            if stuck_after_seconds is None
            else validate.seconds(stuck_after_seconds, "stuck_after_seconds")
        )
        self.engine = engine
        self._symbols = SymbolSource(
            symbols, provider=symbol_provider, ttl_seconds=symbol_cache_ttl_seconds, clock=clock
        )
        self._clock = clock
        self._wall_clock = wall_clock
        self._random = random
        if circuit_breaker is None and enable_circuit_breaker:
            circuit_breaker = CircuitBreaker(name=name, clock=clock, wall_clock=wall_clock)
        # The specification's attribute name; ``circuit_breaker`` is the public one.
        self._circuit_breaker = circuit_breaker

        # Lifecycle: guarded by _lifecycle_lock.
        self._lifecycle_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()

        # Written only by the thread running an iteration; read anywhere (one reference).
        self._iteration_started: float | None = None
        self._classify = failure_classifier
        # The known condition the latest iterations failed with (None: not in one), and
        # how many failed with it; written only by the thread running iterations.
        self._condition: FailureCondition | None = None
        self._condition_failures = 0

        # The loop's numbers, for get_metrics() and the scrape alike (own lock inside).
        self._stats = IterationStats(RECENT_ERRORS)
        # (unix time, failed) of the latest iterations; guarded by self._stats.lock.
        self._outcomes: deque[tuple[float, bool]] = deque(maxlen=RECENT_OUTCOMES)
        self._iteration_numbers = itertools.count(1)  # next() is atomic under the GIL

        # Claimed and closed by the thread running iterations; None: owns every symbol.
        self._ownership = ownership
        self._ownership_stats = OwnershipStats()

        self._tracing = Tracing(tracer)
        self._telemetry = ServiceTelemetry(
            name,
            stats=self._stats,
            registry=registry,
            interval_seconds=self._interval,
            breaker=circuit_breaker,
            is_running=self.is_running,
            in_progress_seconds=self.current_iteration_seconds,
            is_stuck=self.is_stuck,
            ownership=self._ownership_stats,
            owned_count=self._owned_count,
        )

    # -- what a subclass provides ----------------------------------------------------------

    @property
    @abstractmethod
    def service_name(self) -> str:
        """The service's name: log field, metric label and span name prefix."""

    @abstractmethod
    def _process_iteration(self) -> None:
        """Do one unit of work. Raise to report failure; the loop goes on."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop on a daemon thread; a second call while it runs does nothing."""
        with self._lifecycle_lock:
            thread = self._thread
            if thread is not None and thread.is_alive():
                if not self._stop_event.is_set():
                    logger.debug("service.already_running", extra={"service": self._name})
                    return
                raise RuntimeError(
                    f"{self._name}: the previous loop is still finishing an iteration "
                    f"after stop(); call stop() again with a longer timeout before start()"
                )
            stop = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(stop,), name=f"mds-{self._name}", daemon=True
            )
            self._stop_event, self._thread = stop, thread
            thread.start()
        logger.info(
            "service.started",
            extra={
                "service": self._name,
                "interval_seconds": self._interval,
                "symbols": "<config>" if not self._symbols.configured else self._symbols.get(),
                "circuit_breaker": self._circuit_breaker is not None,
            },
        )

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the loop to end, wake it if it sleeps, wait up to ``timeout`` seconds.

        Returns whether the thread ended. An iteration in progress is allowed to finish;
        Python cannot interrupt it, so a stuck one makes this return False on time.
        """
        with self._lifecycle_lock:
            self._stop_event.set()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            if thread is None:
                self._close_ownership()  # claimed by run_once() only, on the caller's thread
            return thread is None
        thread.join(max(0.0, timeout))
        stopped = not thread.is_alive()
        if stopped:
            logger.info("service.stopped", extra={"service": self._name})
        else:
            logger.warning(
                "service.stop_timed_out", extra={"service": self._name, "timeout": timeout}
            )
        return stopped

    def is_running(self) -> bool:
        """Whether the loop thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def run_once(self) -> IterationOutcome:
        """Run one iteration now, on this thread, through the same guarded path as the loop."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            raise RuntimeError(
                f"{self._name}: run_once() while the loop runs would race it; stop() first"
            )
        return self._iterate()

    # -- the specification's accessors ---------------------------------------------------------

    @property
    def interval_seconds(self) -> float:
        return self._interval

    @property
    def circuit_breaker(self) -> CircuitBreaker | None:
        return self._circuit_breaker

    def get_symbols(self) -> list[str]:
        """The constructor's symbols, or configuration's (cached for 300 s by default)."""
        return self._symbols.get()

    def owned_symbols(self) -> list[str]:
        """The symbols this instance works: all of ``get_symbols()``, or, when they are
        shared with other instances (``ownership``), this instance's share as of the
        latest iteration's claim."""
        if self._ownership is None:
            return self.get_symbols()
        return list(self._ownership_stats.state.owned)

    def ownership_state(self) -> OwnershipState:
        """The latest claim's result (one owning all, when the symbols are not shared)."""
        if self._ownership is None:
            return OwnershipState(owned=tuple(self._safe_symbols()))
        with self._ownership_stats.lock:
            return self._ownership_stats.state

    def reset_circuit_breaker(self) -> None:
        """Close the breaker (an operator's action); does nothing without one."""
        if self._circuit_breaker is not None:
            self._circuit_breaker.reset()
            logger.info("service.circuit_breaker_reset", extra={"service": self._name})

    def _safe_symbols(self) -> list[str]:
        try:
            return self.get_symbols()
        except Exception as exc:
            logger.debug("service.symbols_unavailable", extra={"service": self._name, "err": exc})
            return []

    def _owned_count(self) -> int:
        return len(self.ownership_state().owned)

    def get_metrics(self) -> dict[str, Any]:
        """The specification's metrics dict, plus skipped/overrun counts and the heartbeat."""
        breaker = self._circuit_breaker
        symbols = self._safe_symbols()
        ownership = self.ownership_state()
        in_progress = self.current_iteration_seconds()
        condition = self._condition
        stats = self._stats
        with stats.lock:
            counts = {
                "iteration_count": stats.iterations,
                "error_count": stats.errors,
                "last_error_time": stats.last_error_time,
                "recent_errors": list(stats.recent_errors),
                "skipped_count": stats.skipped,
                "overrun_count": stats.overruns,
                "last_success_time": stats.last_success_time,
            }
        return {
            "service_name": self._name,
            "is_running": self.is_running(),
            "iteration_count": counts["iteration_count"],
            "error_count": counts["error_count"],
            "last_error_time": counts["last_error_time"],
            "circuit_breaker_state": breaker.state.value if breaker else "closed",
            "recent_errors": counts["recent_errors"],
            "interval_seconds": self._interval,
            "symbols": symbols,
            "owned_symbols": list(ownership.owned),
            "ownership": {
                "shared": ownership.shared,
                "instances": ownership.instances,
                "unowned_symbols": list(ownership.unowned),
            },
            "circuit_breaker_enabled": breaker is not None,
            "skipped_count": counts["skipped_count"],
            "overrun_count": counts["overrun_count"],
            "last_success_time": counts["last_success_time"],
            "current_iteration_seconds": in_progress,
            "stuck": in_progress > self._stuck_after,
            "stuck_after_seconds": self._stuck_after,
            "condition": None
            if condition is None
            else {"name": condition.name, "hint": condition.hint},
        }

    def recent_outcomes(self) -> list[tuple[float, bool]]:
        """``(unix time, failed)`` of the latest iterations, oldest first (skips excluded).

        The health endpoint computes its error rate over a recent window from these, so a
        service that recovered is not judged by failures long past.
        """
        with self._stats.lock:
            return list(self._outcomes)

    # -- heartbeat -----------------------------------------------------------------------------

    def current_iteration_seconds(self) -> float:
        """How long the iteration in progress has run; 0 between iterations."""
        started = self._iteration_started
        return 0.0 if started is None else max(0.0, self._clock() - started)

    def is_stuck(self) -> bool:
        """Whether the current iteration has run past ``stuck_after_seconds``."""
        return self.current_iteration_seconds() > self._stuck_after

    # -- for subclasses ------------------------------------------------------------------------

    def symbol_span(self, symbol: str) -> AbstractContextManager[Any]:
        """A child span for the work on one symbol (free when tracing is off)."""
        return child_span(
            self._tracing,
            f"{self._name}.symbol",
            {"symbol": symbol, "mds.service": self._name},
        )

    def stop_requested(self) -> bool:
        """Whether stop() was called; long iterations may check it to end early."""
        return self._stop_event.is_set()

    def _symbol_released(self, symbol: str) -> None:  # noqa: B027 (a hook, empty by default)
        """Called when another instance may now work ``symbol``: drop what is kept of it
        in memory, since that instance will move its stored progress on."""

    # -- sharing the symbols -------------------------------------------------------------------

    def _claim_symbols(self) -> None:
        """Claim this instance's share before the iteration's work (thread running it)."""
        ownership = self._ownership
        if ownership is None:
            return
        before = set(self._ownership_stats.state.owned)
        symbols = self.get_symbols()
        try:
            claim = ownership.claim(symbols)
        except Exception:
            self._let_go(before)  # nothing is owned that is not known to be
            raise
        state = self._ownership_stats.record(claim, symbols, self._wall_clock())
        for symbol in before.difference(state.owned):
            self._symbol_released(symbol)
        if claim.acquired or claim.released:
            logger.info(
                "service.ownership_changed",
                extra={
                    "service": self._name,
                    "acquired": list(claim.acquired),
                    "released": list(claim.released),
                    "owned": len(state.owned),
                    "instances": state.instances,
                },
            )

    def _let_go(self, owned: set[str]) -> None:
        self._ownership_stats.lost()
        for symbol in owned:
            self._symbol_released(symbol)

    def _close_ownership(self) -> None:
        """Release every symbol (the loop ended): other instances take them at once."""
        ownership = self._ownership
        if ownership is None:
            return
        before = set(self._ownership_stats.state.owned)
        try:
            ownership.close()
        finally:
            self._let_go(before)

    # -- the loop ----------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        try:
            self._loop(stop)
        finally:
            self._close_ownership()

    def _loop(self, stop: threading.Event) -> None:
        if self._jitter and stop.wait(self._random() * self._jitter):
            return
        clock = self._clock
        interval = self._interval
        next_start = clock()
        while not stop.is_set():
            self._iterate()
            next_start += interval
            delay = next_start - clock()
            if delay <= 0:
                # Overran: start the next one at once and measure the grid from there, so a
                # slow iteration never causes a burst of catch-up runs.
                with self._stats.lock:
                    self._stats.overruns += 1
                next_start = clock()
            elif stop.wait(delay):
                break

    def _iterate(self) -> IterationOutcome:
        breaker = self._circuit_breaker
        stats = self._stats
        permit: Permit | None = None
        if breaker is not None:
            permit = breaker.acquire()
            if permit is None:
                with stats.lock:
                    stats.skipped += 1
                logger.debug("service.iteration_skipped", extra={"service": self._name})
                return IterationOutcome.SKIPPED

        number = next(self._iteration_numbers)
        tracer = self._tracing.tracer()
        clock = self._clock
        span = token = None
        error: Exception | None = None
        started = self._iteration_started = clock()
        try:
            if tracer is not None:
                span, token = start_span(
                    tracer,
                    self._span_name,
                    {
                        "mds.service": self._name,
                        "mds.iteration": number,
                        "mds.symbol_count": len(self.get_symbols()),
                    },
                )
            self._claim_symbols()
            self._process_iteration()
        except Exception as exc:
            error = exc
        except BaseException:
            if breaker is not None:
                breaker.record_ignored(permit)
            raise
        finally:
            duration = clock() - started
            self._iteration_started = None

        # Logged while the span is still current, so the failure's log line carries the
        # trace_id and span_id of the iteration it belongs to.
        self._log_outcome(number, error)
        exemplar = None
        if span is not None:
            exemplar = exemplar_for(span)
            end_span(span, token, error)
        if breaker is not None:
            if error is None:
                breaker.record_success(permit)
            else:
                breaker.record_failure(error, permit)
        now = self._wall_clock()
        with stats.lock:
            stats.iterations += 1
            self._outcomes.append((now, error is not None))
            stats.duration_sum += duration
            bucket = bisect_left(ITERATION_BUCKETS, duration)
            stats.bucket_counts[bucket] += 1
            if exemplar is not None:
                stats.exemplars[bucket] = Exemplar(exemplar, duration, now)
            if error is None:
                stats.last_success_time = now
            else:
                stats.errors += 1
                stats.last_error_time = now
                stats.recent_errors.append(
                    {"timestamp": utc_iso(now), "error": str(error), "type": type(error).__name__}
                )
        return IterationOutcome.SUCCEEDED if error is None else IterationOutcome.FAILED

    def _log_outcome(self, number: int, error: Exception | None) -> None:
        """Log a failure with its traceback, except a known condition: that is logged
        once when it starts and once when it ends, since a traceback per iteration for a
        missing table only buries the one line that says what to do."""
        condition = None if error is None else self._condition_of(error)
        previous = self._condition
        if previous is not None and condition == previous:
            self._condition_failures += 1
            logger.debug(
                "service.iteration_failed",
                extra={"service": self._name, "iteration": number, "condition": previous.name},
            )
            return
        if previous is not None:
            logger.info(
                "service.condition_ended",
                extra={
                    "service": self._name,
                    "condition": previous.name,
                    "failed_iterations": self._condition_failures,
                },
            )
        self._condition, self._condition_failures = condition, 0
        if error is None:
            return
        fields = {"service": self._name, "iteration": number, "error_type": type(error).__name__}
        if condition is None:
            logger.error("service.iteration_failed", exc_info=error, extra=fields)
            return
        self._condition_failures = 1
        first_line = next(iter(str(error).splitlines()), "")
        logger.error(
            "service.condition_started",
            extra={
                **fields,
                "condition": condition.name,
                "error": first_line,
                "hint": condition.hint,
            },
        )

    def _condition_of(self, error: Exception) -> FailureCondition | None:
        if self._classify is None:
            return None
        try:
            return self._classify(error)
        except Exception:
            logger.exception("service.failure_classifier_failed", extra={"service": self._name})
            return None

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self._name!r} {state}>"
