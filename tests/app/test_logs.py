from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from market_data_services import ThreadedBackgroundService
from market_data_services.app.logs import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_the_event_and_the_extra_fields(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    logger = logging.getLogger("market_data_services.test")
    logger.info("candles.written", extra={"service": "AggregatorService", "symbol": "EUR/USD"})
    try:
        raise ValueError("bad tick")
    except ValueError:
        logger.exception("service.iteration_failed", extra={"service": "AggregatorService"})
    first, second = (json.loads(line) for line in stream.getvalue().splitlines() if line)
    assert first["event"] == "candles.written"
    assert first["service"] == "AggregatorService"
    assert first["symbol"] == "EUR/USD"
    assert first["level"] == "INFO"
    assert first["time"].endswith("Z")
    assert second["level"] == "ERROR"
    assert "ValueError: bad tick" in second["exception"]


def test_text_lines_carry_the_extra_fields_as_key_value(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="text", stream=stream)
    logging.getLogger("x").warning(
        "circuit_breaker.transition", extra={"breaker": "AggregatorService", "reason": "5 fails"}
    )
    line = stream.getvalue().strip()
    assert "WARNING" in line
    assert "circuit_breaker.transition breaker=AggregatorService" in line
    assert 'reason="5 fails"' in line


def test_level_filters_records(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(level="WARNING", fmt="json", stream=stream)
    logging.getLogger("x").info("quiet")
    assert stream.getvalue() == ""


class LogsPerSymbol(ThreadedBackgroundService):
    """Logs one line inside each symbol's span."""

    @property
    def service_name(self) -> str:
        return "LogsPerSymbol"

    def _process_iteration(self) -> None:
        for symbol in self.get_symbols():
            with self.symbol_span(symbol):
                logging.getLogger("market_data_services.test").info(
                    "quotes.read", extra={"symbol": symbol}
                )


def fields_of(fmt: str, line: str) -> dict[str, str]:
    if fmt == "json":
        return {k: str(v) for k, v in json.loads(line).items()}
    return dict(part.split("=", 1) for part in line.split()[3:] if "=" in part)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_lines_logged_inside_a_span_carry_its_trace_and_span_ids(
    restore_logging: None, fmt: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stream = io.StringIO()
    configure_logging(level="INFO", fmt=fmt, stream=stream)
    service = LogsPerSymbol(
        symbols=["EUR/USD", "NZD/USD"],
        registry=CollectorRegistry(),
        tracer=provider.get_tracer("test"),
    )
    logging.getLogger("market_data_services.test").info("before.any_span")
    service.run_once()
    logging.getLogger("market_data_services.test").info("after.the_spans")

    expected = {}
    for span in exporter.get_finished_spans():
        if span.name == "LogsPerSymbol.symbol":
            context = span.get_span_context()
            expected[span.attributes["symbol"]] = {
                "trace_id": f"{context.trace_id:032x}",
                "span_id": f"{context.span_id:016x}",
            }
    assert len(expected) == 2
    inside, outside = {}, []
    for line in stream.getvalue().splitlines():
        fields = fields_of(fmt, line)
        ids = {k: fields[k] for k in ("trace_id", "span_id") if k in fields}
        if "quotes.read" in line:
            inside[fields["symbol"]] = ids
        else:
            outside.append(ids)
    assert inside == expected
    assert outside == [{}, {}]  # before.any_span, after.the_spans


class FailsEveryTime(ThreadedBackgroundService):
    @property
    def service_name(self) -> str:
        return "FailsEveryTime"

    def _process_iteration(self) -> None:
        raise RuntimeError("database is locked")


def test_a_failed_iteration_is_logged_with_the_trace_of_its_iteration_span(
    restore_logging: None,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    service = FailsEveryTime(
        symbols=["EUR/USD"], registry=CollectorRegistry(), tracer=provider.get_tracer("test")
    )
    service.run_once()

    (span,) = [s for s in exporter.get_finished_spans() if s.name == "FailsEveryTime.iteration"]
    (failed,) = [
        json.loads(line)
        for line in stream.getvalue().splitlines()
        if json.loads(line)["event"] == "service.iteration_failed"
    ]
    assert failed["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert failed["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert "RuntimeError: database is locked" in failed["exception"]
