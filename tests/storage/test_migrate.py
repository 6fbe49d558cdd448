from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from market_data_services.storage import create_engine, current, metadata, migrate, upgrade
from tests.conftest import dies_with_parent


def test_upgrade_creates_every_table_and_records_the_head(database_url: str) -> None:
    engine = create_engine(database_url)
    assert current(engine) is None
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    revision = current(engine)
    engine.dispose()
    assert {"ticks", "candles", "service_progress", "settings"} <= tables
    assert revision == migrate.head()


def test_migrated_schema_matches_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_upgrade_twice_changes_nothing(engine: Engine) -> None:
    upgrade(engine)
    assert current(engine) == migrate.head()


def test_downgrade_to_base_removes_our_tables(engine: Engine) -> None:
    migrate.downgrade(engine, "base")
    remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert remaining == set()
    assert current(engine) is None


def test_processes_upgrading_at_once_leave_one_schema(database_url: str) -> None:
    command = [sys.executable, "-m", "market_data_services", "db", "upgrade", "--db", database_url]
    processes = [
        subprocess.Popen(
            dies_with_parent(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in processes]
    for process in processes:
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    engine = create_engine(database_url)
    revision = current(engine)
    engine.dispose()
    assert results == [(0, "")] * 3
    assert revision == migrate.head()


def test_revision_chain_is_linear() -> None:
    script = ScriptDirectory.from_config(migrate._config())
    assert len(script.get_heads()) == 1
    assert len(script.get_bases()) == 1
