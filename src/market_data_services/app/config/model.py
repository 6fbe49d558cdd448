"""The configuration of ``mds run``: a tree of frozen, keyword-only dataclasses, each
checked in ``__post_init__`` (a bad value raises ``ConfigError`` naming its key).

It knows nothing of the service catalog: a service's own keys are a dataclass its
catalog entry names, and ``loader.py`` builds ``Config.services`` from the catalog it is
given.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market_data_services.market.symbols import check_symbol

#: The embedded default: a SQLite file in the working directory.
DEFAULT_DATABASE_URL = "sqlite:///mds.sqlite"

#: The documented port: outside Prometheus's exporter range (9100-9999, now full, with new
#: allocations above 10000) and below Linux's ephemeral ports (32768-60999).
DEFAULT_PORT = 17460
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
MIGRATE_MODES = ("auto", "always", "never")


class ConfigError(ValueError):
    """A configuration value is wrong. ``key`` is its dotted path, ``source`` its origin."""

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        where = f" (from {source})" if source else ""
        super().__init__(f"{key}: {problem}{where}" if key else f"{problem}{where}")


def _check(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(key, problem)


def _positive(value: float, key: str) -> None:
    _check(math.isfinite(value) and value > 0, key, f"must be > 0, got {value:g}")


def _non_negative(value: float, key: str) -> None:
    _check(math.isfinite(value) and value >= 0, key, f"must be >= 0, got {value:g}")


def _one_of(value: str, choices: Sequence[str], key: str) -> None:
    _check(value in choices, key, f"must be one of {', '.join(choices)}; got {value!r}")


# -- the tree ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """Where the market data lives."""

    url: str = DEFAULT_DATABASE_URL
    #: auto: upgrade an embedded SQLite database at start, and refuse to start on a
    #: PostgreSQL one whose schema is not the newest; always: upgrade either at start;
    #: never: refuse to start unless the schema is the newest (run ``mds db upgrade``).
    migrate: str = "auto"
    #: How long a write waits for another connection's lock before failing (SQLite's
    #: busy_timeout, PostgreSQL's lock_timeout).
    busy_timeout_seconds: float = 5.0
    #: PostgreSQL: the longest statement of a service iteration or probe (the server's
    #: statement_timeout); a server that does not answer at all is cut off 1 s later by
    #: the client. One engine serves every service: above any sane statement, below the
    #: 30 s and 60 s intervals. 0: no limit.
    statement_timeout_seconds: float = 20.0
    #: PostgreSQL: opening a connection (whole seconds, at least 2: libpq's rule).
    connect_timeout_seconds: int = 5
    #: PostgreSQL: TCP keepalives, so that an idle connection's dead peer is noticed.
    keepalives_idle_seconds: int = 10
    keepalives_interval_seconds: int = 5
    keepalives_count: int = 3

    def __post_init__(self) -> None:
        _check(
            "://" in self.url, "url", f"must be a SQLAlchemy URL like sqlite:///x, got {self.url!r}"
        )
        _one_of(self.migrate, MIGRATE_MODES, "migrate")
        _non_negative(self.busy_timeout_seconds, "busy_timeout_seconds")
        _non_negative(self.statement_timeout_seconds, "statement_timeout_seconds")
        _check(
            self.connect_timeout_seconds >= 2,
            "connect_timeout_seconds",
            f"must be >= 2 (libpq's minimum), got {self.connect_timeout_seconds}",
        )
        for key in ("keepalives_idle_seconds", "keepalives_interval_seconds", "keepalives_count"):
            value = getattr(self, key)
            _check(value >= 1, key, f"must be >= 1, got {value}")


_HTTP_AUTH_TLS_KEYS = (
    "basic_auth_username",
    "basic_auth_password",
    "basic_auth_password_hash",
    "tls_cert_file",
    "tls_key_file",
)


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    """The HTTP server: /metrics, /healthz, /readyz, /api/health/aggregators."""

    listen: str = DEFAULT_LISTEN
    #: Threads running requests; connections themselves are held by one event loop.
    threads: int = 8
    #: A request's whole head must arrive within this (from connect or the last answer).
    header_deadline_seconds: float = 10.0
    #: Open connections at most; more are refused at once.
    max_connections: int = 512
    #: Longer request lines are answered 414.
    max_request_line_bytes: int = 8192
    #: Larger header fields (all together) are answered 431.
    max_header_bytes: int = 32768
    basic_auth_username: str | None = None
    basic_auth_password: str | None = None
    #: ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` from ``mds config hash-password``.
    basic_auth_password_hash: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    #: A Prometheus exporter-toolkit web configuration file (YAML: tls_server_config,
    #: basic_auth_users), instead of the basic_auth_* and tls_* keys above.
    web_config_file: str | None = None

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        _check(1 <= self.threads <= 256, "threads", f"must be 1..256, got {self.threads}")
        _check(
            0 < self.header_deadline_seconds <= 3600,
            "header_deadline_seconds",
            f"must be > 0 and <= 3600, got {self.header_deadline_seconds}",
        )
        _check(
            1 <= self.max_connections <= 100_000,
            "max_connections",
            f"must be 1..100000, got {self.max_connections}",
        )
        for key in ("max_request_line_bytes", "max_header_bytes"):
            value = getattr(self, key)
            _check(256 <= value <= 1 << 20, key, f"must be 256..1048576, got {value}")
        if self.web_config_file is not None:
            both = [key for key in _HTTP_AUTH_TLS_KEYS if getattr(self, key) is not None]
            _check(
                not both,
                "web_config_file",
                f"set either web_config_file or {', '.join(both)}, not both "
                "(the file holds TLS and basic auth)",
            )
            # Imported only when a file is named: YAML, ssl and bcrypt cost every command
            # that reads the configuration (all of them) ~20 ms.
            from market_data_services.app.webconfig import (  # noqa: PLC0415
                WebConfigError,
                load_web_config,
            )

            try:
                load_web_config(self.web_config_file)
            except WebConfigError as exc:
                raise ConfigError("web_config_file", str(exc)) from None
        user, password, hashed = (
            self.basic_auth_username,
            self.basic_auth_password,
            self.basic_auth_password_hash,
        )
        if user is not None:
            _check(
                ":" not in user and user != "", "basic_auth_username", "must be non-empty, no ':'"
            )
            _check(
                (password is None) != (hashed is None),
                "basic_auth_password",
                "set exactly one of basic_auth_password and basic_auth_password_hash",
            )
        else:
            _check(
                password is None and hashed is None,
                "basic_auth_username",
                "is required when a basic-auth password is set",
            )
        if hashed is not None:
            from market_data_services.app.auth import (  # noqa: PLC0415 - see web_config_file
                parse_password_hash,
            )

            try:
                parse_password_hash(hashed)
            except ValueError as exc:
                raise ConfigError("basic_auth_password_hash", str(exc)) from None
        _check(
            (self.tls_cert_file is None) == (self.tls_key_file is None),
            "tls_key_file",
            "set both tls_cert_file and tls_key_file, or neither",
        )
        for key in ("tls_cert_file", "tls_key_file"):
            path = getattr(self, key)
            if path is not None:
                _check(Path(path).is_file(), key, f"no such file: {path}")

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def tls(self) -> bool:
        if self.web_config_file is not None:
            from market_data_services.app.webconfig import (  # noqa: PLC0415 - see __post_init__
                load_web_config,
            )

            return load_web_config(self.web_config_file).tls is not None
        return self.tls_cert_file is not None


@dataclass(frozen=True, kw_only=True)
class HealthConfig:
    """The rule of /api/health/aggregators (the specification's: running, breaker not
    open, error rate below 5 %), with the error rate taken over a recent window, and how
    often /readyz re-reads the database schema's revision."""

    error_rate_threshold: float = 0.05
    #: Iterations older than this no longer count in the error rate (0: all kept ones).
    error_rate_window_seconds: float = 600.0
    #: The window holds at least this many iterations, however old (at most 1000 are kept).
    error_rate_min_iterations: int = 20
    #: How often the schema's revision is re-read for /readyz (answered from the last read).
    schema_check_interval_seconds: float = 10.0

    def __post_init__(self) -> None:
        _check(
            0 < self.error_rate_threshold <= 1,
            "error_rate_threshold",
            f"must satisfy 0 < x <= 1, got {self.error_rate_threshold:g}",
        )
        _non_negative(self.error_rate_window_seconds, "error_rate_window_seconds")
        _check(
            1 <= self.error_rate_min_iterations <= 1000,
            "error_rate_min_iterations",
            f"must be 1..1000, got {self.error_rate_min_iterations}",
        )
        _positive(self.schema_check_interval_seconds, "schema_check_interval_seconds")


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "text"

    def __post_init__(self) -> None:
        _one_of(self.level, LOG_LEVELS, "level")
        _one_of(self.format, LOG_FORMATS, "format")


@dataclass(frozen=True, kw_only=True)
class TelemetryConfig:
    """OpenTelemetry beyond the standard ``OTEL_*`` variables, which the SDK reads itself."""

    #: Print finished spans on standard output.
    trace_console: bool = False


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """``mds ingest``: how strict loading raw data is."""

    #: Reject crossed quotes and books (ask below bid) instead of keeping and counting
    #: them; ``--reject-crossed`` sets it for one command.
    reject_crossed: bool = False
    #: The most one row may hold, so memory never grows with a file (or a decompression
    #: bomb): a longer line (bytes after decompression, line end included), CSV field
    #: (characters) or side of a book (price levels) is one rejected row, and the rest
    #: of the file is read.
    max_line_bytes: int = 1_048_576
    max_field_chars: int = 65_536
    max_book_levels: int = 10_000

    def __post_init__(self) -> None:
        for key in ("max_line_bytes", "max_field_chars", "max_book_levels"):
            value = getattr(self, key)
            _check(
                not isinstance(value, bool) and isinstance(value, int) and value >= 1,
                key,
                f"must be a whole number >= 1, got {value!r}",
            )


@dataclass(frozen=True, kw_only=True)
class BreakerConfig:
    """Settings of a service's circuit breaker (the specification's defaults)."""

    failure_threshold: int = 5
    timeout_seconds: float = 60.0
    half_open_max_calls: int = 3

    def __post_init__(self) -> None:
        _check(
            self.failure_threshold >= 1,
            "failure_threshold",
            f"must be >= 1, got {self.failure_threshold}",
        )
        _non_negative(self.timeout_seconds, "timeout_seconds")
        _check(
            self.half_open_max_calls >= 1,
            "half_open_max_calls",
            f"must be >= 1, got {self.half_open_max_calls}",
        )


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """What every service has; ``options`` holds its own keys (a dataclass or None)."""

    enabled: bool = True
    interval_seconds: float = 60.0
    #: How long shutdown waits for the iteration in flight.
    stop_timeout_seconds: float = 10.0
    first_start_jitter_seconds: float = 0.0
    #: An iteration running longer is reported stuck (default: 3 intervals).
    stuck_after_seconds: float | None = None
    #: Overrides the top-level ``symbols`` for this service.
    symbols: tuple[str, ...] | None = None
    circuit_breaker: BreakerConfig = field(default_factory=BreakerConfig)
    options: Any = None

    def __post_init__(self) -> None:
        _positive(self.interval_seconds, "interval_seconds")
        _positive(self.stop_timeout_seconds, "stop_timeout_seconds")
        _non_negative(self.first_start_jitter_seconds, "first_start_jitter_seconds")
        if self.stuck_after_seconds is not None:
            _positive(self.stuck_after_seconds, "stuck_after_seconds")
        if self.symbols is not None:
            _check_symbols(self.symbols, "symbols")


@dataclass(frozen=True, kw_only=True)
class Config:
    """The effective configuration of one ``mds run``."""

    #: Symbols every service works on (unless a service sets its own).
    symbols: tuple[str, ...] = ()
    #: How long services keep the symbol list before reading configuration again.
    symbol_cache_ttl_seconds: float = 300.0
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    services: Mapping[str, ServiceConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_symbols(self.symbols, "symbols")
        _non_negative(self.symbol_cache_ttl_seconds, "symbol_cache_ttl_seconds")
        object.__setattr__(self, "services", types.MappingProxyType(dict(self.services)))

    def symbols_for(self, service: str) -> tuple[str, ...]:
        own = self.services[service].symbols if service in self.services else None
        return self.symbols if own is None else own

    def enabled_services(self) -> list[str]:
        return [name for name, svc in self.services.items() if svc.enabled]


def _check_symbols(symbols: tuple[str, ...], key: str) -> None:
    for symbol in symbols:
        try:
            check_symbol(symbol)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
    _check(len(set(symbols)) == len(symbols), key, f"has repeated symbols: {list(symbols)}")


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:17460`` for IPv6) into host and port."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(
            "listen", f"must be HOST:PORT like 127.0.0.1:{DEFAULT_PORT}, got {value!r}"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    _check(0 <= port <= 65535, "listen", f"port must be 0..65535, got {port}")
    return host, port


@dataclass(frozen=True, kw_only=True)
class DefaultSymbols:
    """The symbols an enabled service brings when none are configured: ``symbols`` for
    every service, and ``per_service`` for those named (each unless it sets its own).

    The demo feed's entry brings the sample pairs this way.
    """

    symbols: tuple[str, ...]
    per_service: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_LISTEN",
    "DEFAULT_PORT",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MIGRATE_MODES",
    "BreakerConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DefaultSymbols",
    "HealthConfig",
    "HttpConfig",
    "IngestConfig",
    "LoggingConfig",
    "ServiceConfig",
    "TelemetryConfig",
    "parse_listen",
]
