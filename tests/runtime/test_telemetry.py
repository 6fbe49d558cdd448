"""Prometheus exposition and OpenTelemetry spans of the service loop."""

from __future__ import annotations

import subprocess

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from market_data_services import ThreadedBackgroundService
from market_data_services.runtime.telemetry import ITERATION_BUCKETS, families_for
from tests.conftest import require_executable


class PerSymbol(ThreadedBackgroundService):
    def __init__(self, **kwargs) -> None:
        super().__init__(symbols=["EUR/USD", "NZD/USD"], interval_seconds=5, **kwargs)
        self.fail_on: str | None = None

    @property
    def service_name(self) -> str:
        return "PerSymbol"

    def _process_iteration(self) -> None:
        for symbol in self.get_symbols():
            with self.symbol_span(symbol):
                if symbol == self.fail_on:
                    raise ValueError(f"bad tick for {symbol}")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


def test_each_iteration_is_a_span_with_a_child_per_symbol(registry, tracer, exporter) -> None:
    service = PerSymbol(registry=registry, tracer=tracer)
    service.run_once()
    service.run_once()
    spans = exporter.get_finished_spans()
    iterations = [s for s in spans if s.name == "PerSymbol.iteration"]
    children = [s for s in spans if s.name == "PerSymbol.symbol"]
    assert [s.attributes["mds.iteration"] for s in iterations] == [1, 2]
    assert {s.attributes["mds.service"] for s in iterations} == {"PerSymbol"}
    assert {s.attributes["mds.symbol_count"] for s in iterations} == {2}
    assert [c.attributes["symbol"] for c in children] == ["EUR/USD", "NZD/USD"] * 2
    parent_ids = {s.context.span_id for s in iterations}
    assert {c.parent.span_id for c in children} == parent_ids
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans)


def test_an_exception_is_recorded_on_the_span_with_status_error(registry, tracer, exporter) -> None:
    service = PerSymbol(registry=registry, tracer=tracer)
    service.fail_on = "NZD/USD"
    service.run_once()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("PerSymbol.iteration", "PerSymbol.symbol"):
        span = spans[name]
        assert span.status.status_code is StatusCode.ERROR
        exception = [e for e in span.events if e.name == "exception"]
        assert exception and exception[0].attributes["exception.type"] == "ValueError"
        assert exception[0].attributes["exception.message"] == "bad tick for NZD/USD"


def test_duration_observation_carries_the_trace_id_as_exemplar(registry, tracer, exporter) -> None:
    service = PerSymbol(registry=registry, tracer=tracer)
    service.run_once()
    (iteration,) = [s for s in exporter.get_finished_spans() if s.name.endswith(".iteration")]
    trace_id = format(iteration.context.trace_id, "032x")
    text = generate_openmetrics(registry).decode()
    lines = [
        ln
        for ln in text.splitlines()
        if ln.startswith("mds_service_iteration_duration_seconds_bucket") and "#" in ln
    ]
    assert lines, text
    assert f'trace_id="{trace_id}"' in lines[0]


def test_no_exemplar_and_no_span_without_a_tracer_provider(registry) -> None:
    service = PerSymbol(registry=registry)
    service.run_once()
    text = generate_openmetrics(registry).decode()
    assert "trace_id" not in text
    assert (
        registry.get_sample_value(
            "mds_service_iteration_duration_seconds_count", {"service": "PerSymbol"}
        )
        == 1
    )


def test_a_provider_configured_after_construction_is_used(registry, exporter) -> None:
    service = PerSymbol(registry=registry)  # built while no provider is configured
    service.run_once()
    assert exporter.get_finished_spans() == ()
    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE)
    try:
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        service.run_once()
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("PerSymbol.iteration") == 1


def test_histogram_buckets_span_milliseconds_to_minutes_and_the_intervals() -> None:
    assert ITERATION_BUCKETS[0] == 0.001
    assert ITERATION_BUCKETS[-1] >= 60
    assert {5.0, 30.0, 60.0} <= set(ITERATION_BUCKETS)
    assert list(ITERATION_BUCKETS) == sorted(ITERATION_BUCKETS)


def test_exposition_passes_promtool_check_metrics(registry, tracer) -> None:
    promtool = require_executable("promtool", "prometheus")
    service = PerSymbol(registry=registry, tracer=tracer)
    service.run_once()
    service.fail_on = "EUR/USD"
    service.run_once()
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(registry),
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_openmetrics_exposition_parses_strictly_with_exemplars(registry, tracer) -> None:
    # promtool 2.x reads only the Prometheus text format; the OpenMetrics output (the one
    # with exemplars) is checked with client_python's strict OpenMetrics parser.
    service = PerSymbol(registry=registry, tracer=tracer)
    service.run_once()
    families = {
        f.name: f
        for f in openmetrics_parser.text_string_to_metric_families(
            generate_openmetrics(registry).decode()
        )
    }
    buckets = [
        s
        for s in families["mds_service_iteration_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert any(s.exemplar is not None for s in buckets)
    assert families["mds_service_iterations"].type == "counter"


def test_two_services_share_families_with_their_own_labels(registry) -> None:
    class Other(PerSymbol):
        @property
        def service_name(self) -> str:
            return "Other"

    first = PerSymbol(registry=registry)
    first.run_once()
    second = Other(registry=registry)
    assert registry.get_sample_value("mds_service_iterations_total", {"service": "PerSymbol"}) == 1
    assert registry.get_sample_value("mds_service_iterations_total", {"service": "Other"}) == 0
    assert second.get_metrics()["iteration_count"] == 0


def test_a_second_service_with_the_same_name_on_one_registry_is_refused(registry) -> None:
    first = PerSymbol(registry=registry)
    first.run_once()
    with pytest.raises(ValueError, match="a service named 'PerSymbol' is already on this"):
        PerSymbol(registry=registry)
    # The first one's series are untouched, and another registry takes the name.
    assert registry.get_sample_value("mds_service_iterations_total", {"service": "PerSymbol"}) == 1
    elsewhere = CollectorRegistry()
    other = PerSymbol(registry=elsewhere)
    other.run_once()
    assert elsewhere.get_sample_value("mds_service_iterations_total", {"service": "PerSymbol"}) == 1


def test_a_dropped_service_frees_its_name_and_its_series(registry) -> None:
    first = PerSymbol(registry=registry)
    first.run_once()
    del first
    second = PerSymbol(registry=registry)
    assert registry.get_sample_value("mds_service_iterations_total", {"service": "PerSymbol"}) == 0
    second.run_once()
    assert registry.get_sample_value("mds_service_iterations_total", {"service": "PerSymbol"}) == 1


def test_metric_families_are_made_once_per_registry_and_shared_on_it() -> None:
    made: list[CollectorRegistry] = []

    def things(registry: CollectorRegistry) -> Counter:
        made.append(registry)
        return Counter("mds_test_things", "Things counted by a test.", registry=registry)

    first, second = CollectorRegistry(), CollectorRegistry()
    counter = families_for(first, things)
    assert families_for(first, things) is counter  # a second family would be refused
    assert families_for(second, things) is not counter
    assert made == [first, second]
    counter.inc()
    assert first.get_sample_value("mds_test_things_total") == 1.0
    assert second.get_sample_value("mds_test_things_total") == 0.0
