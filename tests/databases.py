"""Database fixtures: every storage test runs on SQLite and on PostgreSQL.

- ``database_url``: a fresh, empty database, once per backend (``[sqlite]``,
  ``[postgresql]``); ``engine``: the same, migrated to the newest schema.
- ``database_factory`` (session scope): ``.url("sqlite" | "postgresql")`` makes further
  fresh databases, for fixtures with a wider scope.

SQLite databases are files under pytest's tmp dir. PostgreSQL databases are created as
``mds_t_<random>`` through the server named by ``MDS_TEST_DATABASE_URL`` (the ``test``
database itself is never written) and dropped ``WITH (FORCE)`` when the scope ends, so
several test runs can share one server. Without that variable, or with the server
down, PostgreSQL tests skip, and under ``CI=true`` they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import Engine, make_url

from market_data_services.storage import create_engine, upgrade
from tests.conftest import unavailable

PG_ENV = "MDS_TEST_DATABASE_URL"
BACKENDS = ("sqlite", "postgresql")


class DatabaseFactory:
    """Makes fresh databases and drops the PostgreSQL ones at ``close()``."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._admin: Engine | None = None
        self._created: list[str] = []
        self._count = 0

    def url(self, backend: str) -> str:
        if backend == "sqlite":
            return self.sqlite_url()
        if backend == "postgresql":
            return self.postgres_url()
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")

    def sqlite_url(self) -> str:
        self._count += 1
        return f"sqlite:///{self._directory / f'db{self._count}.sqlite'}"

    def postgres_url(self) -> str:
        admin = self._admin_engine()
        name = f"mds_t_{secrets.token_hex(6)}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return admin.url.set(database=name).render_as_string(hide_password=False)

    def _admin_engine(self) -> Engine:
        if self._admin is not None:
            return self._admin
        raw = os.environ.get(PG_ENV)
        if not raw:
            unavailable(
                "PostgreSQL",
                f"set {PG_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/test",
            )
        assert raw is not None
        url = make_url(raw)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except sqlalchemy.exc.OperationalError as exc:
            admin.dispose()
            unavailable(
                f"PostgreSQL at {url.render_as_string(hide_password=True)}",
                f"start the server or point {PG_ENV} at one ({type(exc).__name__})",
            )
        self._admin = admin
        return admin

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if self._admin is None or name not in self._created:
            return
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.remove(name)

    def close(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as connection:
            for name in self._created:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()
        self._admin.dispose()
        self._admin = None


def backend_params() -> list[object]:
    """``pytest.param`` per backend, PostgreSQL marked ``postgres``."""
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.close()


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, database_factory: DatabaseFactory) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    url = database_factory.url(backend)
    yield url
    database_factory.drop(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a fresh database migrated to the newest schema."""
    created = create_engine(database_url)
    upgrade(created)
    yield created
    created.dispose()
