from __future__ import annotations

import pytest
from sqlalchemy import inspect

from market_data_services.app.cli import main
from market_data_services.storage import create_engine, migrate


def test_db_upgrade_creates_the_schema_and_current_reports_it(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "current", "--db", database_url]) == 0
    assert "no schema" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", database_url]) == 0
    assert f"to revision {migrate.head()}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", database_url]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["db", "current", "--db", database_url]) == 0
    assert capsys.readouterr().out.strip() == f"{migrate.head()} (head)"
    engine = create_engine(database_url)
    assert "candles" in inspect(engine).get_table_names()
    engine.dispose()


def test_db_upgrade_reads_the_url_from_the_environment(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/env.sqlite"
    monkeypatch.setenv("MDS_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    engine = create_engine(url)
    assert migrate.current(engine) == migrate.head()
    engine.dispose()


def test_db_upgrade_with_an_unsupported_url_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["db", "upgrade", "--db", "mysql://x@y/z"]) == 2
    assert "unsupported database URL scheme 'mysql'" in capsys.readouterr().err


def test_db_upgrade_on_an_unreachable_server_fails_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    assert main(["db", "upgrade", "--db", url]) == 1
    err = capsys.readouterr().err
    assert "database error" in err
    assert len(err.strip().splitlines()) == 1


def test_db_without_an_action_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db"]) == 2
    assert "upgrade" in capsys.readouterr().err
