from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from prometheus_client import CollectorRegistry
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from market_data_services import AggregatorService
from market_data_services.runtime import IterationOutcome
from market_data_services.storage import (
    create_engine,
    current,
    metadata,
    migrate,
    schema,
    upgrade,
)
from market_data_services.storage.arrival import ARRIVAL_COLUMN
from market_data_services.storage.progress import write_progress
from tests.conftest import dies_with_parent
from tests.databases import DatabaseFactory


def test_upgrade_creates_every_table_and_records_the_head(database_url: str) -> None:
    engine = create_engine(database_url)
    assert current(engine) is None
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    revision = current(engine)
    engine.dispose()
    assert {"ticks", "candles", "service_progress", "settings"} <= tables
    assert revision == migrate.head()


def _declared(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Everything but PostgreSQL's ``arrival`` columns and their indexes, which the
    metadata does not declare (storage/arrival.py)."""
    undeclared = reflected and compare_to is None and name is not None
    is_arrival = (type_ == "column" and name == ARRIVAL_COLUMN) or (
        type_ == "index" and name is not None and name.endswith(f"_{ARRIVAL_COLUMN}")
    )
    return not (undeclared and is_arrival)


def test_migrated_schema_matches_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": _declared}
        )
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


def test_head_constant_is_the_newest_migration_script() -> None:
    """``migrate.HEAD`` spares commands reading the scripts; a new migration that forgets
    to move it would make every command think a current database is behind."""
    script = ScriptDirectory.from_config(migrate._config())
    assert script.get_current_head() == migrate.HEAD


# -- how current a schema is, and errors that say it is not --------------------------------


def test_schema_status_of_an_empty_database_names_mds_db_upgrade(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        status = migrate.schema_status(engine)
    finally:
        engine.dispose()
    assert status.revision is None
    assert not status.current
    assert status.upgradable
    assert status.problem("URL") == "the database has no schema yet; run `mds db upgrade --db URL`"


def test_schema_status_at_head_is_current(engine: Engine) -> None:
    status = migrate.schema_status(engine)
    assert status.current
    assert status.problem("URL") is None


def test_schema_status_behind_names_both_revisions(engine: Engine) -> None:
    migrate.downgrade(engine, "0002")
    status = migrate.schema_status(engine)
    assert not status.current
    assert status.upgradable
    assert status.problem("URL") == (
        f"the database schema is at revision 0002, this version needs {migrate.head()}; "
        "run `mds db upgrade --db URL`"
    )


def test_schema_status_of_a_newer_revision_says_a_newer_mds_migrated_it(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    status = migrate.schema_status(engine)
    assert not status.upgradable
    problem = status.problem("URL")
    assert problem is not None
    assert "revision 0099, which this version does not know" in problem
    assert "mds db upgrade" not in problem  # it would not help
    with pytest.raises(migrate.SchemaNotCurrentError, match="does not know"):
        migrate.ensure_current(engine)


def test_schema_status_at_head_names_a_dropped_table(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE candles"))
    status = migrate.schema_status(engine)
    assert status.revision == migrate.head()
    assert status.missing_tables == ("candles",)
    assert status.problem("URL") == (
        f"the database schema is at revision {migrate.head()} but lacks the tables candles; "
        "restore them from a backup"
    )


def test_a_query_on_a_dropped_table_or_column_is_a_schema_error(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE candles"))
    for statement in ("SELECT * FROM candles", "SELECT no_such_column FROM ticks"):
        with pytest.raises(DBAPIError) as caught, engine.connect() as connection:
            connection.execute(text(statement))
        assert migrate.is_schema_error(caught.value), statement
    wrapped = RuntimeError("symbol EUR/USD failed")
    wrapped.__cause__ = caught.value
    assert migrate.is_schema_error(wrapped)


def test_other_database_errors_are_not_schema_errors(engine: Engine) -> None:
    with pytest.raises(DBAPIError) as caught, engine.connect() as connection:
        connection.execute(text("SELECT 1/0 FROM ticks WHERE nonsense syntax"))
    assert not migrate.is_schema_error(caught.value)
    with pytest.raises(IntegrityError) as duplicate, engine.begin() as connection:
        row = {"key": "k", "value": "v", "updated_at": 0}
        statement = text(
            "INSERT INTO settings (key, value, updated_at) VALUES (:key, :value, :updated_at)"
        )
        connection.execute(statement, row)
        connection.execute(statement, row)
    assert not migrate.is_schema_error(duplicate.value)
    assert not migrate.is_schema_error(ValueError("no such table in the prose of a message"))


# -- 0004: raw rows on PostgreSQL in arrival (transaction) order ---------------------------------


@pytest.mark.postgres
def test_upgrade_to_arrival_order_resumes_the_candles_where_they_stopped(
    database_factory: DatabaseFactory,
) -> None:
    url = database_factory.url("postgresql")
    engine = create_engine(url)
    try:
        upgrade(engine, "0003")
        minute = 1_709_542_800_000  # 2024-03-04 09:00 UTC
        with engine.begin() as connection:
            for i in range(3):  # one tick a minute; the candles read the first two
                connection.execute(
                    text(
                        "INSERT INTO ticks (symbol, ts, seq, bid, ask) VALUES "
                        "('EUR/USD', :ts, 0, 1.1, 1.1002)"
                    ),
                    {"ts": minute + i * 60_000 + 1_000},
                )
            write_progress(connection, "AggregatorService", "EUR/USD", {"tick_id": 2}, now_ms=0)
        upgrade(engine)
        service = AggregatorService(
            engine,
            symbols=["EUR/USD"],
            wall_clock=lambda: minute / 1000 + 86_400,
            registry=CollectorRegistry(),
        )
        assert service.run_once() is IterationOutcome.SUCCEEDED
        with engine.connect() as connection:
            built = (
                connection.execute(
                    text("SELECT ts_open FROM candles WHERE timeframe = '1m' ORDER BY ts_open")
                )
                .scalars()
                .all()
            )
        # Only the unread minute is built: the read ones are not redone, the unread not lost.
        assert built == [minute + 2 * 60_000]
        migrate.downgrade(engine, "0003")
        with engine.connect() as connection:
            progress = connection.execute(
                text("SELECT value FROM service_progress WHERE key = 'tick_id'")
            ).scalar()
        assert progress == 3
    finally:
        engine.dispose()
        database_factory.drop(url)


# -- 0005: tick ids taken a block at a time on PostgreSQL ----------------------------------------


@pytest.mark.postgres
def test_tick_ids_come_a_block_at_a_time_per_session_and_back_one_by_one_after_downgrade(
    database_factory: DatabaseFactory,
) -> None:
    """Two sessions storing ticks take ids from blocks of their own (a concurrent load
    does not queue for each id); downgraded, ids come one by one again."""
    url = database_factory.url("postgresql")
    engine = create_engine(url)
    insert = text(
        "INSERT INTO ticks (symbol, ts, seq, bid, ask) VALUES ('EUR/USD', :ts, 0, 1.1, 1.2) "
        "RETURNING id"
    )

    def ids_of_two_sessions(first_ts: int) -> tuple[list[int], list[int]]:
        with engine.connect() as one, engine.connect() as two:
            a = [one.execute(insert, {"ts": first_ts + i}).scalar_one() for i in range(2)]
            b = [two.execute(insert, {"ts": first_ts + 10 + i}).scalar_one() for i in range(2)]
            a.append(one.execute(insert, {"ts": first_ts + 20}).scalar_one())
            one.commit()
            two.commit()
        return a, b

    try:
        upgrade(engine)
        mine, theirs = ids_of_two_sessions(1_000)
        assert mine == [mine[0], mine[0] + 1, mine[0] + 2]  # its own block, no gap
        assert abs(theirs[0] - mine[0]) >= schema.TICK_ID_CACHE
        migrate.downgrade(engine, "0004")
        engine.dispose()  # new sessions: the old ones keep what they had taken
        mine, theirs = ids_of_two_sessions(2_000)
        assert theirs[0] == mine[1] + 1 and mine[2] == theirs[1] + 1  # one sequence, in turn
    finally:
        engine.dispose()
        database_factory.drop(url)
