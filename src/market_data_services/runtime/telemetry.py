"""Prometheus metrics and OpenTelemetry spans for the service loop.

The metric families follow the contract in DESIGN.md. They are created once per
``CollectorRegistry`` and shared by every service in it (label ``service``); each service
resolves its labelled children once, at construction, so every series exists before the
first iteration and the loop never looks a child up.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Status, StatusCode
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from market_data_services.runtime.breaker import CircuitBreakerState, StateChange

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from market_data_services.runtime.breaker import CircuitBreaker

#: Iteration time from a millisecond to two minutes. 5, 15, 30 and 60 s are boundaries
#: because they are the intervals our services run at, so "slower than its interval" can
#: be read straight off the buckets.
ITERATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    15.0,
    30.0,
    60.0,
    120.0,
)

_TRACER_NAME = "market_data_services"
_NO_OP_PROVIDERS = (ProxyTracerProvider, NoOpTracerProvider)


class _ListenerErrors(Collector):
    """``mds_service_listener_errors_total``, read from the breakers at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}  # guarded by _lock

    def track(self, service: str, breaker: CircuitBreaker) -> None:
        with self._lock:
            self._breakers[service] = breaker

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "mds_service_listener_errors",
            "Circuit-breaker listener calls that raised (each was logged).",
            labels=["service"],
        )
        with self._lock:
            breakers = list(self._breakers.items())
        for service, breaker in breakers:
            family.add_metric([service], breaker.listener_errors)
        yield family


class _Families:
    """The metric families of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["service"]
        # The state gauge is registered before the transition counter: reading the gauge
        # at scrape time can apply a time-caused transition, which the counter then shows
        # in the same scrape.
        self.state = Gauge(
            "mds_service_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half_open, 2 open.",
            labels,
            registry=registry,
        )
        self.transitions = Counter(
            "mds_service_circuit_breaker_transitions",
            "Circuit breaker transitions into each state.",
            [*labels, "state"],
            registry=registry,
        )
        self.iterations = Counter(
            "mds_service_iterations",
            "Iterations the service loop ran (failed ones included, skipped ones not).",
            labels,
            registry=registry,
        )
        self.errors = Counter(
            "mds_service_errors", "Iterations that raised.", labels, registry=registry
        )
        self.skipped = Counter(
            "mds_service_iterations_skipped",
            "Iterations skipped because the circuit breaker was open.",
            labels,
            registry=registry,
        )
        self.overruns = Counter(
            "mds_service_iteration_overruns",
            "Iterations that ended after the next one was due.",
            labels,
            registry=registry,
        )
        self.duration = Histogram(
            "mds_service_iteration_duration_seconds",
            "Time one iteration took.",
            labels,
            buckets=ITERATION_BUCKETS,
            registry=registry,
        )
        self.running = Gauge(
            "mds_service_running",
            "1 while the service's loop thread is alive.",
            labels,
            registry=registry,
        )
        self.last_success = Gauge(
            "mds_service_last_success_timestamp_seconds",
            "Unix time of the last iteration that succeeded (0 before the first).",
            labels,
            registry=registry,
        )
        self.interval = Gauge(
            "mds_service_interval_seconds",
            "The configured interval between iteration starts.",
            labels,
            registry=registry,
        )
        self.stuck = Gauge(
            "mds_service_iteration_stuck",
            "1 while the current iteration has run past its deadline.",
            labels,
            registry=registry,
        )
        self.in_progress = Gauge(
            "mds_service_iteration_in_progress_seconds",
            "How long the current iteration has been running (0 between iterations).",
            labels,
            registry=registry,
        )
        self.listener_errors = _ListenerErrors()
        registry.register(self.listener_errors)


_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def _families_for(registry: CollectorRegistry) -> _Families:
    with _families_lock:
        families = _families.get(registry)
        if families is None:
            families = _families[registry] = _Families(registry)
        return families


class ServiceTelemetry:
    """The labelled children of one service, resolved once."""

    def __init__(
        self,
        service: str,
        *,
        registry: CollectorRegistry | None = None,
        interval_seconds: float,
        breaker: CircuitBreaker | None,
        is_running: Callable[[], bool],
        in_progress_seconds: Callable[[], float],
        is_stuck: Callable[[], bool],
    ) -> None:
        families = _families_for(REGISTRY if registry is None else registry)
        self.iterations = families.iterations.labels(service)
        self.errors = families.errors.labels(service)
        self.skipped = families.skipped.labels(service)
        self.overruns = families.overruns.labels(service)
        self.duration = families.duration.labels(service)
        self.last_success = families.last_success.labels(service)
        self._transitions = {
            state: families.transitions.labels(service, state.value)
            for state in CircuitBreakerState
        }
        families.interval.labels(service).set(interval_seconds)
        families.running.labels(service).set_function(lambda: 1.0 if is_running() else 0.0)
        families.in_progress.labels(service).set_function(in_progress_seconds)
        families.stuck.labels(service).set_function(lambda: 1.0 if is_stuck() else 0.0)
        state = families.state.labels(service)
        if breaker is None:
            state.set(0)
        else:
            state.set_function(lambda: breaker.state.code)
            breaker.add_listener(self.on_transition, synchronous=True)
            families.listener_errors.track(service, breaker)

    def on_transition(self, event: StateChange) -> None:
        self._transitions[event.new].inc()


class Tracing:
    """Spans through the global OpenTelemetry API, free when no provider is configured.

    The provider is looked up on every iteration (a cheap attribute read), so a provider
    configured after the service was built, or by ``opentelemetry-instrument``, is used.
    """

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self._fixed = tracer
        self._provider: object | None = None
        self._tracer: trace.Tracer | None = None

    def tracer(self) -> trace.Tracer | None:
        """The tracer to use now, or None when spans would not be recorded anywhere."""
        if self._fixed is not None:
            return self._fixed
        provider = trace.get_tracer_provider()
        if isinstance(provider, _NO_OP_PROVIDERS):
            return None
        if provider is not self._provider:
            self._tracer = provider.get_tracer(_TRACER_NAME)
            self._provider = provider
        return self._tracer


def start_span(
    tracer: trace.Tracer, name: str, attributes: dict[str, Any]
) -> tuple[trace.Span, object]:
    """Start ``name`` as the current span; return it and the context token to detach."""
    span = tracer.start_span(name, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span))
    return span, token


def end_span(span: trace.Span, token: object, exc: BaseException | None = None) -> None:
    if exc is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    otel_context.detach(token)  # type: ignore[arg-type]
    span.end()


def exemplar_for(span: trace.Span) -> dict[str, str] | None:
    """The trace_id/span_id exemplar of a recording span, for the duration histogram."""
    ctx = span.get_span_context()
    if not ctx.is_valid or not span.is_recording():
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def child_span(
    tracing: Tracing, name: str, attributes: dict[str, Any]
) -> AbstractContextManager[Any]:
    """A child span of the current one, or a no-op context when tracing is off."""
    tracer = tracing.tracer()
    if tracer is None:
        return nullcontext()
    return tracer.start_as_current_span(name, attributes=attributes)
