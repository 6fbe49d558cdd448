"""The README's "Adding a service" example, installed from outside the package, through a
real ``mds run`` (its metrics on /metrics, its rows in its table) and ``mds backfill``."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from market_data_services.app.cli import main
from tests.conftest import SAMPLE_DATA, dies_with_parent
from tests.e2e.mds_process import MdsProcess, clean_environment, wait_until
from tests.plugins import EXAMPLE, install_plugin

pytestmark = pytest.mark.slow

KIND = ("--kind", "spread_summary")
ORDERBOOK = SAMPLE_DATA / "orderbook" / "bybit_2024-12-01_XRPUSDT_ob500.data.gz"


def summary_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        try:
            return connection.execute("SELECT * FROM spread_summary").fetchall()
        except sqlite3.OperationalError:  # the service has not created its table yet
            return []


def test_spread_summary_example_runs_under_mds_run_and_backfill(tmp_path: Path) -> None:
    env = install_plugin(
        tmp_path / "plugins",
        module="spread_summary",
        source=EXAMPLE.read_text(),
        entry="spread_summary",
    )
    database = tmp_path / "mds.sqlite"
    url = f"sqlite:///{database}"
    assert main(["db", "upgrade", "--db", url]) == 0
    assert main(["ingest", "dom", str(ORDERBOOK), "--db", url]) == 0

    process = MdsProcess(
        [
            "--db",
            url,
            "--symbols",
            "XRPUSDT",
            "--set",
            "services.candles.enabled=false",
            "--set",
            "services.sentiment.enabled=false",
            "--set",
            "services.dom.interval_seconds=0.2",
            "--set",
            "services.spread_summary.interval_seconds=0.2",
        ],
        cwd=tmp_path,
        env=env,
    )
    try:
        wait_until(
            lambda: (
                'mds_spread_summary_minutes_written_total{symbol="XRPUSDT"}'
                in process.get("/metrics")[1]
            ),
            20,
            "the plugin's counter on /metrics",
        )
        metrics = process.get("/metrics")[1]
        assert 'mds_service_iterations_total{service="SpreadSummaryService"}' in metrics
        status, health = process.health()
        assert status == 200 and "SpreadSummaryService" in health["services"]
        wait_until(lambda: bool(summary_rows(database)), 20, "a spread summary row")
        process.signal()
        assert process.wait(15) == 0
    finally:
        process.close()
    ((symbol, minute, books, mean_bps, min_bps, max_bps),) = summary_rows(database)
    assert (symbol, minute, books) == ("XRPUSDT", 1_733_011_200_000, 50)  # all 50 books
    assert min_bps <= mean_bps <= max_bps
    assert mean_bps == pytest.approx(0.5119, abs=1e-4)

    environment = clean_environment()
    environment.update(env)
    backfill = subprocess.run(
        dies_with_parent(
            [sys.executable, "-m", "market_data_services", "backfill", "--db", url, *KIND]
        ),
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert backfill.returncode == 0, backfill.stderr
    assert backfill.stdout.startswith("spread summary: 1 symbol, 1 new minutes computed in ")
    assert summary_rows(database) == [(symbol, minute, books, mean_bps, min_bps, max_bps)]
