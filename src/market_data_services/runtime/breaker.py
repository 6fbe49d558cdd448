"""A thread-safe circuit breaker with trial leases, exception classification and listeners.

Decisions are made under one short lock; the guarded work and every listener run outside
it. Time comes from an injectable monotonic clock, so tests drive it by hand.

States: CLOSED lets every call through and counts consecutive failures (and, optionally,
the failure rate over the last N calls); reaching the threshold opens the breaker. OPEN
refuses calls until ``timeout`` has passed, then the breaker is HALF_OPEN, also when only
``state`` is read. HALF_OPEN admits at most ``half_open_max_calls`` trial calls at once;
``success_threshold`` trial successes close it, one trial failure opens it again and
restarts the timeout. A trial admission is a lease: if its result does not come back
within ``trial_lease_seconds`` the trial counts as failed, so a hung call cannot keep the
breaker in HALF_OPEN.
"""

from __future__ import annotations

import enum
import logging
import random as _random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from market_data_services.runtime import validate
from market_data_services.runtime.events import EventDispatcher, default_dispatcher

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CircuitBreakerState(enum.StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def code(self) -> int:
        """The value of the ``mds_service_circuit_breaker_state`` gauge: 0, 1 or 2."""
        return _STATE_CODES[self]

    @classmethod
    def parse(cls, value: str) -> CircuitBreakerState:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"Unknown state {value!r}, valid states: {valid}") from None


_STATE_CODES = {
    CircuitBreakerState.CLOSED: 0,
    CircuitBreakerState.HALF_OPEN: 1,
    CircuitBreakerState.OPEN: 2,
}

CLOSED = CircuitBreakerState.CLOSED
HALF_OPEN = CircuitBreakerState.HALF_OPEN
OPEN = CircuitBreakerState.OPEN


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition, as listeners receive it."""

    breaker: str
    old: CircuitBreakerState
    new: CircuitBreakerState
    reason: str
    sequence: int  # 1, 2, ... per breaker, in the order the transitions happened
    timestamp: float  # unix time of the transition
    last_error: str | None  # "Type: message" of the latest failure, if any
    open_timeout_seconds: float | None  # how long it stays OPEN, when new is OPEN


@dataclass(frozen=True, slots=True)
class Permit:
    """Admission to one call. Pass it back to ``record_*`` so a stale result is ignored."""

    epoch: int  # the transition count when admitted
    lease: int  # 0 outside HALF_OPEN, else the trial lease's id


class CircuitBreakerError(RuntimeError):
    """Raised by :meth:`CircuitBreaker.call` when the breaker refuses the call."""


StateCallback = Callable[["CircuitBreaker"], Any]
Listener = Callable[[StateChange], Any]


class CircuitBreaker:
    """Guard calls to a dependency that can fail.

    The specification's API (``can_execute``, ``record_success``, ``record_failure``,
    ``state``, ``on_open``) works as written; ``acquire`` and the permit arguments add
    precise lease accounting for callers that want it.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        timeout: float | timedelta = 60.0,
        half_open_max_calls: int = 3,
        *,
        name: str = "breaker",
        success_threshold: int = 1,
        trial_lease_seconds: float | timedelta | None = None,
        failure_exceptions: tuple[type[BaseException], ...] = (Exception,),
        ignored_exceptions: tuple[type[BaseException], ...] = (),
        timeout_multiplier: float = 1.0,
        max_timeout: float | timedelta | None = None,
        timeout_jitter: float = 0.0,
        failure_rate_threshold: float | None = None,
        sliding_window_size: int = 100,
        minimum_calls: int = 10,
        on_open: StateCallback | None = None,
        on_close: StateCallback | None = None,
        on_half_open: StateCallback | None = None,
        listeners: Iterable[Listener] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        dispatcher: EventDispatcher | None = None,
    ) -> None:
        self.failure_threshold = validate.positive_int(failure_threshold, "failure_threshold")
        self.timeout = validate.seconds(timeout, "timeout", allow_zero=True)
        self.half_open_max_calls = validate.positive_int(half_open_max_calls, "half_open_max_calls")
        self.success_threshold = validate.positive_int(success_threshold, "success_threshold")
        self.trial_lease_seconds = (
            max(self.timeout, 1.0)
            if trial_lease_seconds is None
            else validate.seconds(trial_lease_seconds, "trial_lease_seconds")
        )
        if not isinstance(timeout_multiplier, int | float) or timeout_multiplier < 1.0:
            raise ValueError(f"timeout_multiplier must be >= 1.0, got {timeout_multiplier!r}")
        self.timeout_multiplier = float(timeout_multiplier)
        self.max_timeout = (
            None if max_timeout is None else validate.seconds(max_timeout, "max_timeout")
        )
        self.timeout_jitter = validate.fraction(timeout_jitter, "timeout_jitter")
        self.failure_rate_threshold = (
            None
            if failure_rate_threshold is None
            else validate.fraction(
                failure_rate_threshold, "failure_rate_threshold", allow_zero=False
            )
        )
        self.sliding_window_size = validate.positive_int(sliding_window_size, "sliding_window_size")
        self.minimum_calls = validate.positive_int(minimum_calls, "minimum_calls")
        self.failure_exceptions = failure_exceptions
        self.ignored_exceptions = ignored_exceptions
        self.name = name
        # Read at delivery time, so assigning ``breaker.on_open = f`` later works too.
        self.on_open = on_open
        self.on_close = on_close
        self.on_half_open = on_half_open

        self._clock = clock
        self._wall_clock = wall_clock
        self._random = random
        self._dispatcher = dispatcher

        # Every field below is guarded by _lock.
        self._lock = threading.Lock()
        self._state = CLOSED
        self._epoch = 0
        self._closed_permit = Permit(0, 0)
        self._failures = 0  # consecutive, in CLOSED
        self._window: deque[bool] | None = (
            deque(maxlen=self.sliding_window_size) if self.failure_rate_threshold else None
        )
        self._window_failures = 0
        self._opened_at = 0.0
        self._open_timeout = self.timeout
        self._reopens = 0  # re-opens since the breaker was last CLOSED
        self._forced = False
        self._leases: dict[int, float] = {}  # trial lease id -> expiry (clock time)
        self._next_lease = 1
        self._trial_successes = 0
        self._last_error: str | None = None
        self._sequence = 0
        self._listeners: list[Listener] = list(listeners)
        self._sync_listeners: list[Listener] = []
        self._listener_errors = 0

    # -- the specification's API -------------------------------------------------------

    @property
    def state(self) -> CircuitBreakerState:
        """The current state; reading it applies transitions that time has caused."""
        with self._lock:
            if self._state is CLOSED:
                return CLOSED
            changes: list[StateChange] = []
            self._advance(self._clock(), changes)
            state = self._state
        self._publish(changes)
        return state

    def can_execute(self) -> bool:
        """Whether a call may go ahead now. In HALF_OPEN this takes a trial lease."""
        return self.acquire() is not None

    def record_success(self, permit: Permit | None = None) -> None:
        with self._lock:
            if self._state is CLOSED and (permit is None or permit.epoch == self._epoch):
                self._failures = 0
                if self._window is not None:
                    self._push_outcome(False)
                return
            changes: list[StateChange] = []
            self._advance(self._clock(), changes)
            if self._state is HALF_OPEN and self._take_lease(permit):
                self._trial_successes += 1
                if self._trial_successes >= self.success_threshold:
                    self._transition(CLOSED, "trial call succeeded", changes)
        self._publish(changes)

    def record_failure(
        self, exc: BaseException | None = None, permit: Permit | None = None
    ) -> None:
        """Record a failed call. ``exc`` is classified first: an ignored one counts as neither."""
        if exc is not None and not self.is_failure(exc):
            self.record_ignored(permit)
            return
        changes: list[StateChange] = []
        with self._lock:
            if exc is not None:
                self._last_error = f"{type(exc).__name__}: {exc}"
            self._advance(self._clock(), changes)
            stale = permit is not None and permit.epoch != self._epoch
            if self._state is CLOSED and not stale:
                self._failures += 1
                rate_tripped = self._window is not None and self._push_outcome(True)
                if self._failures >= self.failure_threshold:
                    self._open(f"{self._failures} consecutive failures", changes)
                elif rate_tripped:
                    self._open("failure rate over the sliding window", changes)
            elif self._state is HALF_OPEN and self._take_lease(permit):
                self._open("trial call failed", changes)
        self._publish(changes)

    # -- additions -----------------------------------------------------------------------

    def acquire(self) -> Permit | None:
        """Admit one call and return its permit, or None when the breaker refuses it."""
        with self._lock:
            if self._state is CLOSED:
                return self._closed_permit
            changes: list[StateChange] = []
            now = self._clock()
            self._advance(now, changes)
            permit: Permit | None = None
            if self._state is CLOSED:
                permit = self._closed_permit
            elif self._state is HALF_OPEN and len(self._leases) < self.half_open_max_calls:
                lease = self._next_lease
                self._next_lease += 1
                self._leases[lease] = now + self.trial_lease_seconds
                permit = Permit(self._epoch, lease)
        self._publish(changes)
        return permit

    def record_ignored(self, permit: Permit | None = None) -> None:
        """The call ended in a way that says nothing about the dependency: free its lease."""
        with self._lock:
            if self._state is HALF_OPEN:
                self._take_lease(permit)

    def is_failure(self, exc: BaseException) -> bool:
        """Whether ``exc`` counts against the dependency (ignored types win)."""
        if self.ignored_exceptions and isinstance(exc, self.ignored_exceptions):
            return False
        return isinstance(exc, self.failure_exceptions)

    def call(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``func`` guarded by the breaker; raise CircuitBreakerError when refused."""
        permit = self.acquire()
        if permit is None:
            raise CircuitBreakerError(f"circuit breaker {self.name!r} is open")
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            self.record_failure(exc, permit)
            raise
        except BaseException:
            self.record_ignored(permit)
            raise
        self.record_success(permit)
        return result

    def reset(self) -> None:
        """Close the breaker and forget every count (an operator's action)."""
        changes: list[StateChange] = []
        with self._lock:
            self._forced = False
            self._failures = 0
            self._reopens = 0
            self._leases.clear()
            if self._window is not None:
                self._window.clear()
                self._window_failures = 0
            if self._state is not CLOSED:
                self._transition(CLOSED, "reset", changes)
        self._publish(changes)

    def force_open(self) -> None:
        """Open the breaker and keep it open until :meth:`reset`."""
        changes: list[StateChange] = []
        with self._lock:
            self._forced = True
            if self._state is not OPEN:
                self._open("forced open", changes)
        self._publish(changes)

    @property
    def failure_count(self) -> int:
        """Consecutive failures counted in CLOSED."""
        with self._lock:
            return self._failures

    @property
    def last_error(self) -> str | None:
        with self._lock:
            return self._last_error

    @property
    def listener_errors(self) -> int:
        """Listener calls that raised; each was logged."""
        with self._lock:
            return self._listener_errors

    def seconds_until_half_open(self) -> float | None:
        """How long an OPEN breaker stays open from now (None unless OPEN and timed)."""
        with self._lock:
            if self._state is not OPEN or self._forced:
                return None
            return max(0.0, self._opened_at + self._open_timeout - self._clock())

    def add_listener(self, listener: Listener, *, synchronous: bool = False) -> Listener:
        """Call ``listener(StateChange)`` on each transition.

        Listeners run on the dispatcher's thread, in transition order, so a slow one never
        delays the caller. ``synchronous=True`` is for cheap, non-blocking bookkeeping such
        as metrics: it runs on the thread that caused the transition, after the lock is
        released.
        """
        with self._lock:
            (self._sync_listeners if synchronous else self._listeners).append(listener)
        return listener

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            for group in (self._listeners, self._sync_listeners):
                if listener in group:
                    group.remove(listener)

    # -- internals (called with _lock held unless said otherwise) ------------------------

    def _advance(self, now: float, changes: list[StateChange]) -> None:
        """Apply transitions caused by time: OPEN -> HALF_OPEN, expired trial leases."""
        if self._state is OPEN and not self._forced and now - self._opened_at >= self._open_timeout:
            self._transition(HALF_OPEN, f"open for {self._open_timeout:g}s", changes)
        if self._state is HALF_OPEN and self._leases and min(self._leases.values()) <= now:
            self._open("trial lease expired without a result", changes)
            if now - self._opened_at >= self._open_timeout:
                self._transition(HALF_OPEN, f"open for {self._open_timeout:g}s", changes)

    def _take_lease(self, permit: Permit | None) -> bool:
        """Release the permit's lease (or the oldest one); False for a stale permit."""
        if permit is None:
            if self._leases:
                del self._leases[next(iter(self._leases))]
            return True
        if permit.epoch != self._epoch:
            return False
        return self._leases.pop(permit.lease, None) is not None

    def _push_outcome(self, failed: bool) -> bool:
        """Add one outcome to the sliding window; True when the failure rate trips it."""
        window = self._window
        assert window is not None and self.failure_rate_threshold is not None
        if len(window) == window.maxlen and window[0]:
            self._window_failures -= 1
        window.append(failed)
        self._window_failures += failed
        return (
            len(window) >= self.minimum_calls
            and self._window_failures / len(window) >= self.failure_rate_threshold
        )

    def _open(self, reason: str, changes: list[StateChange]) -> None:
        if self._state is HALF_OPEN:
            self._reopens += 1
        elif self._state is CLOSED:
            self._reopens = 0
        timeout = self.timeout * self.timeout_multiplier**self._reopens
        if self.max_timeout is not None:
            timeout = min(timeout, self.max_timeout)
        if self.timeout_jitter:
            timeout *= 1.0 + self.timeout_jitter * self._random()
        self._open_timeout = timeout
        self._opened_at = self._clock()
        self._transition(OPEN, reason, changes)

    def _transition(
        self, new: CircuitBreakerState, reason: str, changes: list[StateChange]
    ) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._closed_permit = Permit(self._epoch, 0)
        self._leases.clear()
        self._trial_successes = 0
        if new is CLOSED:
            self._failures = 0
            self._reopens = 0
        if self._window is not None:
            self._window.clear()
            self._window_failures = 0
        self._sequence += 1
        event = StateChange(
            breaker=self.name,
            old=old,
            new=new,
            reason=reason,
            sequence=self._sequence,
            timestamp=self._wall_clock(),
            last_error=self._last_error,
            open_timeout_seconds=self._open_timeout if new is OPEN and not self._forced else None,
        )
        changes.append(event)
        log = logger.warning if new is OPEN else logger.info
        log(
            "circuit_breaker.transition",
            extra={"breaker": self.name, "old": old.value, "new": new.value, "reason": reason},
        )
        # Queued under the lock so that events from racing threads keep transition order;
        # submit() never blocks.
        (self._dispatcher or default_dispatcher()).submit(lambda: self._deliver(event))

    def _publish(self, changes: list[StateChange]) -> None:
        """Run the synchronous listeners (lock not held)."""
        if not changes or not self._sync_listeners:
            return
        for event in changes:
            for listener in list(self._sync_listeners):
                self._safely(listener, event)

    def _deliver(self, event: StateChange) -> None:
        """Run the asynchronous listeners and callbacks (dispatcher thread)."""
        callback = {OPEN: self.on_open, CLOSED: self.on_close, HALF_OPEN: self.on_half_open}[
            event.new
        ]
        if callback is not None:
            self._safely(lambda _event: callback(self), event)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            self._safely(listener, event)

    def _safely(self, listener: Listener, event: StateChange) -> None:
        try:
            listener(event)
        except Exception:
            logger.exception(
                "circuit_breaker.listener_failed",
                extra={"breaker": self.name, "new": event.new.value},
            )
            with self._lock:
                self._listener_errors += 1

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state.value}>"
