"""The breaker against a small reference model, driven by hypothesis with a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from market_data_services import CircuitBreaker
from market_data_services.runtime.breaker import Permit
from market_data_services.runtime.events import EventDispatcher

from .conftest import FakeClock


@dataclass
class Ticket:
    """What the model hands out for an admission; paired with the real breaker's permit."""

    generation: int
    trial: bool
    ident: int


class Model:
    """The rules written out plainly: no locks, no leases by epoch, sets of ids."""

    def __init__(
        self, threshold: int, timeout: int, max_trials: int, successes: int, lease: int
    ) -> None:
        self.threshold, self.timeout, self.max_trials = threshold, timeout, max_trials
        self.needed_successes, self.lease = successes, lease
        self.state = "closed"
        self.generation = 0
        self.failures = 0
        self.opened_at = 0.0
        self.forced = False
        self.trials: dict[int, float] = {}  # ident -> expiry, in issue order
        self.trial_successes = 0
        self.next_ident = 0
        self.transitions: list[tuple[str, str]] = []

    def go(self, new: str) -> None:
        self.transitions.append((self.state, new))
        self.state = new
        self.generation += 1
        self.trials.clear()
        self.trial_successes = 0
        if new == "closed":
            self.failures = 0

    def open(self, now: float) -> None:
        self.opened_at = now
        self.go("open")

    def tick(self, now: float) -> None:
        if self.state == "open" and not self.forced and now - self.opened_at >= self.timeout:
            self.go("half_open")
        if self.state == "half_open" and any(exp <= now for exp in self.trials.values()):
            self.open(now)
            if now - self.opened_at >= self.timeout:
                self.go("half_open")

    def acquire(self, now: float) -> Ticket | None:
        self.tick(now)
        self.next_ident += 1
        if self.state == "closed":
            return Ticket(self.generation, False, self.next_ident)
        if self.state == "half_open" and len(self.trials) < self.max_trials:
            self.trials[self.next_ident] = now + self.lease
            return Ticket(self.generation, True, self.next_ident)
        return None

    def valid(self, ticket: Ticket | None) -> bool:
        if ticket is None:
            return True
        return ticket.generation == self.generation and (
            not ticket.trial or ticket.ident in self.trials
        )

    def release(self, ticket: Ticket | None) -> None:
        if ticket is None:
            if self.trials:
                del self.trials[next(iter(self.trials))]
        else:
            self.trials.pop(ticket.ident, None)

    def success(self, now: float, ticket: Ticket | None) -> None:
        self.tick(now)
        if not self.valid(ticket):
            return
        if self.state == "closed":
            self.failures = 0
        elif self.state == "half_open":
            self.release(ticket)
            self.trial_successes += 1
            if self.trial_successes >= self.needed_successes:
                self.go("closed")

    def failure(self, now: float, ticket: Ticket | None) -> None:
        self.tick(now)
        if not self.valid(ticket):
            return
        if self.state == "closed":
            self.failures += 1
            if self.failures >= self.threshold:
                self.open(now)
        elif self.state == "half_open":
            self.release(ticket)
            self.open(now)

    def ignored(self, ticket: Ticket | None) -> None:
        if self.state == "half_open" and self.valid(ticket):
            self.release(ticket)

    def reset(self) -> None:
        self.forced = False
        self.failures = 0
        self.trials.clear()
        if self.state != "closed":
            self.go("closed")

    def force_open(self, now: float) -> None:
        self.forced = True
        if self.state != "open":
            self.open(now)


class BreakerMachine(RuleBasedStateMachine):
    permits = Bundle("permits")

    @initialize(
        threshold=st.integers(1, 4),
        timeout=st.integers(0, 20),
        max_trials=st.integers(1, 3),
        successes=st.integers(1, 3),
        lease=st.integers(1, 30),
    )
    def build(self, threshold, timeout, max_trials, successes, lease) -> None:
        self.clock = FakeClock(0.0)
        self.events = []
        self.dispatcher = EventDispatcher(max_queue=10_000)
        self.breaker = CircuitBreaker(
            threshold,
            timeout,
            max_trials,
            success_threshold=successes,
            trial_lease_seconds=lease,
            clock=self.clock,
            dispatcher=self.dispatcher,
        )
        self.breaker.add_listener(self.events.append, synchronous=True)
        self.model = Model(threshold, timeout, max_trials, successes, lease)

    @rule(target=permits)
    def acquire(self):
        permit = self.breaker.acquire()
        ticket = self.model.acquire(self.clock())
        assert (permit is None) == (ticket is None)
        return (permit, ticket)

    @rule(pair=consumes(permits))
    def succeed(self, pair: tuple[Permit | None, Ticket | None]) -> None:
        permit, ticket = pair
        if permit is not None:
            self.breaker.record_success(permit)
            self.model.success(self.clock(), ticket)

    @rule(pair=consumes(permits))
    def fail(self, pair) -> None:
        permit, ticket = pair
        if permit is not None:
            self.breaker.record_failure(RuntimeError("x"), permit)
            self.model.failure(self.clock(), ticket)

    @rule(pair=consumes(permits))
    def ignore(self, pair) -> None:
        permit, ticket = pair
        if permit is not None:
            self.breaker.record_ignored(permit)
            self.model.ignored(ticket)

    @rule()
    def succeed_without_permit(self) -> None:
        self.breaker.record_success()
        self.model.success(self.clock(), None)

    @rule()
    def fail_without_permit(self) -> None:
        self.breaker.record_failure(RuntimeError("x"))
        self.model.failure(self.clock(), None)

    @rule(seconds=st.sampled_from([0.5, 1, 5, 10, 20, 30]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.reset()

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open()
        self.model.force_open(self.clock())

    @invariant()
    def same_state_and_history(self) -> None:
        if not hasattr(self, "model"):
            return
        self.model.tick(self.clock())
        assert self.breaker.state.value == self.model.state
        assert [(e.old.value, e.new.value) for e in self.events] == self.model.transitions
        if self.model.state == "closed":
            assert self.breaker.failure_count == self.model.failures

    def teardown(self) -> None:
        if hasattr(self, "dispatcher"):
            self.dispatcher.shutdown(timeout=1)


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_breaker_matches_reference_model = BreakerMachine.TestCase
