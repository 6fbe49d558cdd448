from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from market_data_services.app.probe import ProbeResult, SingleFlightProbe


class Gate:
    """A check that blocks until opened, counting its runs: a database that hangs."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.runs = 0  # written by the probe's one check thread at a time
        self.error: Exception | None = None

    def __call__(self) -> None:
        self.runs += 1
        self.open.wait(30)
        if self.error is not None:
            raise self.error


@pytest.fixture
def gate() -> Iterator[Gate]:
    check = Gate()
    yield check
    check.open.set()


def probe_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"mds-probe-{name}"]


def test_a_check_that_hangs_answers_not_ready_at_its_deadline(gate: Gate) -> None:
    probe = SingleFlightProbe(gate, name="database", deadline_seconds=0.2)
    result = probe.check()
    assert (result.ok, result.error) == (False, "no answer within 0.2 s")


def test_concurrent_callers_never_start_a_second_check_while_one_hangs(gate: Gate) -> None:
    probe = SingleFlightProbe(gate, name="concurrent", deadline_seconds=0.2, fresh_seconds=0)
    results: list[ProbeResult] = []
    callers = [threading.Thread(target=lambda: results.append(probe.check())) for _ in range(20)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    results.append(probe.check())  # past the deadline: answered at once, no new check
    assert gate.runs == 1
    assert len(probe_threads("concurrent")) == 1
    assert [r.ok for r in results] == [False] * 21
    gate.open.set()


def test_callers_answer_from_the_last_result_while_a_check_runs(gate: Gate) -> None:
    probe = SingleFlightProbe(gate, name="database", deadline_seconds=10, fresh_seconds=0)
    gate.open.set()
    first = probe.check()
    assert first.ok
    gate.open.clear()
    starter = threading.Thread(target=probe.check)
    starter.start()
    while gate.runs < 2:  # the second check is in flight
        gate.open.wait(0.01)
    assert probe.check() is first
    gate.open.set()
    starter.join(10)


def test_a_failing_check_reports_the_error_type(gate: Gate) -> None:
    gate.error = ConnectionRefusedError("refused")
    gate.open.set()
    result = SingleFlightProbe(gate, name="database").check()
    assert (result.ok, result.error) == (False, "ConnectionRefusedError")


def test_a_fresh_result_is_reused_and_a_stale_one_checked_again(gate: Gate) -> None:
    now = [100.0]
    probe = SingleFlightProbe(gate, name="database", fresh_seconds=1.0, clock=lambda: now[0])
    gate.open.set()
    assert probe.check().ok
    now[0] += 0.5
    assert probe.check().ok
    assert gate.runs == 1
    now[0] += 1.0
    assert probe.check().ok
    assert gate.runs == 2


def test_once_a_hung_check_ends_the_next_call_checks_again(gate: Gate) -> None:
    probe = SingleFlightProbe(gate, name="ends", deadline_seconds=0.1, fresh_seconds=0)
    assert not probe.check().ok
    gate.open.set()
    for thread in probe_threads("ends"):
        thread.join(10)
    assert probe.check().ok
    assert gate.runs == 2
