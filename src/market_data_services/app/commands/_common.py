"""Options and conventions every subcommand shares."""

from __future__ import annotations

import argparse

from sqlalchemy.engine import Engine

# The embedded default, a SQLite file in the working directory, is the configuration's.
from market_data_services.app.config import DEFAULT_DATABASE_URL, Config
from market_data_services.storage.engine import create_engine

EXIT_OK = 0
EXIT_FAILURE = 1  # something failed at run time
EXIT_USAGE = 2  # bad usage, configuration or input file


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
