"""ThreadedBackgroundService: lifecycle, scheduling, breaker, metrics dict."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry

from market_data_services import CircuitBreaker, IterationOutcome, ThreadedBackgroundService
from market_data_services.runtime import FailureCondition

from .conftest import FakeClock


class Recorder(ThreadedBackgroundService):
    """Records when each iteration starts; fails when told to; can block on an event."""

    def __init__(
        self,
        *args,
        fail_with: Exception | None = None,
        work_seconds: float = 0.0,
        block: threading.Event | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.starts: list[float] = []
        self.fail_with = fail_with
        self.work_seconds = work_seconds
        self.block = block
        self.ran = threading.Event()

    @property
    def service_name(self) -> str:
        return "Recorder"

    def _process_iteration(self) -> None:
        self.starts.append(time.monotonic())
        self.ran.set()
        if self.block is not None:
            self.block.wait(30)
        if self.work_seconds:
            threading.Event().wait(self.work_seconds)
        if self.fail_with is not None:
            raise self.fail_with


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"service": "Recorder", **labels})


@pytest.fixture
def make(registry):
    made: list[ThreadedBackgroundService] = []

    def factory(*args, **kwargs) -> Recorder:
        kwargs.setdefault("registry", registry)
        service = Recorder(*args, **kwargs)
        made.append(service)
        return service

    yield factory
    for service in made:
        if service.block is not None:
            service.block.set()
        service.stop(timeout=5)


def test_specification_subclass_runs_and_reports_the_metrics_dict(registry) -> None:
    class MyService(ThreadedBackgroundService):
        def __init__(self) -> None:
            super().__init__(
                None, ["EUR/USD", "GBP/USD"], 60.0, enable_circuit_breaker=True, registry=registry
            )
            self.seen: list[str] = []

        @property
        def service_name(self) -> str:
            return "MyService"

        def _process_iteration(self) -> None:
            for symbol in self.get_symbols():
                self.seen.append(symbol)

    service = MyService()
    assert service.run_once() is IterationOutcome.SUCCEEDED
    metrics = service.get_metrics()
    assert service.seen == ["EUR/USD", "GBP/USD"]
    assert {
        "service_name",
        "is_running",
        "iteration_count",
        "error_count",
        "last_error_time",
        "circuit_breaker_state",
        "recent_errors",
        "interval_seconds",
        "symbols",
    } <= metrics.keys()
    assert metrics["service_name"] == "MyService"
    assert metrics["is_running"] is False
    assert (metrics["iteration_count"], metrics["error_count"]) == (1, 0)
    assert metrics["circuit_breaker_state"] == "closed"
    assert metrics["interval_seconds"] == 60.0
    assert metrics["symbols"] == ["EUR/USD", "GBP/USD"]
    assert metrics["last_error_time"] is None


def test_scrape_before_the_first_iteration_already_shows_every_series(make, registry) -> None:
    make(interval_seconds=15)
    assert sample(registry, "mds_service_circuit_breaker_state") == 0
    assert sample(registry, "mds_service_iterations_total") == 0
    assert sample(registry, "mds_service_errors_total") == 0
    assert sample(registry, "mds_service_iterations_skipped_total") == 0
    assert sample(registry, "mds_service_iteration_duration_seconds_count") == 0
    assert sample(registry, "mds_service_running") == 0
    assert sample(registry, "mds_service_last_success_timestamp_seconds") == 0
    assert sample(registry, "mds_service_interval_seconds") == 15
    for state in ("closed", "half_open", "open"):
        assert sample(registry, "mds_service_circuit_breaker_transitions_total", state=state) == 0


def test_an_exception_never_ends_the_loop_and_is_counted(make, registry) -> None:
    service = make(
        interval_seconds=0.01,
        fail_with=RuntimeError("db unreachable"),
        enable_circuit_breaker=False,
    )
    service.start()
    deadline = time.monotonic() + 10
    while service.get_metrics()["error_count"] < 5 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert service.is_running()
    metrics = service.get_metrics()
    assert metrics["error_count"] >= 5
    assert sample(registry, "mds_service_errors_total") >= 5
    assert metrics["iteration_count"] >= metrics["error_count"]


def test_recent_errors_keep_the_last_ten_with_utc_time_message_and_type(make) -> None:
    service = make(enable_circuit_breaker=False)
    for i in range(12):
        service.fail_with = TimeoutError(f"connection timeout #{i}")
        service.run_once()
    errors = service.get_metrics()["recent_errors"]
    assert [e["error"] for e in errors] == [f"connection timeout #{i}" for i in range(2, 12)]
    assert {e["type"] for e in errors} == {"TimeoutError"}
    stamp = errors[-1]["timestamp"]
    assert stamp.endswith("Z")
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - time.time()) < 60


def test_open_breaker_skips_iteration_and_counts_it(make, registry, clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, timeout=30, clock=clock)
    service = make(circuit_breaker=breaker, clock=clock, fail_with=OSError("disk"))
    assert service.run_once() is IterationOutcome.FAILED
    assert service.run_once() is IterationOutcome.FAILED
    assert service.run_once() is IterationOutcome.SKIPPED
    assert len(service.starts) == 2  # the skipped iteration did not run the work
    assert sample(registry, "mds_service_iterations_skipped_total") == 1
    assert sample(registry, "mds_service_iterations_total") == 2
    assert sample(registry, "mds_service_circuit_breaker_state") == 2
    assert sample(registry, "mds_service_circuit_breaker_transitions_total", state="open") == 1
    assert service.get_metrics()["circuit_breaker_state"] == "open"
    assert service.get_metrics()["skipped_count"] == 1


def test_breaker_gauge_shows_a_transition_caused_by_time_at_the_next_scrape(
    make, registry, clock: FakeClock
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, timeout=30, clock=clock)
    service = make(circuit_breaker=breaker, clock=clock, fail_with=OSError("disk"))
    service.run_once()
    assert sample(registry, "mds_service_circuit_breaker_state") == 2
    clock.advance(30)  # nobody calls the breaker; only the scrape looks
    assert sample(registry, "mds_service_circuit_breaker_state") == 1
    assert sample(registry, "mds_service_circuit_breaker_transitions_total", state="half_open") == 1
    service.fail_with = None
    assert service.run_once() is IterationOutcome.SUCCEEDED  # the trial call
    assert sample(registry, "mds_service_circuit_breaker_state") == 0
    assert sample(registry, "mds_service_circuit_breaker_transitions_total", state="closed") == 1


def test_reset_circuit_breaker_closes_it(make, clock: FakeClock) -> None:
    service = make(
        circuit_breaker=CircuitBreaker(failure_threshold=1, clock=clock), fail_with=OSError("x")
    )
    service.run_once()
    assert service.get_metrics()["circuit_breaker_state"] == "open"
    service.reset_circuit_breaker()
    assert service.get_metrics()["circuit_breaker_state"] == "closed"


def test_last_success_timestamp_is_unix_time_of_the_good_iteration(make, registry) -> None:
    service = make()
    before = time.time()
    service.run_once()
    stamp = sample(registry, "mds_service_last_success_timestamp_seconds")
    assert before <= stamp <= time.time()
    assert service.get_metrics()["last_success_time"] == stamp


def test_double_start_runs_one_loop(make) -> None:
    service = make(interval_seconds=60)
    service.start()
    first = service._thread
    service.start()
    assert service._thread is first
    assert [t.name for t in threading.enumerate()].count("mds-Recorder") == 1


def test_loop_thread_is_a_named_daemon(make, registry) -> None:
    service = make(interval_seconds=60)
    service.start()
    assert service.ran.wait(5)
    thread = service._thread
    assert thread is not None and thread.daemon and thread.name == "mds-Recorder"
    assert sample(registry, "mds_service_running") == 1
    assert service.stop(timeout=5)
    assert sample(registry, "mds_service_running") == 0


def test_stop_while_sleeping_returns_at_once(make) -> None:
    service = make(interval_seconds=3600)
    service.start()
    assert service.ran.wait(5)
    started = time.monotonic()
    assert service.stop(timeout=10) is True
    assert time.monotonic() - started < 1.0  # not the hour the loop was sleeping for
    assert not service.is_running()


def test_stop_returns_within_timeout_while_iteration_blocks(make) -> None:
    block = threading.Event()
    service = make(interval_seconds=60, block=block)
    service.start()
    assert service.ran.wait(5)
    started = time.monotonic()
    assert service.stop(timeout=0.2) is False
    assert time.monotonic() - started < 5.0  # returned on its timeout, not after the work
    with pytest.raises(RuntimeError, match="still finishing an iteration"):
        service.start()
    block.set()
    assert service.stop(timeout=5) is True


def test_restart_after_stop_runs_again(make) -> None:
    service = make(interval_seconds=60)
    service.start()
    assert service.ran.wait(5)
    assert service.stop(timeout=5)
    service.ran.clear()
    service.start()
    assert service.ran.wait(5)
    assert service.is_running()
    assert service.get_metrics()["iteration_count"] == 2


def test_iterations_start_on_a_fixed_grid_without_drift(make) -> None:
    # Each iteration works for 40 % of the interval. A loop that sleeps a full interval
    # after each one would start the 10th at 10 * 1.4 intervals; a fixed-rate one at 10.
    interval = 0.1
    service = make(interval_seconds=interval, work_seconds=0.04)
    service.start()
    deadline = time.monotonic() + 10
    while len(service.starts) < 11 and time.monotonic() < deadline:
        threading.Event().wait(0.02)
    service.stop(timeout=5)
    starts = service.starts
    assert len(starts) >= 11
    assert starts[10] - starts[0] < 10 * interval + 0.2  # drift would add 0.4 s
    assert service.get_metrics()["overrun_count"] == 0


def test_an_overrun_is_counted_and_the_next_iteration_starts_at_once(make, registry) -> None:
    service = make(interval_seconds=0.05, work_seconds=0.12)
    service.start()
    deadline = time.monotonic() + 10
    while len(service.starts) < 3 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    service.stop(timeout=5)
    assert service.get_metrics()["overrun_count"] >= 2
    assert sample(registry, "mds_service_iteration_overruns_total") >= 2
    gaps = [b - a for a, b in zip(service.starts, service.starts[1:], strict=False)]
    assert all(gap < 0.12 + 0.05 for gap in gaps[:2])  # no extra interval of sleep


def test_first_start_is_jittered_when_asked(make) -> None:
    service = make(interval_seconds=60, first_start_jitter_seconds=0.3, random=lambda: 1.0)
    started = time.monotonic()
    service.start()
    assert service.ran.wait(5)
    assert service.starts[0] - started >= 0.3


def test_stop_during_the_jitter_wait_returns_at_once(make) -> None:
    service = make(interval_seconds=60, first_start_jitter_seconds=3600, random=lambda: 1.0)
    service.start()
    assert service.stop(timeout=2)
    assert service.starts == []


def test_a_stuck_iteration_is_visible_in_metrics_and_the_dict(make, registry) -> None:
    block = threading.Event()
    service = make(interval_seconds=60, block=block, stuck_after_seconds=0.1)
    service.start()
    assert service.ran.wait(5)
    threading.Event().wait(0.3)
    assert sample(registry, "mds_service_iteration_stuck") == 1
    assert sample(registry, "mds_service_iteration_in_progress_seconds") >= 0.2
    assert service.get_metrics()["stuck"] is True
    block.set()
    assert service.stop(timeout=5)
    assert sample(registry, "mds_service_iteration_stuck") == 0
    assert service.get_metrics()["current_iteration_seconds"] == 0


def test_run_once_goes_through_the_instrumented_path(make, registry) -> None:
    service = make()
    assert service.run_once() is IterationOutcome.SUCCEEDED
    assert sample(registry, "mds_service_iterations_total") == 1
    assert sample(registry, "mds_service_iteration_duration_seconds_count") == 1


def test_run_once_is_refused_while_the_loop_runs(make) -> None:
    service = make(interval_seconds=60)
    service.start()
    with pytest.raises(RuntimeError, match="stop\\(\\) first"):
        service.run_once()


def test_symbols_from_configuration_are_cached_for_the_ttl(make, clock: FakeClock) -> None:
    reads = []

    def config() -> list[str]:
        reads.append(1)
        return ["EUR/USD"] if len(reads) == 1 else ["EUR/USD", "NZD/USD"]

    service = make(symbol_provider=config, clock=clock)
    assert service.get_symbols() == ["EUR/USD"]
    clock.advance(299)
    assert service.get_symbols() == ["EUR/USD"]
    assert len(reads) == 1
    clock.advance(1)
    assert service.get_symbols() == ["EUR/USD", "NZD/USD"]


def test_symbols_from_the_environment_by_default(make, monkeypatch) -> None:
    monkeypatch.setenv("MDS_SYMBOLS", "EUR/USD, NZD/USD,,EUR/USD")
    assert make().get_symbols() == ["EUR/USD", "NZD/USD"]


def test_a_failing_configuration_keeps_the_last_good_symbols(make, clock: FakeClock) -> None:
    answers: list[object] = [["EUR/USD"], OSError("config unreadable")]

    def config() -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    service = make(symbol_provider=config, clock=clock)
    assert service.get_symbols() == ["EUR/USD"]
    clock.advance(301)
    assert service.get_symbols() == ["EUR/USD"]


def test_service_needs_no_database(make) -> None:
    service = make()
    assert service.engine is None
    assert service.run_once() is IterationOutcome.SUCCEEDED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_seconds": -1}, "interval_seconds must be > 0, got -1"),
        ({"interval_seconds": 0}, "interval_seconds must be > 0, got 0"),
        ({"first_start_jitter_seconds": -1}, "first_start_jitter_seconds must be >= 0"),
        ({"stuck_after_seconds": 0}, "stuck_after_seconds must be > 0"),
    ],
)
def test_nonsense_arguments_raise_value_error_naming_them(make, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


@pytest.mark.parametrize("name", ["", "has space", "new\nline", "x" * 65, "1starts_with_digit"])
def test_service_name_must_be_a_valid_label_value(registry, name) -> None:
    class Bad(ThreadedBackgroundService):
        service_name = name  # type: ignore[assignment]

        def _process_iteration(self) -> None:
            pass

    with pytest.raises(ValueError, match="service_name must be"):
        Bad(registry=registry)


# -- known conditions: logged once, not per iteration -------------------------------------

MISSING_TABLE = FailureCondition(name="table_missing", hint="restore the table")


def missing_table(error: Exception) -> FailureCondition | None:
    return MISSING_TABLE if isinstance(error, LookupError) else None


def service_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "market_data_services.runtime.service"]


def test_a_known_condition_is_logged_once_when_it_starts_and_once_when_it_ends(
    make, registry, caplog
) -> None:
    service = make(
        None,
        ["EUR/USD"],
        60.0,
        fail_with=LookupError("no such table: candles"),
        failure_classifier=missing_table,
    )
    caplog.set_level(logging.DEBUG, logger="market_data_services.runtime.service")
    for _ in range(3):
        assert service.run_once() is IterationOutcome.FAILED
    service.fail_with = None
    assert service.run_once() is IterationOutcome.SUCCEEDED

    loud = [r for r in service_records(caplog) if r.levelno >= logging.INFO]
    assert [(r.levelname, r.getMessage()) for r in loud] == [
        ("ERROR", "service.condition_started"),
        ("INFO", "service.condition_ended"),
    ]
    started, ended = loud
    assert started.exc_info is None  # one clear line, no traceback
    assert started.condition == "table_missing"
    assert started.hint == "restore the table"
    assert started.error == "no such table: candles"
    assert ended.failed_iterations == 3
    # Every failure still counts, in the metrics and the specification's dict.
    assert sample(registry, "mds_service_errors_total") == 3
    assert service.get_metrics()["error_count"] == 3
    assert service.get_metrics()["condition"] is None


def test_an_unknown_error_during_a_condition_ends_it_and_is_logged_with_its_traceback(
    make, caplog
) -> None:
    service = make(
        None,
        ["EUR/USD"],
        60.0,
        fail_with=LookupError("no such table: candles"),
        failure_classifier=missing_table,
    )
    service.run_once()
    assert service.get_metrics()["condition"] == {
        "name": "table_missing",
        "hint": "restore the table",
    }
    service.fail_with = ValueError("NaN price")
    caplog.set_level(logging.INFO, logger="market_data_services.runtime.service")
    caplog.clear()
    service.run_once()
    loud = [r for r in service_records(caplog) if r.levelno >= logging.INFO]
    assert [r.getMessage() for r in loud] == ["service.condition_ended", "service.iteration_failed"]
    assert loud[1].exc_info is not None
    assert service.get_metrics()["condition"] is None


def test_without_a_classifier_every_failure_is_logged_with_its_traceback(make, caplog) -> None:
    service = make(None, ["EUR/USD"], 60.0, fail_with=LookupError("no such table: candles"))
    service.run_once()
    service.run_once()
    failed = [r for r in service_records(caplog) if r.getMessage() == "service.iteration_failed"]
    assert len(failed) == 2
    assert all(r.exc_info is not None and r.levelno == logging.ERROR for r in failed)
