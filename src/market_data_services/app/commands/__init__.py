"""Subcommands of ``mds``: each module has ``register(subparsers)``.

Add a command by writing its module and appending its ``register`` here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from market_data_services.app.commands import backfill, config, db, export, ingest, run, status
from market_data_services.app.commands._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

COMMANDS: list[Register] = [
    run.register,
    status.register,
    config.register,
    db.register,
    ingest.register,
    backfill.register,
    export.register,
]

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "Register"]
