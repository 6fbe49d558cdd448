"""OpenTelemetry for ``mds run``, from the standard ``OTEL_*`` variables.

A tracer provider is installed only when spans go somewhere: an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; the exporter
reads its headers, TLS details and timeout from the environment itself) or
``--trace-console`` asks for spans on standard output. Otherwise the API's no-op tracer
stays, and tracing costs next to nothing. ``OTEL_SDK_DISABLED=true`` and
``OTEL_TRACES_EXPORTER=none`` turn it off; the sampler comes from ``OTEL_TRACES_SAMPLER``.

``OTEL_EXPORTER_OTLP_PROTOCOL`` (or ``..._TRACES_PROTOCOL``) picks OTLP/HTTP
(``http/protobuf``, the default) or gRPC (``grpc``, from the ``otlp-grpc`` extra).
A provider someone else installed first (``opentelemetry-instrument``, or the
application embedding us) is used as it is.
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
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider

from market_data_services._version import __version__
from market_data_services.app.config import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "market-data-services"

#: The OTLP protocols we export with; the spec's third, http/json, has no Python exporter.
PROTOCOLS = ("http/protobuf", "grpc")


def configure_tracing(
    *, console: bool = False, environ: Mapping[str, str] | None = None
) -> Any | None:
    """Install a TracerProvider when spans have somewhere to go; return it (or None).

    Returns None, and installs nothing, when tracing is off or a provider was already
    installed (that one is used, and its owner shuts it down). Raises ConfigError for an
    OTLP protocol we cannot export with, naming the extra to install for gRPC.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    found = trace.get_tracer_provider()
    if not isinstance(found, ProxyTracerProvider | NoOpTracerProvider):
        logger.info("tracing.provider_found", extra={"provider": type(found).__name__})
        return None
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    otlp = "otlp" in exporters and bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    console = console or "console" in exporters
    if not (otlp or console):
        return None
    protocol = _protocol(env) if otlp else None
    otlp_exporter = _otlp_exporter(*protocol) if protocol else None

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours is the
    # fallback for the SDK's "unknown_service".
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    if otlp_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(otlp_exporter))
    if console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    logger.info(
        "tracing.configured",
        extra={
            "otlp": protocol[1] if protocol else "off",
            "console": console,
            "service_name": resource.attributes.get("service.name"),
        },
    )
    return provider


def _protocol(env: Mapping[str, str]) -> tuple[str, str]:
    """The variable that names the OTLP protocol, and the protocol (the spec's reading)."""
    key = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    if not env.get(key, "").strip():
        key = "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = env.get(key, "").strip().lower() or "http/protobuf"
    if protocol not in PROTOCOLS:
        raise ConfigError(
            key, f"OTLP protocol {protocol!r} is not supported; valid: {', '.join(PROTOCOLS)}"
        )
    return key, protocol


def _otlp_exporter(key: str, protocol: str) -> SpanExporter:
    """The OTLP span exporter for ``protocol``; it reads its settings from the environment."""
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError as exc:
            raise ConfigError(
                key,
                "grpc needs the gRPC exporter, which is an optional extra: "
                "pip install 'market-data-services[otlp-grpc]' "
                f"(or use http/protobuf) ({exc})",
            ) from exc
        return GrpcSpanExporter()
    return OTLPSpanExporter()


def shutdown_tracing(provider: Any | None, timeout_seconds: float = 5.0) -> None:
    """Flush and stop the provider's span processors (export what is queued)."""
    if provider is None:
        return
    try:
        provider.force_flush(int(timeout_seconds * 1000))
        provider.shutdown()
    except Exception:
        logger.exception("tracing.shutdown_failed")
