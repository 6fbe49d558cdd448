"""OpenTelemetry for ``mds run``, from the standard ``OTEL_*`` variables.

A tracer provider is installed only when spans go somewhere: an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; the exporter
reads its headers, protocol details and timeout from the environment itself) or
``--trace-console`` asks for spans on standard output. Otherwise the API's no-op tracer
stays, and tracing costs next to nothing. ``OTEL_SDK_DISABLED=true`` and
``OTEL_TRACES_EXPORTER=none`` turn it off; the sampler comes from ``OTEL_TRACES_SAMPLER``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from market_data_services._version import __version__

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "market-data-services"


def configure_tracing(
    *, console: bool = False, environ: Mapping[str, str] | None = None
) -> Any | None:
    """Install a TracerProvider when spans have somewhere to go; return it (or None)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    otlp = "otlp" in exporters and bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    console = console or "console" in exporters
    if not (otlp or console):
        return None

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours is the
    # fallback for the SDK's "unknown_service".
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    if otlp:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    logger.info(
        "tracing.configured",
        extra={
            "otlp": otlp,
            "console": console,
            "service_name": resource.attributes.get("service.name"),
        },
    )
    return provider


def shutdown_tracing(provider: Any | None, timeout_seconds: float = 5.0) -> None:
    """Flush and stop the provider's span processors (export what is queued)."""
    if provider is None:
        return
    try:
        provider.force_flush(int(timeout_seconds * 1000))
        provider.shutdown()
    except Exception:
        logger.exception("tracing.shutdown_failed")
