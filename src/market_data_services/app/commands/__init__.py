"""Subcommands of ``mds``: each module here has ``register(subparsers)``.

Add a command by writing its module (``app/commands/export.py`` with
``register(subparsers)``) and adding one line to ``COMMANDS`` below: its name and the
one-line summary ``mds --help`` lists. The module is imported only when its command
runs (or its ``--help`` is asked for), so a command may import whatever it needs at
the top of its module without slowing down the others or ``mds --version``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILURE = 1  # something failed at run time
EXIT_USAGE = 2  # bad usage, configuration or input file

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


class Command:
    """One ``mds`` subcommand: its name, the summary the top-level help lists, and the
    module whose ``register(subparsers)`` builds its parser (default:
    ``market_data_services.app.commands.<name>``).

    A plain class, not a dataclass: ``dataclasses`` imports ``inspect``, a tenth of what
    ``mds --version`` would otherwise import.
    """

    __slots__ = ("module", "name", "summary")

    def __init__(self, *, name: str, summary: str, module: str = "") -> None:
        self.name = name
        self.summary = summary
        self.module = module

    def __repr__(self) -> str:
        return f"Command(name={self.name!r}, module={self.module_name!r})"

    @property
    def module_name(self) -> str:
        return self.module or f"{__name__}.{self.name}"

    def load(self) -> Register:
        """The command's ``register``, importing its module (and what that imports)."""
        register: Register = importlib.import_module(self.module_name).register
        return register


COMMANDS: tuple[Command, ...] = (
    Command(
        name="run", summary="run the services and the HTTP server (metrics, health) until stopped"
    ),
    Command(name="status", summary="show a running instance's services from its health endpoint"),
    Command(name="config", summary="show the effective configuration"),
    Command(name="db", summary="create or update the database schema"),
    Command(name="ingest", summary="load raw market data into the database"),
    Command(
        name="backfill",
        summary="build candles, book metrics and sentiment metrics for the stored history",
    ),
    Command(
        name="export",
        summary=(
            "write candles, book metrics or sentiment of a symbol to CSV, JSON lines or Parquet"
        ),
    ),
)

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "Command", "Register"]
