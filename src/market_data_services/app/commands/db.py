"""``mds db upgrade`` and ``mds db current``: the schema of a database.

The database is ``database.url`` of the configuration (``--config``/``$MDS_CONFIG``,
``MDS_DATABASE_URL``), unless ``--db`` names another, as for every command.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from market_data_services.app.commands._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_db_option,
    open_engine,
)
from market_data_services.app.commands._options import add_config_file_option, load_config
from market_data_services.storage import migrate


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("db", help="create or update the database schema")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION")
    upgrade = actions.add_parser(
        "upgrade", help="create the tables or bring them to the newest revision"
    )
    add_config_file_option(upgrade)
    add_db_option(upgrade)
    upgrade.add_argument(
        "--revision", default="head", help="target revision (default: head, the newest)"
    )
    upgrade.set_defaults(handler=_upgrade)
    current = actions.add_parser("current", help="print the database's schema revision")
    add_config_file_option(current)
    add_db_option(current)
    current.set_defaults(handler=_current)
    parser.set_defaults(handler=lambda _args: _usage(parser))


def describe_db_error(exc: BaseException) -> str:
    """The driver's message on one line, without SQLAlchemy's statement and help link."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _engine(name: str, args: argparse.Namespace) -> Engine | None:
    """The configured database's engine, or None after printing why there is none."""
    config = load_config(name, args)
    if config is None:
        return None
    try:
        return open_engine(config)
    except ValueError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return None


def _upgrade(args: argparse.Namespace) -> int:
    engine = _engine("mds db upgrade", args)
    if engine is None:
        return EXIT_USAGE
    try:
        before = migrate.current(engine)
        migrate.upgrade(engine, args.revision)
        after = migrate.current(engine)
    except SQLAlchemyError as exc:
        print(f"mds db upgrade: database error: {describe_db_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        engine.dispose()
    if before == after:
        print(f"database is at revision {after} (up to date)")
    else:
        print(f"database upgraded from {before or 'empty'} to revision {after}")
    return EXIT_OK


def _current(args: argparse.Namespace) -> int:
    engine = _engine("mds db current", args)
    if engine is None:
        return EXIT_USAGE
    try:
        revision = migrate.current(engine)
    except SQLAlchemyError as exc:
        print(f"mds db current: database error: {describe_db_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        engine.dispose()
    head = migrate.head()
    if revision is None:
        print(f"no schema (run `mds db upgrade`; newest revision is {head})")
    elif revision == head:
        print(f"{revision} (head)")
    else:
        print(f"{revision} (behind: newest is {head}; run `mds db upgrade`)")
    return EXIT_OK
