from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

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
