"""Where the configuration comes from: defaults < TOML file < ``MDS_*`` environment <
flags.

Every key has one environment variable, derived from its path
(``services.candles.interval_seconds`` is ``MDS_SERVICES_CANDLES_INTERVAL_SECONDS``), and
any key can be set from the command line with ``--set KEY=VALUE``. A bad value fails with
the key, the problem and where the value came from::

    services.candles.interval_seconds: must be > 0, got -1 (from MDS_SERVICES_CANDLES_...)

Which services exist, their defaults, their own keys and the symbols they bring come from
the service catalog ``ConfigSource`` is given (``app/catalog.py``), so adding a service
never touches this module.
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
from typing import Any, Protocol

from market_data_services.app.config.model import (
    BreakerConfig,
    Config,
    ConfigError,
    DefaultSymbols,
    ServiceConfig,
)

ENV_PREFIX = "MDS_"


class CatalogEntry(Protocol):
    """What the loader reads of a service's catalog entry (``app.catalog.ServiceEntry``)."""

    @property
    def defaults(self) -> ServiceConfig: ...

    @property
    def options(self) -> type | None: ...

    @property
    def default_symbols(self) -> DefaultSymbols | None: ...


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


def schema(catalog: Mapping[str, CatalogEntry]) -> list[Key]:
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
        catalog: Mapping[str, CatalogEntry],
    ) -> None:
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
        _bring_default_symbols(self.catalog, kwargs)
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


def _bring_default_symbols(catalog: Mapping[str, CatalogEntry], kwargs: dict[str, Any]) -> None:
    """With no symbols configured, an enabled service that brings some (the demo feed)
    sets them; each service it names gets its own share unless configured otherwise."""
    for name, entry in catalog.items():
        brought = entry.default_symbols
        enabled = kwargs["services"].get(name)
        if brought is None or kwargs.get("symbols") or enabled is None or not enabled.enabled:
            continue
        kwargs["symbols"] = brought.symbols
        for other, own in brought.per_service.items():
            service = kwargs["services"].get(other)
            if service is not None and service.symbols is None:
                kwargs["services"][other] = dataclasses.replace(service, symbols=own)


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


__all__ = ["ENV_PREFIX", "CatalogEntry", "ConfigSource", "Key", "Override", "schema"]
