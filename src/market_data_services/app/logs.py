"""Logging for ``mds``: text for people, JSON lines for collectors.

Our code logs an event name as the message and its fields as ``extra``
(``logger.info("service.started", extra={"service": ..., "symbol": ...})``); both
formats carry those fields: text as ``key=value`` after the message, JSON as keys of the
object. A line logged inside an OpenTelemetry span also carries ``trace_id`` and
``span_id`` (the W3C hex forms a tracing backend shows), so logs and traces join up.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

from opentelemetry import trace

from market_data_services.timeutil import utc_iso

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def trace_fields() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span; nothing outside a span.

    Read when the line is formatted, which our handler does on the thread that logs, in
    its context (a handler that formats on another thread would need these stamped on
    the record first).
    """
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, the extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            out.setdefault(key, _plain(value))
        for key, ids in trace_fields().items():
            out.setdefault(key, ids)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2025-01-08T10:15:23.123Z INFO  logger event key=value ... trace_id=... span_id=...``."""

    def format(self, record: logging.LogRecord) -> str:
        extra = extra_fields(record)
        for key, ids in trace_fields().items():
            extra.setdefault(key, ids)
        fields = " ".join(f"{k}={_text(v)}" for k, v in extra.items())
        line = (
            f"{utc_iso(record.created)} {record.levelname:<7} {record.name} {record.getMessage()}"
        )
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _text(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return json.dumps(text) if (" " in text or not text or '"' in text) else text


def configure_logging(
    *, level: str = "INFO", fmt: str = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in ``fmt``; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
