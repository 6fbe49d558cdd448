"""The ``mds`` command line.

Each subcommand lives in its own module under ``app/commands`` and exposes
``register(subparsers)``; this module only assembles them, so adding a command never
touches another one.

Exit status: 0 success, 1 failure at run time, 2 bad usage, configuration or input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from market_data_services._version import __version__
from market_data_services.app.commands import COMMANDS, EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mds",
        description=(
            "market-data-services: turn raw market data in a SQL database into candles, "
            "book metrics and sentiment signals, observably."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mds {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    result: int = handler(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
