"""Prometheus metrics and OpenTelemetry spans for the service loop.

The metric families follow the contract in DESIGN.md. One collector per
``CollectorRegistry`` reads every service's ``IterationStats`` at scrape time, so every
series exists from construction, the loop pays for one lock per iteration instead of a
library call per metric, and ``get_metrics()`` and ``/metrics`` report the same numbers.
Transitions are counted by a listener into a labelled Counter whose children are
resolved once.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Status, StatusCode
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from market_data_services.runtime.breaker import CircuitBreakerState, StateChange
from market_data_services.runtime.ownership import OwnershipStats

logger = logging.getLogger(__name__)

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
_UNKNOWN = object()
_ENV_PROVIDER = bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))
_BUCKET_LABELS = [floatToGoString(b) for b in ITERATION_BUCKETS] + ["+Inf"]  # type: ignore[no-untyped-call]


class IterationStats:
    """The numbers of one service's loop: the one source both ``get_metrics()`` and the
    Prometheus scrape read, so the two can never disagree.

    Every field is guarded by ``lock``. The loop takes it once per iteration (and
    updates the fields inline: this is the hot path); a scrape copies the fields under it
    and formats them outside.
    """

    def __init__(self, recent_errors: int) -> None:
        self.lock = threading.Lock()
        self.iterations = 0
        self.errors = 0
        self.skipped = 0
        self.overruns = 0
        self.last_error_time: float | None = None
        self.last_success_time: float | None = None
        self.recent_errors: deque[dict[str, str]] = deque(maxlen=recent_errors)
        self.duration_sum = 0.0
        self.bucket_counts = [0] * (len(ITERATION_BUCKETS) + 1)  # last one is +Inf
        self.exemplars: list[Exemplar | None] = [None] * (len(ITERATION_BUCKETS) + 1)

    def histogram_buckets(self) -> list[tuple[str, float, Exemplar | None]]:
        """Cumulative buckets for exposition (caller holds ``lock``)."""
        total = 0
        buckets = []
        for label, count, exemplar in zip(
            _BUCKET_LABELS, self.bucket_counts, self.exemplars, strict=True
        ):
            total += count
            buckets.append((label, float(total), exemplar))
        return buckets


def _weak(function: Callable[[], Any]) -> Callable[[], Callable[[], Any] | None]:
    """A reference to ``function`` that does not keep its object alive.

    The registry outlives the services put on it (the default one lives as long as the
    process); holding a service's bound methods strongly would keep every service ever
    built, and its name, on the registry forever.
    """
    if inspect.ismethod(function):
        return weakref.WeakMethod(function)
    return lambda: function


#: is_running, in_progress_seconds, is_stuck, owned_count of a live service.
_Readers = tuple[Callable[[], bool], Callable[[], float], Callable[[], bool], Callable[[], int]]


@dataclass(frozen=True, slots=True)
class _Source:
    stats: IterationStats
    interval_seconds: float
    breaker: CircuitBreaker | None
    is_running: Callable[[], Callable[[], bool] | None]
    in_progress_seconds: Callable[[], Callable[[], float] | None]
    is_stuck: Callable[[], Callable[[], bool] | None]
    ownership: OwnershipStats
    owned_count: Callable[[], Callable[[], int] | None]

    def readers(self) -> _Readers | None:
        """The service's four callables, or None once the service is gone."""
        running, in_progress, stuck = self.is_running(), self.in_progress_seconds(), self.is_stuck()
        owned = self.owned_count()
        if running is None or in_progress is None or stuck is None or owned is None:
            return None
        return running, in_progress, stuck, owned


class _ServiceCollector(Collector):
    """The loop metrics of every service in one registry, read at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] = {}  # guarded by _lock

    def track(self, service: str, source: _Source) -> None:
        """Put ``service`` on the registry; refuse a name a live service already has.

        Two services with one name would share one set of series, and the second would
        silently hide the first. A service that was dropped (garbage collected) frees its
        name, so rebuilding a service in a notebook or a test works.
        """
        for attempt in range(2):
            with self._lock:  # check and claim at once: two racing constructors, one wins
                existing = self._sources.get(service)
                if existing is None or existing.readers() is None:
                    self._sources[service] = source
                    return
            if attempt == 0:
                # The holder may be garbage that only a reference cycle keeps alive:
                # collect once (outside the lock: finalizers run), then ask again.
                gc.collect()
        raise ValueError(
            f"a service named {service!r} is already on this Prometheus registry; "
            f"its series would hide the first one's. Give each service its own "
            f"service_name, or pass each its own registry=CollectorRegistry()"
        )

    def _live_sources(self) -> list[tuple[str, _Source, tuple[Any, ...]]]:
        with self._lock:
            sources = list(self._sources.items())
        live, dead = [], []
        for service, source in sources:
            readers = source.readers()
            if readers is None:
                dead.append((service, source))
            else:
                live.append((service, source, readers))
        if dead:
            with self._lock:
                for service, source in dead:
                    if self._sources.get(service) is source:
                        del self._sources[service]
        return live

    def collect(self) -> Iterator[Metric]:
        labels = ["service"]
        state = GaugeMetricFamily(
            "mds_service_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half_open, 2 open.",
            labels=labels,
        )
        iterations = CounterMetricFamily(
            "mds_service_iterations",
            "Iterations the service loop ran (failed ones included, skipped ones not).",
            labels=labels,
        )
        errors = CounterMetricFamily("mds_service_errors", "Iterations that raised.", labels=labels)
        skipped = CounterMetricFamily(
            "mds_service_iterations_skipped",
            "Iterations skipped because the circuit breaker was open.",
            labels=labels,
        )
        overruns = CounterMetricFamily(
            "mds_service_iteration_overruns",
            "Iterations that ended after the next one was due.",
            labels=labels,
        )
        duration = HistogramMetricFamily(
            "mds_service_iteration_duration_seconds", "Time one iteration took.", labels=labels
        )
        running = GaugeMetricFamily(
            "mds_service_running", "1 while the service's loop thread is alive.", labels=labels
        )
        last_success = GaugeMetricFamily(
            "mds_service_last_success_timestamp_seconds",
            "Unix time of the last iteration that succeeded (0 before the first).",
            labels=labels,
        )
        interval = GaugeMetricFamily(
            "mds_service_interval_seconds",
            "The configured interval between iteration starts.",
            labels=labels,
        )
        stuck = GaugeMetricFamily(
            "mds_service_iteration_stuck",
            "1 while the current iteration has run past its deadline.",
            labels=labels,
        )
        in_progress = GaugeMetricFamily(
            "mds_service_iteration_in_progress_seconds",
            "How long the current iteration has been running (0 between iterations).",
            labels=labels,
        )
        listener_errors = CounterMetricFamily(
            "mds_service_listener_errors",
            "Circuit-breaker listener calls that raised (each was logged).",
            labels=labels,
        )
        owned = GaugeMetricFamily(
            "mds_service_symbols_owned",
            "Symbols this instance works (all configured ones unless shared with others).",
            labels=labels,
        )
        changes = CounterMetricFamily(
            "mds_service_symbol_ownership_changes",
            "Symbols this instance started (acquired) or stopped (released) owning.",
            labels=["service", "change"],
        )
        instances = GaugeMetricFamily(
            "mds_service_instances",
            "Live instances sharing the service's symbols, this one included (1: not shared).",
            labels=labels,
        )
        unowned = GaugeMetricFamily(
            "mds_service_symbols_unowned",
            "Configured symbols no live instance owned at this instance's latest claim.",
            labels=labels,
        )
        unowned_since = GaugeMetricFamily(
            "mds_service_symbol_unowned_since_timestamp_seconds",
            "Unix time since which this instance has seen a configured symbol without an "
            "owner at every claim (0: every symbol has one).",
            labels=labels,
        )
        for service, source, readers in self._live_sources():
            is_running, in_progress_seconds, is_stuck, owned_count = readers
            label = [service]
            breaker = source.breaker
            # Reading the state applies transitions that time caused; the transition
            # counter, collected after this collector, then shows them in this scrape.
            state.add_metric(label, breaker.state.code if breaker else 0)
            listener_errors.add_metric(label, breaker.listener_errors if breaker else 0)
            stats = source.stats
            with stats.lock:
                counts = (stats.iterations, stats.errors, stats.skipped, stats.overruns)
                last = stats.last_success_time or 0.0
                buckets = stats.histogram_buckets()
                duration_sum = stats.duration_sum
            iterations.add_metric(label, counts[0])
            errors.add_metric(label, counts[1])
            skipped.add_metric(label, counts[2])
            overruns.add_metric(label, counts[3])
            duration.add_metric(label, buckets, duration_sum)  # type: ignore[arg-type]
            last_success.add_metric(label, last)
            interval.add_metric(label, source.interval_seconds)
            running.add_metric(label, 1.0 if is_running() else 0.0)
            in_progress.add_metric(label, in_progress_seconds())
            stuck.add_metric(label, 1.0 if is_stuck() else 0.0)
            owned.add_metric(label, owned_count())
            with source.ownership.lock:
                shared = source.ownership.state
                acquired, released = source.ownership.acquired, source.ownership.released
            changes.add_metric([service, "acquired"], acquired)
            changes.add_metric([service, "released"], released)
            instances.add_metric(label, shared.instances)
            unowned.add_metric(label, len(shared.unowned))
            unowned_since.add_metric(label, shared.unowned_since)
        yield from (
            state,
            iterations,
            errors,
            skipped,
            overruns,
            duration,
            running,
            last_success,
            interval,
            stuck,
            in_progress,
            listener_errors,
            owned,
            changes,
            instances,
            unowned,
            unowned_since,
        )


class _Families:
    """The metric objects of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Registered before the transition counter: see _ServiceCollector.collect.
        self.services = _ServiceCollector()
        registry.register(self.services)
        self.transitions = Counter(
            "mds_service_circuit_breaker_transitions",
            "Circuit breaker transitions into each state.",
            ["service", "state"],
            registry=registry,
        )


T = TypeVar("T")

# Guarded by _families_lock: registry -> {family-set factory: its instance in that registry}.
_families_lock = threading.Lock()
_families: weakref.WeakKeyDictionary[CollectorRegistry, dict[object, object]] = (
    weakref.WeakKeyDictionary()
)


def families_for(
    registry: CollectorRegistry | None, factory: Callable[[CollectorRegistry], T]
) -> T:
    """The metric families ``factory`` makes, made once per registry and then shared.

    Prometheus refuses a second family of the same name in one registry, so every
    service, ingest call and feed with the same registry must share one set. ``None``
    is the default registry.
    """
    target = REGISTRY if registry is None else registry
    with _families_lock:
        per_registry = _families.setdefault(target, {})
        families = per_registry.get(factory)
        if families is None:
            families = per_registry[factory] = factory(target)
        return families  # type: ignore[return-value]


class ServiceTelemetry:
    """Puts one service's loop on a registry; its transition children resolved once.

    Raises ValueError when a live service of the same name is already on it.
    """

    def __init__(
        self,
        service: str,
        *,
        stats: IterationStats,
        registry: CollectorRegistry | None = None,
        interval_seconds: float,
        breaker: CircuitBreaker | None,
        is_running: Callable[[], bool],
        in_progress_seconds: Callable[[], float],
        is_stuck: Callable[[], bool],
        ownership: OwnershipStats | None = None,
        owned_count: Callable[[], int] | None = None,
    ) -> None:
        families = families_for(registry, _Families)
        self._transitions = {
            state: families.transitions.labels(service, state.value)
            for state in CircuitBreakerState
        }
        families.services.track(
            service,
            _Source(
                stats,
                interval_seconds,
                breaker,
                _weak(is_running),
                _weak(in_progress_seconds),
                _weak(is_stuck),
                OwnershipStats() if ownership is None else ownership,
                _weak(owned_count or (lambda: 0)),
            ),
        )
        if breaker is not None:
            breaker.add_listener(self.on_transition, synchronous=True)

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
        # get_tracer_provider() looks up an environment variable on every call while no
        # provider is set (about 2 us); the module global answers the same question in
        # nanoseconds. The public call stays the fallback if the global ever moves.
        if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _ENV_PROVIDER:
            return None
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
    """The trace_id/span_id exemplar of a sampled span, for the duration histogram."""
    ctx = span.get_span_context()
    if not ctx.trace_flags.sampled:  # also false for the invalid (no-op) span
        return None
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


def child_span(
    tracing: Tracing, name: str, attributes: dict[str, Any]
) -> AbstractContextManager[Any]:
    """A child span of the current one, or a no-op context when tracing is off."""
    tracer = tracing.tracer()
    if tracer is None:
        return nullcontext()
    return tracer.start_as_current_span(name, attributes=attributes)
