"""Configuration from the command line: every command reads the same sources.

``--config FILE`` (else ``$MDS_CONFIG``), the ``MDS_*`` environment and the command's
flags go through one ``ConfigSource``, so defaults < file < environment < flags holds for
``run``, ``config show``, ``db``, ``ingest``, ``backfill`` and ``status`` alike. A command
turns its flags into ``Override`` values of the keys they stand for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from market_data_services.app.catalog import catalog
from market_data_services.app.commands._common import add_db_option
from market_data_services.app.config import (
    DEFAULT_LISTEN,
    LOG_FORMATS,
    LOG_LEVELS,
    Config,
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
    "web_config_file": ("http.web_config_file", "--web.config.file"),
}


def add_config_file_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``, the configuration every command reads."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration file (default: $MDS_CONFIG); env MDS_* and flags override it",
    )


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``mds run`` and ``mds config show``."""
    add_config_file_option(parser)
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
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="Prometheus exporter-toolkit web config (TLS, basic_auth_users), "
        "instead of the http.tls_*/basic_auth_* keys",
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


def config_source(args: argparse.Namespace, extra: Sequence[Override] = ()) -> ConfigSource:
    """The file, environment and flags of ``args``; ``extra`` are a command's own flags."""
    return ConfigSource(
        path=getattr(args, "config", None),
        overrides=[*overrides(args), *extra],
        catalog=catalog(),
    )


def load_config(
    name: str, args: argparse.Namespace, extra: Sequence[Override] = ()
) -> Config | None:
    """The effective configuration of a command, or None after printing why it is bad
    (the command then exits 2)."""
    try:
        return config_source(args, extra).load()
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        return None
