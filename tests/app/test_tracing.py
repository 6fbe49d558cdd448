"""``mds run``'s tracing set-up from the OTEL_* variables, against real exporters."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from prometheus_client import CollectorRegistry

from market_data_services import ThreadedBackgroundService
from market_data_services.app.config import ConfigError
from market_data_services.app.tracing import configure_tracing, shutdown_tracing

GRPC_EXPORTER = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


class Ticking(ThreadedBackgroundService):
    @property
    def service_name(self) -> str:
        return "Ticking"

    def _process_iteration(self) -> None:
        return None


@pytest.fixture
def no_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process where no tracer provider was installed yet, and no OTEL_* variables."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE)
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    yield
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


class GrpcCollector(TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps what it is sent."""

    def __init__(self) -> None:
        # Appended by gRPC's worker threads (list.append is atomic), read once the exporter
        # has had its answer.
        self.requests: list[ExportTraceServiceRequest] = []

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> Any:
        self.requests.append(request)
        return ExportTraceServiceResponse()

    def span_names(self) -> set[str]:
        return {
            span.name
            for request in self.requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        }


@pytest.fixture
def grpc_collector() -> Iterator[tuple[str, GrpcCollector]]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    collector = GrpcCollector()
    add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", collector
    server.stop(grace=None).wait(5)


def test_grpc_protocol_sends_spans_to_an_otlp_grpc_collector(
    no_provider: None,
    grpc_collector: tuple[str, GrpcCollector],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, collector = grpc_collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    provider = configure_tracing()
    assert provider is not None
    service = Ticking(symbols=["EUR/USD"], registry=CollectorRegistry())
    service.run_once()
    shutdown_tracing(provider)
    assert "Ticking.iteration" in collector.span_names()


def test_the_traces_protocol_variable_wins_and_unknown_ones_are_refused(
    no_provider: None,
) -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
    }
    with pytest.raises(ConfigError) as refused:
        configure_tracing(environ=environ)
    assert str(refused.value) == (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: OTLP protocol 'http/json' is not supported; "
        "valid: http/protobuf, grpc"
    )
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"  # none installed


def test_grpc_without_the_extra_makes_mds_run_exit_2_naming_the_extra(tmp_path: Path) -> None:
    # The gRPC exporter made unimportable, as in an install without the otlp-grpc extra.
    script = (
        f"import sys; sys.modules[{GRPC_EXPORTER!r}] = None\n"
        "from market_data_services.app.cli import main\n"
        "sys.exit(main(['run', '--db', 'sqlite:///mds.sqlite']))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MDS_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4317"
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "mds: configuration error: OTEL_EXPORTER_OTLP_PROTOCOL: grpc needs the gRPC exporter, "
        "which is an optional extra: pip install 'market-data-services[otlp-grpc]'"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mds.sqlite").exists()  # refused before anything started


def test_a_provider_installed_before_us_is_used_and_no_second_one_configured(
    no_provider: None, caplog: pytest.LogCaptureFixture
) -> None:
    # What opentelemetry-instrument does before mds's main() runs.
    exporter = InMemorySpanExporter()
    theirs = TracerProvider()
    theirs.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(theirs)
    caplog.set_level(logging.INFO, logger="market_data_services.app.tracing")
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert configure_tracing(console=True, environ=environ) is None
    assert trace.get_tracer_provider() is theirs
    events = [record.getMessage() for record in caplog.records]
    assert events == ["tracing.provider_found"]
    service = Ticking(symbols=["EUR/USD"], registry=CollectorRegistry())
    service.run_once()
    assert [span.name for span in exporter.get_finished_spans()] == ["Ticking.iteration"]


def test_no_endpoint_and_no_console_installs_nothing(no_provider: None) -> None:
    assert configure_tracing(environ={}) is None
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
