"""SchemaWatch on real databases: /readyz's view of the schema, and its log lines."""

from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from market_data_services.app.schema_watch import SchemaWatch, schema_condition
from market_data_services.storage import migrate

LOGGER = "market_data_services.app.schema_watch"


def watch_of(engine: Engine, interval: float = 60.0) -> SchemaWatch:
    return SchemaWatch(engine, url="URL", interval_seconds=interval)


def events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_a_schema_that_falls_behind_and_returns_is_logged_once_each_way(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    watch = watch_of(engine)
    watch.check()
    ready, fields = watch.report()
    assert ready
    assert fields["schema"] is True
    assert fields["schema_revision"] == migrate.head()
    assert events(caplog) == []

    migrate.downgrade(engine, "0002")
    for _ in range(3):
        watch.check()
    ready, fields = watch.report()
    assert not ready
    assert fields["schema"] is False
    assert fields["schema_revision"] == "0002"
    assert "run `mds db upgrade --db URL`" in fields["schema_problem"]

    migrate.upgrade(engine)
    watch.check()
    watch.check()
    assert watch.report()[0] is True
    assert "schema_problem" not in watch.report()[1]
    assert events(caplog) == [
        ("ERROR", "database.schema_not_current"),
        ("INFO", "database.schema_current"),
    ]


def test_a_dropped_table_makes_the_schema_not_current(engine: Engine) -> None:
    watch = watch_of(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE sentiment_metrics"))
    watch.check()
    ready, fields = watch.report()
    assert not ready
    assert "lacks the tables sentiment_metrics" in fields["schema_problem"]


def test_before_the_first_read_the_schema_is_not_ready(engine: Engine) -> None:
    assert watch_of(engine).report() == (False, {"schema": False})


def test_the_thread_rereads_the_schema_and_stops_when_asked(engine: Engine) -> None:
    watch = watch_of(engine, interval=0.05)
    watch.check()
    watch.start()
    try:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))
        noticed = threading.Event()
        for _ in range(200):
            if not watch.report()[0]:
                noticed.set()
                break
            noticed.wait(0.05)
        assert noticed.is_set()
        assert watch.report()[1]["schema_revision"] is None
    finally:
        assert watch.stop(5.0)


def test_a_missing_table_error_is_the_schema_condition(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE candles"))
    with pytest.raises(Exception) as caught, engine.connect() as connection:
        connection.execute(text("SELECT * FROM candles"))
    condition = schema_condition(caught.value)
    assert condition is not None
    assert condition.name == "schema_not_current"
    assert "mds db upgrade" in condition.hint
    assert schema_condition(ValueError("bad tick")) is None
