"""The configuration options ``mds run`` and ``mds config show`` share."""

from __future__ import annotations

import argparse

from market_data_services.app.commands._common import add_db_option
from market_data_services.app.config import (
    DEFAULT_LISTEN,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    ConfigSource,
    Override,
)

#: flag attribute -> (config key, flag as written)
_FLAG_KEYS = {
    "db": ("database.url", "--db"),
    "listen": ("http.listen", "--listen"),
    "symbols": ("symbols", "--symbols"),
    "speed": ("services.demo_feed.speed", "--speed"),
    "log_format": ("logging.format", "--log-format"),
    "log_level": ("logging.level", "--log-level"),
}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration file (default: $MDS_CONFIG); env MDS_* and flags override it",
    )
    add_db_option(parser)
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"address of the HTTP server (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--symbols", metavar="LIST", help="comma-separated symbols, e.g. EUR/USD,NZD/USD"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        default=None,
        help="replay the packaged sample data into the database (the demo feed)",
    )
    parser.add_argument(
        "--speed", metavar="X", help="demo replay speed: sample seconds per second (default 1)"
    )
    parser.add_argument("--log-format", choices=LOG_FORMATS, help="text (default) or json")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="default INFO")
    parser.add_argument(
        "--trace-console",
        action="store_true",
        default=None,
        help="print finished OpenTelemetry spans on standard output",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set any configuration key, e.g. --set services.candles.interval_seconds=5",
    )


def overrides(args: argparse.Namespace) -> list[Override]:
    out: list[Override] = []
    for attr, (key, flag) in _FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is not None:
            out.append(Override(key, value, flag))
    if getattr(args, "demo", None):
        out.append(Override("services.demo_feed.enabled", True, "--demo"))
    if getattr(args, "trace_console", None):
        out.append(Override("telemetry.trace_console", True, "--trace-console"))
    for item in getattr(args, "set", []) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("", f"--set expects KEY=VALUE, got {item!r}")
        out.append(Override(key.strip(), value, f"--set {key.strip()}"))
    return out


def config_source(args: argparse.Namespace) -> ConfigSource:
    return ConfigSource(path=getattr(args, "config", None), overrides=overrides(args))
