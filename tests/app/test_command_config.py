"""Every command reads the same configuration: defaults < file < MDS_* < flags.

Each test runs the real CLI in an empty working directory with a configuration file that
names a database elsewhere, and checks that the rows land there and that no
``./mds.sqlite`` (the built-in default) appears.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Table, func, inspect, select

from market_data_services.app.cli import main
from market_data_services.app.server import HttpServer, make_app
from market_data_services.storage import (
    candles,
    create_engine,
    dom_snapshots,
    migrate,
    sentiment_readings,
    settings,
    ticks,
)
from tests.app.test_server import make_certificate
from tests.databases import DatabaseFactory
from tests.e2e.mds_process import MdsProcess

#: 2023-11-14T22:13:20Z and the minutes before it: well in the past, after 1990.
T0 = 1_699_999_000_000


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory, and an environment without MDS_* settings."""
    for name in list(os.environ):
        if name.startswith("MDS_") and name not in ("MDS_TEST_DATABASE_URL", "MDS_SHARED_DATA"):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    assert not (work / "mds.sqlite").exists(), "the default ./mds.sqlite was used"


def sqlite_url(tmp_path: Path, name: str = "configured.sqlite") -> str:
    return f"sqlite:///{tmp_path / name}"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mds.toml"
    path.write_text(text)
    return path


def count(url: str, table: Table) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            value: int = connection.execute(select(func.count()).select_from(table)).scalar_one()
    finally:
        engine.dispose()
    return value


def tick_file(tmp_path: Path) -> Path:
    rows = "".join(
        f"{T0 + i * 20_000},{1.1 + i / 1e4:.5f},{1.1002 + i / 1e4:.5f},{symbol}\n"
        for i in range(12)
        for symbol in ("EUR/USD", "NZD/USD")
    )
    path = tmp_path / "ticks.csv"
    path.write_text("timestamp,bid,ask,symbol\n" + rows)
    return path


# -- db ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["--config", "MDS_CONFIG"])
def test_db_upgrade_migrates_the_database_of_the_config_file(
    cwd: Path,
    tmp_path: Path,
    how: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = sqlite_url(tmp_path)
    config = write_config(tmp_path, f'[database]\nurl = "{url}"\n')
    args = ["--config", str(config)] if how == "--config" else []
    if how == "MDS_CONFIG":
        monkeypatch.setenv("MDS_CONFIG", str(config))
    assert main(["db", "upgrade", *args]) == 0
    assert main(["db", "current", *args]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{migrate.head()} (head)"
    engine = create_engine(url)
    assert "ticks" in inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.postgres
def test_db_upgrade_migrates_the_postgresql_database_of_the_config_file(
    cwd: Path, tmp_path: Path, database_factory: DatabaseFactory
) -> None:
    url = database_factory.postgres_url()
    config = write_config(tmp_path, f'[database]\nurl = "{url}"\n')
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    engine = create_engine(url)
    assert migrate.current(engine) == migrate.head()
    engine.dispose()


def test_db_url_precedence_is_file_then_environment_then_flag(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_file, from_env, from_flag = (sqlite_url(tmp_path, f"{n}.sqlite") for n in "efg")
    config = write_config(tmp_path, f'[database]\nurl = "{from_file}"\n')
    monkeypatch.setenv("MDS_DATABASE_URL", from_env)
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert not (tmp_path / "e.sqlite").exists()
    assert (tmp_path / "f.sqlite").exists()
    assert main(["db", "upgrade", "--config", str(config), "--db", from_flag]) == 0
    assert (tmp_path / "g.sqlite").exists()
    assert not (tmp_path / "e.sqlite").exists()


def test_a_bad_config_file_stops_db_upgrade_with_exit_2_naming_the_key(
    cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, '[database]\nurl = "mds.sqlite"\n')
    assert main(["db", "upgrade", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mds db upgrade: configuration error: database.url: must be")
    assert f"(from {config})" in err


# -- ingest ------------------------------------------------------------------------------------


INGEST_FILES = {
    "ticks": ("ticks.csv", f"timestamp,bid,ask\n{T0},1.1,1.2\n", ticks, ["--symbol", "EUR/USD"]),
    "dom": (
        "books.jsonl",
        f'{{"symbol": "EUR/USD", "ts": {T0}, "bids": [[1.0849, 2.5]], "asks": [[1.0851, 1]]}}\n',
        dom_snapshots,
        [],
    ),
    "sentiment": (
        "readings.csv",
        f"timestamp,symbol,long_pct,short_pct\n{T0},EUR/USD,40,60\n",
        sentiment_readings,
        [],
    ),
}


@pytest.mark.parametrize("kind", list(INGEST_FILES))
def test_ingest_loads_into_the_database_of_the_config_file(
    cwd: Path, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, content, table, extra = INGEST_FILES[kind]
    data = tmp_path / name
    data.write_text(content)
    url = sqlite_url(tmp_path)
    config = write_config(tmp_path, f'[database]\nurl = "{url}"\n')
    assert main(["ingest", kind, str(data), *extra, "--config", str(config)]) == 0
    assert "1 files, 1 rows" in capsys.readouterr().out
    assert count(url, table) == 1


# -- backfill ----------------------------------------------------------------------------------


def stored_settings(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(select(settings.c.key, settings.c.value)).all()
    engine.dispose()
    return dict(rows)


def candle_symbols(url: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(select(candles.c.symbol).distinct()).scalars().all()
    engine.dispose()
    return set(rows)


def test_backfill_takes_database_symbols_and_candle_settings_from_the_config_file(
    cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url(tmp_path)
    assert main(["ingest", "ticks", str(tick_file(tmp_path)), "--db", url]) == 0
    config = write_config(
        tmp_path,
        f'symbols = ["EUR/USD"]\n[database]\nurl = "{url}"\n'
        '[services.candles]\nprice_basis = "bid"\nday_start = "17:00 America/New_York"\n',
    )
    capsys.readouterr()
    assert main(["backfill", "--kind", "candles", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("1 symbol, ")
    assert candle_symbols(url) == {"EUR/USD"}
    assert stored_settings(url) == {
        "candles.price_basis": "bid",
        "candles.day_start": "17:00 America/New_York",
    }
    # Flags override the file: another basis needs a rebuild, which the file may ask for.
    assert main(["backfill", "--config", str(config), "--price-basis", "ask"]) == 2
    assert "--rebuild" in capsys.readouterr().err
    config.write_text(config.read_text() + "rebuild = true\n")
    assert main(["backfill", "--config", str(config), "--price-basis", "ask"]) == 0
    assert stored_settings(url)["candles.price_basis"] == "ask"


def test_backfill_symbol_flag_overrides_the_configured_symbols(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sqlite_url(tmp_path)
    assert main(["ingest", "ticks", str(tick_file(tmp_path)), "--db", url]) == 0
    monkeypatch.setenv("MDS_DATABASE_URL", url)
    monkeypatch.setenv("MDS_SYMBOLS", "EUR/USD")
    assert main(["backfill", "--kind", "candles", "--symbol", "NZD/USD"]) == 0
    assert candle_symbols(url) == {"NZD/USD"}


def test_backfill_reports_a_bad_flag_value_with_its_key_and_flag(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backfill", "--workers", "many"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mds backfill: configuration error: services.candles.workers: must be an integer, "
        "got 'many' (from --workers)"
    )


# -- status ------------------------------------------------------------------------------------

HEALTHY: dict[str, Any] = {
    "overall_status": "healthy",
    "services": {"AggregatorService": {"status": "healthy", "running": True, "reasons": []}},
}


def healthy_server(**kwargs: Any) -> HttpServer:
    app = make_app(
        registry=CollectorRegistry(), health=lambda: (200, HEALTHY), ready=lambda: (True, {})
    )
    server = HttpServer(app, host="127.0.0.1", port=0, **kwargs)
    server.start()
    return server


def test_status_asks_the_instance_at_the_configured_listen_address(
    cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = healthy_server()
    try:
        port = server.address[1]
        config = write_config(tmp_path, f'[http]\nlisten = "0.0.0.0:{port}"\n')
        assert main(["status", "--config", str(config)]) == 0
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:2] == ["AggregatorService", "healthy"]
    assert "overall: healthy" in out


def test_status_of_an_instance_with_tls_uses_https_and_trusts_its_certificate(
    cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = make_certificate(tmp_path)
    server = healthy_server(tls=tls)
    try:
        config = write_config(
            tmp_path,
            f'[http]\nlisten = "127.0.0.1:{server.address[1]}"\n'
            f'tls_cert_file = "{tls.cert_file}"\ntls_key_file = "{tls.key_file}"\n',
        )
        monkeypatch.setenv("MDS_CONFIG", str(config))
        assert main(["status"]) == 0
        assert "overall: healthy" in capsys.readouterr().out
        # The environment overrides the file's address: nothing listens there.
        monkeypatch.setenv("MDS_HTTP_LISTEN", "127.0.0.1:1")
        assert main(["status", "--timeout", "2"]) == 1
        assert "cannot read https://127.0.0.1:1/api/health/aggregators" in capsys.readouterr().err
    finally:
        server.stop()


# -- config show and run -----------------------------------------------------------------------


def test_config_show_prints_the_database_of_the_config_file(
    cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url(tmp_path)
    config = write_config(tmp_path, f'[database]\nurl = "{url}"\n')
    assert main(["config", "show", "--config", str(config), "--origins"]) == 0
    captured = capsys.readouterr()
    assert f'url = "{url}"' in captured.out
    assert f"#   database.url: {config}" in captured.err


def test_run_migrates_and_serves_the_database_of_the_config_file(cwd: Path, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    config = write_config(tmp_path, f'[database]\nurl = "{url}"\n')
    process = MdsProcess(["--config", str(config)], cwd=cwd)  # returns once it serves
    try:
        engine = create_engine(url)
        assert migrate.current(engine) == migrate.head()
        engine.dispose()
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.close()
