"""Schema migrations: Alembic, configured in code from the revisions inside the package."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from market_data_services.storage.engine import begin_write

SCRIPT_LOCATION = "market_data_services.storage:migrations"

# One advisory-lock key for "migrating this database", so two processes starting at the
# same time on PostgreSQL run the migrations one after the other instead of racing.
_PG_LOCK_KEY = zlib.crc32(b"market_data_services.migrate")
# Alembic keeps the running migration in module-level proxies (alembic.op, .context), so
# two migrations in one process must not overlap. Guards every alembic command below.
_ALEMBIC_LOCK = threading.Lock()


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision shipped in this package."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None, "the package ships no migrations"
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision, or None for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class SchemaNotCurrentError(RuntimeError):
    """The database's schema is older (or newer) than this package's."""


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
    if upgrade_sqlite and engine.dialect.name == "sqlite":
        upgrade(engine)
        return
    url = engine.url.render_as_string(hide_password=True)
    if revision is None:
        raise SchemaNotCurrentError(
            f"the database has no schema yet; run `mds db upgrade --db {url}`"
        )
    raise SchemaNotCurrentError(
        f"the database schema is at revision {revision}, this version needs {newest}; "
        f"run `mds db upgrade --db {url}`"
    )


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default); safe to run again.

    Several processes may call it at once: each migration runs in one transaction that
    holds the database's write lock (SQLite) or an advisory lock (PostgreSQL), so the
    first one migrates and the others find the work done.
    """
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to ``revision`` (``base`` drops every table we made)."""
    _run(engine, command.downgrade, revision)


def _run(engine: Engine, action: Callable[[Config, str], None], revision: str) -> None:
    with _ALEMBIC_LOCK, begin_write(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        action(_config(connection), revision)


__all__ = [
    "SCRIPT_LOCATION",
    "SchemaNotCurrentError",
    "current",
    "downgrade",
    "ensure_current",
    "head",
    "upgrade",
]
