"""Schema migrations: Alembic, configured in code from the revisions inside the package.

Alembic (with mako and pygments) is a fifth of a command's start-up, and most commands
only need to know that the schema is current: ``HEAD`` names the newest revision without
reading the migration scripts, and the database's revision is one plain query. Alembic
is imported when a migration runs or a revision other than ``HEAD`` must be looked up.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from market_data_services.storage.engine import begin_write
from market_data_services.storage.locks import MIGRATE_LOCK_KEY, hold_advisory_lock
from market_data_services.storage.schema import metadata

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

#: The newest revision in ``migrations/versions``; a new migration updates it (a test
#: compares it with the head Alembic finds in the scripts).
HEAD = "0005"
SCRIPT_LOCATION = "market_data_services.storage:migrations"
#: Where Alembic keeps the database's revision (its default name).
VERSION_TABLE = "alembic_version"

# Alembic keeps the running migration in module-level proxies (alembic.op, .context), so
# two migrations in one process must not overlap. Guards every alembic command below.
_ALEMBIC_LOCK = threading.Lock()


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # noqa: PLC0415 - only to migrate

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    # The revisions inside the package do not change while it runs: read them once.
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - only to migrate

    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision shipped in this package."""
    return HEAD


def _known(revision: str) -> bool:
    from alembic.util import CommandError  # noqa: PLC0415 - only to migrate

    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def _read_revision(connection: Connection) -> str | None:
    """The revision in the version table, or None when it is missing or empty.

    Alembic's ``MigrationContext.get_current_revision`` answers the same (one row; our
    migrations never branch) but costs importing Alembic.
    """
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return _version_row(connection)


def _version_row(connection: Connection) -> str | None:
    revision = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    return None if revision is None else str(revision)


def current(engine: Engine) -> str | None:
    """The database's revision, or None for a database never migrated."""
    with engine.connect() as connection:
        return _read_revision(connection)


class SchemaNotCurrentError(RuntimeError):
    """The database's schema is older (or newer) than this package's."""


@dataclass(frozen=True, kw_only=True)
class SchemaStatus:
    """The database's schema compared with the one this package needs."""

    revision: str | None  # the database's; None when it was never migrated
    head: str
    #: Tables of the newest schema the database lacks although it is at ``head``
    #: (dropped by hand: ``mds db upgrade`` cannot bring them back).
    missing_tables: tuple[str, ...] = ()

    @property
    def current(self) -> bool:
        return self.revision == self.head and not self.missing_tables

    @property
    def upgradable(self) -> bool:
        """Whether ``mds db upgrade`` makes it current: never migrated, or behind."""
        return self.revision is None or (self.revision != self.head and _known(self.revision))

    def problem(self, url: str) -> str | None:
        """What is wrong, and what to run, in one line; None when the schema is current."""
        if self.revision is None:
            return f"the database has no schema yet; run `mds db upgrade --db {url}`"
        if self.revision != self.head:
            if not _known(self.revision):
                return (
                    f"the database schema is at revision {self.revision}, which this version "
                    f"does not know (its newest is {self.head}): a newer mds migrated it; "
                    f"run that version"
                )
            return (
                f"the database schema is at revision {self.revision}, this version needs "
                f"{self.head}; run `mds db upgrade --db {url}`"
            )
        if self.missing_tables:
            return (
                f"the database schema is at revision {self.head} but lacks the tables "
                f"{', '.join(self.missing_tables)}; restore them from a backup"
            )
        return None


def schema_status(engine: Engine) -> SchemaStatus:
    """Read the database's revision and, at head, which of our tables it lacks.

    Two small queries on one connection (the table names, then the version row), cheap
    enough to repeat every few seconds; Alembic's MigrationContext is not used here, as it
    logs two INFO lines each time it is set up.
    """
    newest = head()
    with engine.connect() as connection:
        present = set(inspect(connection).get_table_names())
        revision = None
        if VERSION_TABLE in present:
            revision = _version_row(connection)
    missing: tuple[str, ...] = ()
    if revision == newest:
        missing = tuple(name for name in metadata.tables if name not in present)
    return SchemaStatus(revision=revision, head=newest, missing_tables=missing)


def ensure_current(engine: Engine, *, upgrade_sqlite: bool = True) -> None:
    """Make sure the schema is the newest before work starts.

    An embedded SQLite database is brought up to date on the spot (it belongs to this
    program). A PostgreSQL database is shared, so migrating it is the operator's step:
    when it is behind, this raises with the command to run.
    """
    revision = current(engine)
    newest = head()
    if revision == newest:
        return
    if (
        upgrade_sqlite
        and engine.dialect.name == "sqlite"
        and (revision is None or _known(revision))
    ):
        upgrade(engine)
        return
    status = SchemaStatus(revision=revision, head=newest)
    raise SchemaNotCurrentError(status.problem(engine.url.render_as_string(hide_password=True)))


# PostgreSQL's SQLSTATEs for a missing relation and a missing column.
_PG_UNDEFINED = frozenset({"42P01", "42703"})
# SQLite's messages for the same.
_SQLITE_UNDEFINED = ("no such table", "no such column", "has no column named")


def is_schema_error(error: BaseException) -> bool:
    """Whether ``error``, or an exception it was raised from, says the schema is missing
    or behind: a table or column does not exist, on either database."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, SchemaNotCurrentError):
            return True
        if isinstance(cause, DBAPIError):
            original = cause.orig
            if getattr(original, "sqlstate", None) in _PG_UNDEFINED:
                return True
            if isinstance(original, sqlite3.OperationalError) and any(
                words in str(original) for words in _SQLITE_UNDEFINED
            ):
                return True
        cause = cause.__cause__ or cause.__context__
    return False


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default); safe to run again.

    Several processes may call it at once: each migration runs in one transaction that
    holds the database's write lock (SQLite) or an advisory lock (PostgreSQL), so the
    first one migrates and the others find the work done.
    """
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to ``revision`` (``base`` drops every table we made)."""
    _run(engine, "downgrade", revision)


def _run(engine: Engine, name: str, revision: str) -> None:
    from alembic import command  # noqa: PLC0415 - only to migrate

    action: Callable[[Config, str], None] = getattr(command, name)
    with _ALEMBIC_LOCK, begin_write(engine) as connection:
        # Two processes starting at once on PostgreSQL migrate one after the other.
        hold_advisory_lock(connection, MIGRATE_LOCK_KEY)
        action(_config(connection), revision)


__all__ = [
    "HEAD",
    "SCRIPT_LOCATION",
    "SchemaNotCurrentError",
    "SchemaStatus",
    "current",
    "downgrade",
    "ensure_current",
    "head",
    "is_schema_error",
    "schema_status",
    "upgrade",
]
