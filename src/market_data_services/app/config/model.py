"""Configuration of ``mds run``: defaults < TOML file < ``MDS_*`` environment < flags.

The result is a tree of frozen, keyword-only dataclasses, each checked in
``__post_init__``. Every key has one environment variable, derived from its path
(``services.candles.interval_seconds`` is ``MDS_SERVICES_CANDLES_INTERVAL_SECONDS``),
and any key can be set from the command line with ``--set KEY=VALUE``. A bad value fails
with the key, the problem and where the value came from::

    services.candles.interval_seconds: must be > 0, got -1 (from MDS_SERVICES_CANDLES_...)

Which services exist, their default intervals and their own keys come from the service
catalog (``app/services.py``), so adding a service never touches this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from market_data_services.app.auth import parse_password_hash
from market_data_services.demo import DEMO_SERVICE_SYMBOLS, DEMO_SYMBOLS
from market_data_services.market.symbols import check_symbol

if TYPE_CHECKING:
    from market_data_services.app.catalog import ServiceEntry

#: The embedded default: a SQLite file in the working directory.
DEFAULT_DATABASE_URL = "sqlite:///mds.sqlite"

#: The documented port: outside Prometheus's exporter range (9100-9999, now full, with new
#: allocations above 10000) and below Linux's ephemeral ports (32768-60999).
DEFAULT_PORT = 17460
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
ENV_PREFIX = "MDS_"
MASK = "***"

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


@dataclass(frozen=True, kw_only=True)
class HttpConfig:
    """The HTTP server: /metrics, /healthz, /readyz, /api/health/aggregators."""

    listen: str = DEFAULT_LISTEN
    threads: int = 8
    basic_auth_username: str | None = None
    basic_auth_password: str | None = None
    #: ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` from ``mds config hash-password``.
    basic_auth_password_hash: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        _check(1 <= self.threads <= 256, "threads", f"must be 1..256, got {self.threads}")
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


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc[2]}"))


# -- the schema: every leaf key, its type, its environment variable -----------------------


@dataclass(frozen=True)
class Key:
    """One leaf setting."""

    path: tuple[str, ...]
    type: Any

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return ENV_PREFIX + "_".join(self.path).upper()


def _fields(cls: type) -> Iterator[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f.name, hints[f.name]


def _leaf_keys(cls: type, prefix: tuple[str, ...]) -> Iterator[Key]:
    for name, hint in _fields(cls):
        if name in ("services", "options"):
            continue
        if dataclasses.is_dataclass(hint):
            yield from _leaf_keys(typing.cast(type, hint), (*prefix, name))
        else:
            yield Key((*prefix, name), hint)


def schema(catalog: Mapping[str, ServiceEntry]) -> list[Key]:
    """Every settable key, in display order."""
    keys = list(_leaf_keys(Config, ()))
    for name, entry in catalog.items():
        keys.extend(_leaf_keys(ServiceConfig, ("services", name)))
        if entry.options is not None:
            keys.extend(_leaf_keys(entry.options, ("services", name)))
    return keys


# -- parsing values ------------------------------------------------------------------------


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def _type_name(hint: Any) -> str:
    inner, _ = _unwrap_optional(hint)
    if typing.get_origin(inner) is tuple:
        name = "a list of strings"
    else:
        name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[inner]
    return name


def _from_text(text: str, hint: Any, key: str) -> Any:
    """Parse an environment variable or flag value for a key of type ``hint``."""
    inner, optional = _unwrap_optional(hint)
    text = text.strip()
    if optional and text == "":
        return None
    if inner is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, f"must be true or false, got {text!r}")
    if inner is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(key, f"must be an integer, got {text!r}") from None
    if inner is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(key, f"must be a number, got {text!r}") from None
    if typing.get_origin(inner) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def _typed(value: Any, hint: Any, key: str) -> Any:
    """Check a TOML (or already typed) value against ``hint``; convert lists to tuples."""
    inner, optional = _unwrap_optional(hint)
    if value is None and optional:
        return None
    ok: bool
    if inner is bool:
        ok = isinstance(value, bool)
    elif inner is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif inner is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
            if math.isnan(value):
                raise ConfigError(key, "must be a number, got nan")
    elif typing.get_origin(inner) is tuple:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        if ok:
            value = tuple(value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(key, f"must be {_type_name(hint)}, got {value!r}")
    return value


# -- layers and building -------------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    """One value from the environment or a flag, before parsing."""

    key: str  # dotted path
    value: Any  # text, or an already typed value (a store_true flag)
    source: str  # "MDS_LISTEN", "--listen", ...


@dataclass
class _Layers:
    """The merged raw tree and where each leaf came from."""

    tree: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def put(self, path: tuple[str, ...], value: Any, source: str) -> None:
        node = self.tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(path[:-1]), "must be a table", source)
            node = child
        node[path[-1]] = value
        self.origins[".".join(path)] = source


def _flatten(
    tree: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, (*prefix, name))
        else:
            yield (*prefix, name), value


def _closest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class ConfigSource:
    """Where the configuration comes from; ``load()`` reads it all again.

    Services get their symbols through ``load()``, so an edit of the file (or the symbol
    list) takes effect within the symbol cache's TTL, without a restart.
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Sequence[Override] = (),
        catalog: Mapping[str, ServiceEntry] | None = None,
    ) -> None:
        if catalog is None:
            # The catalog imports this module for its types: import it on first use.
            from market_data_services.app.catalog import SERVICES  # noqa: PLC0415

            catalog = SERVICES
        self.catalog = catalog
        self.environ = os.environ if environ is None else environ
        if path is None and self.environ.get("MDS_CONFIG"):
            path = self.environ["MDS_CONFIG"]
        self.path = None if path is None else Path(path)
        self.overrides = tuple(overrides)
        self.keys = {key.dotted: key for key in schema(catalog)}

    def load(self) -> Config:
        layers = _Layers()
        if self.path is not None:
            self._read_file(layers)
        for key in self.keys.values():
            if key.env in self.environ:
                try:
                    value = _from_text(self.environ[key.env], key.type, key.dotted)
                except ConfigError as exc:
                    raise ConfigError(exc.key, exc.problem, key.env) from None
                layers.put(key.path, value, key.env)
        for override in self.overrides:
            key = self._key(override.key, override.source)
            value = override.value
            if isinstance(value, str):
                try:
                    value = _from_text(value, key.type, key.dotted)
                except ConfigError as exc:
                    raise ConfigError(exc.key, exc.problem, override.source) from None
            layers.put(key.path, value, override.source)
        config = self._build(layers)
        return config

    def origins(self) -> dict[str, str]:
        """Where each set key came from (for ``mds config show --origins``)."""
        layers = _Layers()
        if self.path is not None:
            self._read_file(layers)
        for key in self.keys.values():
            if key.env in self.environ:
                layers.origins[key.dotted] = key.env
        for override in self.overrides:
            layers.origins[override.key] = override.source
        return layers.origins

    def _key(self, dotted: str, source: str) -> Key:
        key = self.keys.get(dotted)
        if key is None:
            raise ConfigError(dotted, f"unknown key{_closest(dotted, list(self.keys))}", source)
        return key

    def _read_file(self, layers: _Layers) -> None:
        assert self.path is not None
        source = str(self.path)
        try:
            with self.path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError("", f"config file not found: {self.path}") from None
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {self.path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{self.path}: invalid TOML: {exc}") from None
        services = data.get("services", {})
        if isinstance(services, dict):
            for name in services:
                if name not in self.catalog:
                    valid = ", ".join(self.catalog)
                    raise ConfigError(
                        f"services.{name}", f"unknown service; valid: {valid}", source
                    )
        for path, value in _flatten(data):
            dotted = ".".join(path)
            key = self._key(dotted, source)
            try:
                layers.put(key.path, _typed(value, key.type, dotted), source)
            except ConfigError as exc:
                raise ConfigError(exc.key, exc.problem, source) from None

    def _build(self, layers: _Layers) -> Config:
        tree = layers.tree
        kwargs: dict[str, Any] = {}
        for name, hint in _fields(Config):
            if name == "services":
                kwargs[name] = {
                    svc: self._build_service(svc, tree.get("services", {}).get(svc, {}), layers)
                    for svc in self.catalog
                }
            elif dataclasses.is_dataclass(hint):
                kwargs[name] = _section(
                    typing.cast(type, hint), tree.get(name, {}), (name,), layers
                )
            elif name in tree:
                kwargs[name] = _typed(tree[name], hint, name)
        demo = kwargs["services"].get("demo_feed")
        if not kwargs.get("symbols") and demo is not None and demo.enabled:
            kwargs["symbols"] = DEMO_SYMBOLS
            # Each service gets the demo symbols it has data for (no candles for the book
            # stream's symbol, no books for the tick pairs), unless configured otherwise.
            for name, own in DEMO_SERVICE_SYMBOLS.items():
                service = kwargs["services"].get(name)
                if service is not None and service.symbols is None:
                    kwargs["services"][name] = dataclasses.replace(service, symbols=own)
        config: Config = _construct(Config, kwargs, (), layers)
        return config

    def _build_service(self, name: str, raw: Mapping[str, Any], layers: _Layers) -> ServiceConfig:
        entry = self.catalog[name]
        prefix = ("services", name)
        common = {n for n, _ in _fields(ServiceConfig)}
        own = {k: v for k, v in raw.items() if k not in common}
        options = None
        if entry.options is not None:
            options = _section(entry.options, own, prefix, layers)
        kwargs: dict[str, Any] = dataclasses.asdict(entry.defaults)
        kwargs.pop("options")
        kwargs["circuit_breaker"] = _section(
            BreakerConfig,
            {
                **dataclasses.asdict(entry.defaults.circuit_breaker),
                **raw.get("circuit_breaker", {}),
            },
            (*prefix, "circuit_breaker"),
            layers,
        )
        for key, value in raw.items():
            if key in common and key != "circuit_breaker":
                kwargs[key] = value
        kwargs["options"] = options
        service: ServiceConfig = _construct(ServiceConfig, kwargs, prefix, layers)
        return service


def _section(cls: type, raw: Mapping[str, Any], prefix: tuple[str, ...], layers: _Layers) -> Any:
    kwargs: dict[str, Any] = {}
    for name, hint in _fields(cls):
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _section(
                typing.cast(type, hint), raw.get(name, {}), (*prefix, name), layers
            )
        elif name in raw:
            kwargs[name] = raw[name]
    return _construct(cls, kwargs, prefix, layers)


def _construct(cls: type, kwargs: dict[str, Any], prefix: tuple[str, ...], layers: _Layers) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        dotted = ".".join((*prefix, exc.key)) if exc.key else ".".join(prefix)
        raise ConfigError(dotted, exc.problem, exc.source or layers.origins.get(dotted)) from None
    except TypeError as exc:  # a value of the wrong type reached a check
        raise ConfigError(".".join(prefix), str(exc)) from None


# -- showing it ----------------------------------------------------------------------------

_SECRET_KEYS = ("basic_auth_password", "basic_auth_password_hash")


def to_tree(config: Config, *, masked: bool = True) -> dict[str, Any]:
    """The configuration as a nested dict of plain values, secrets masked."""

    def plain(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name == "options":
                if value is not None:
                    out.update(plain(value))
                continue
            if dataclasses.is_dataclass(value):
                out[f.name] = plain(value)
            elif isinstance(value, Mapping):
                out[f.name] = {k: plain(v) for k, v in value.items()}
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            elif masked and f.name in _SECRET_KEYS and value is not None:
                out[f.name] = MASK
            elif masked and f.name == "url" and isinstance(value, str):
                out[f.name] = mask_url(value)
            else:
                out[f.name] = value
        return out

    return plain(config)


def to_toml(tree: Mapping[str, Any]) -> str:
    """Write a nested dict of str/int/float/bool/list/None as TOML (None as a comment)."""
    lines: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'

    def table(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        leaves = [(k, v) for k, v in node.items() if not isinstance(v, Mapping)]
        if path and leaves:
            lines.append("")
            lines.append(f"[{'.'.join(path)}]")
        for key, value in leaves:
            if value is None:
                lines.append(f"# {key} = (not set)")
            else:
                lines.append(f"{key} = {scalar(value)}")
        for key, value in node.items():
            if isinstance(value, Mapping):
                table(value, (*path, key))

    table(tree, ())
    return "\n".join(lines).lstrip("\n") + "\n"
