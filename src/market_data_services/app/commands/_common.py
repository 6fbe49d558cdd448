"""Options and conventions every subcommand shares."""

from __future__ import annotations

import argparse

from sqlalchemy.engine import Engine

from market_data_services.app.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

# The embedded default, a SQLite file in the working directory, is the configuration's.
from market_data_services.app.config import DEFAULT_DATABASE_URL, Config
from market_data_services.storage.engine import create_engine

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_db_option",
    "help_text",
    "open_engine",
]


def help_text(doc: str | None) -> str:
    """A module docstring as ``--help`` shows it: plain text, without reST's double
    backquotes (the docstring keeps them for the API documentation)."""
    return (doc or "").replace("``", "")


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """``--db URL``: overrides ``database.url`` of the configuration."""
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help=(
            "SQLAlchemy database URL (sqlite:///path or postgresql+psycopg://...); "
            "default: database.url from $MDS_DATABASE_URL or the configuration file, "
            f"else {DEFAULT_DATABASE_URL}"
        ),
    )


def open_engine(config: Config) -> Engine:
    """The engine of a one-shot command, on the configured database."""
    return create_engine(config.database.url)
