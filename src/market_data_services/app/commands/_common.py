"""Options and conventions every subcommand shares."""

from __future__ import annotations

import argparse
import os

# The embedded default, a SQLite file in the working directory, is the configuration's.
from market_data_services.app.config import DEFAULT_DATABASE_URL

EXIT_OK = 0
EXIT_FAILURE = 1  # something failed at run time
EXIT_USAGE = 2  # bad usage, configuration or input file


def help_text(doc: str | None) -> str:
    """A module docstring as ``--help`` shows it: plain text, without reST's double
    backquotes (the docstring keeps them for the API documentation)."""
    return (doc or "").replace("``", "")


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """``--db URL``, defaulting to ``MDS_DATABASE_URL`` and then the embedded SQLite file."""
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help=(
            "SQLAlchemy database URL (sqlite:///path or postgresql+psycopg://...); "
            f"default: $MDS_DATABASE_URL, else {DEFAULT_DATABASE_URL}"
        ),
    )


def database_url(args: argparse.Namespace) -> str:
    url: str | None = getattr(args, "db", None)
    return url or os.environ.get("MDS_DATABASE_URL") or DEFAULT_DATABASE_URL
