"""``mds run``: start the enabled services and the HTTP server until SIGTERM or SIGINT.

Exit status: 0 after a clean shutdown; 1 when start-up failed (database, migration,
address in use) or a service did not stop within its stop timeout; 2 for bad usage or
configuration; 128 + the signal's number (130 for SIGINT, 143 for SIGTERM) when a second
signal cut the shutdown short.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from prometheus_client import disable_created_metrics

from market_data_services.app.commands._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    help_text,
)
from market_data_services.app.commands._options import add_config_options, config_source
from market_data_services.app.config import ConfigError
from market_data_services.app.logs import configure_logging
from market_data_services.app.runner import Application, StartupError
from market_data_services.app.tracing import configure_tracing, shutdown_tracing
from market_data_services.runtime.events import default_dispatcher

logger = logging.getLogger("market_data_services.app.run")

#: How long shutdown waits for queued spans and breaker notifications.
FLUSH_TIMEOUT_SECONDS = 5.0


class ShutdownSignals:
    """The first SIGTERM/SIGINT asks for a clean shutdown; a second one exits at once."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal_name: str | None = None  # written by the handler (main thread)

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            # No logging here: the main thread may hold the logging lock mid-shutdown.
            os.write(2, f"mds: second {name}, exiting now without a clean shutdown\n".encode())
            os._exit(128 + signum)
        self.signal_name = name
        self.requested.set()


def run(args: argparse.Namespace) -> int:
    try:
        source = config_source(args)
        config = source.load()
    except ConfigError as exc:
        print(f"mds: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    configure_logging(level=config.logging.level, fmt=config.logging.format)
    # The *_created series add one series per counter and histogram child, which
    # Prometheus does not use unless created-timestamp ingestion is switched on.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        provider: Any = configure_tracing(console=config.telemetry.trace_console)
    except ConfigError as exc:  # an OTLP protocol we cannot export with
        print(f"mds: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    signals = ShutdownSignals()
    signals.install()
    app = Application(config, source)
    status = EXIT_OK
    try:
        app.start()
    except StartupError as exc:
        logger.error("mds.start_failed", extra={"error": str(exc)})
        print(f"mds: {exc}", file=sys.stderr)
        status = EXIT_FAILURE
    except Exception as exc:
        logger.exception("mds.start_failed")
        print(f"mds: start-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = EXIT_FAILURE
    if status == EXIT_OK:
        # Event.wait with a timeout, so the signal handler runs promptly on every platform.
        while not signals.requested.wait(1.0):
            pass
        logger.info("mds.stopping", extra={"signal": signals.signal_name})
    clean = app.shutdown()
    shutdown_tracing(provider, FLUSH_TIMEOUT_SECONDS)
    default_dispatcher().shutdown(FLUSH_TIMEOUT_SECONDS)
    if status == EXIT_OK and not clean:
        status = EXIT_FAILURE
    logger.info("mds.stopped", extra={"exit_status": status})
    return status


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the services and the HTTP server (metrics, health) until stopped",
        description=help_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(parser)
    parser.set_defaults(handler=run)
