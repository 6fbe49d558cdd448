"""Three real ``mds run`` processes on one PostgreSQL share 30 symbols; one is killed.

Ticks arrive all along (a writer thread, as a feed would), the candle service runs every
2 s (short, to keep the test bounded), the other services are off. Checked: each
instance owns a third; after ``kill -9`` of one, its symbols are owned by the survivors
within one interval (plus slack for a loaded machine); at the end every closed candle
equals what a single-instance ``mds backfill`` of the same ticks builds, with no gap.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import Engine

from market_data_services.ingest import Tick, write_ticks
from market_data_services.storage import create_engine, upgrade
from tests.databases import DatabaseFactory
from tests.e2e.mds_process import MdsProcess, clean_environment, wait_until

pytestmark = pytest.mark.slow

SYMBOLS = [f"P{i:02d}/USD" for i in range(30)]
INTERVAL_SECONDS = 2.0
#: Scheduling slack on a shared two-core machine, on top of the one interval.
SLACK_SECONDS = 3.0
MINUTES = 20  # of market time the writer replays, one tick per symbol per second
TIMEFRAME_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000}


class TickWriter:
    """Writes a few seconds of market time for every symbol per batch until done: ticks
    keep arriving while instances come, go and die. Market time starts two hours ago,
    on the hour, so every bucket it fills is closed."""

    def __init__(self, engine: Engine) -> None:
        now_ms = int(time.time() * 1000)
        self.start_ms = now_ms - now_ms % 3_600_000 - 2 * 3_600_000
        self.end_ms = self.start_ms + MINUTES * 60_000
        self._engine = engine
        self._stop = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tick-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            step_ms = 5_000
            for at in range(self.start_ms, self.end_ms, step_ms):
                if self._stop.wait(0.1):
                    return
                batch = [
                    Tick(symbol, ts, 1.0 + i / 100 + (ts % 7_000) / 1e6, 1.0002 + i / 100)
                    for i, symbol in enumerate(SYMBOLS)
                    for ts in range(at, at + step_ms, 1_000)
                ]
                write_ticks(self._engine, batch)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _start(url: str, workdir: Path) -> MdsProcess:
    return MdsProcess(
        [
            "--db",
            url,
            "--symbols",
            ",".join(SYMBOLS),
            "--set",
            f"services.candles.interval_seconds={INTERVAL_SECONDS}",
            "--set",
            "services.dom.enabled=false",
            "--set",
            "services.sentiment.enabled=false",
        ],
        cwd=workdir,
    )


def _owned(process: MdsProcess) -> set[str]:
    service = process.health()[1]["services"]["AggregatorService"]
    return set(service["owned_symbols"])


def _sample(process: MdsProcess, name: str) -> float:
    """The candle service's sample ``name`` (summed over labels) from ``/metrics``."""
    body = process.get("/metrics")[1]
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name and sample.labels.get("service") == "AggregatorService"
    )


def _candles(engine: Engine, until_ms: int) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Every candle of a bucket that ended by ``until_ms``, by (symbol, timeframe, ts_open)."""
    rows = {}
    with engine.connect() as connection:
        for row in connection.execute(
            text(
                "SELECT symbol, timeframe, ts_open, open, high, low, close, volume, tick_count "
                "FROM candles"
            )
        ):
            length = TIMEFRAME_MS.get(row.timeframe)
            if length is not None and row.ts_open + length <= until_ms:
                rows[(row.symbol, row.timeframe, row.ts_open)] = tuple(row[3:])
    return rows


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[list[MdsProcess]]:
    started: list[MdsProcess] = []
    yield started
    for process in started:
        process.close()


@pytest.mark.postgres
def test_three_instances_split_the_symbols_and_survive_a_kill_with_exact_candles(
    database_factory: DatabaseFactory, tmp_path: Path, instances: list[MdsProcess]
) -> None:
    url = database_factory.url("postgresql")
    engine = create_engine(url)
    upgrade(engine)
    writer = TickWriter(engine)
    writer.start()
    try:
        for _ in range(3):
            instances.append(_start(url, tmp_path))
        wait_until(
            lambda: [len(_owned(p)) for p in instances] == [10, 10, 10],
            10 * INTERVAL_SECONDS + 20,
            "each of the three instances owns a third",
        )
        owned = [_owned(p) for p in instances]
        assert set().union(*owned) == set(SYMBOLS)

        victim, survivors = instances[2], instances[:2]
        assert not writer.done.is_set(), "ticks should still be arriving at the kill"
        victim.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(
            lambda: _owned(survivors[0]) | _owned(survivors[1]) == set(SYMBOLS),
            INTERVAL_SECONDS + SLACK_SECONDS,
            "the killed instance's symbols owned by the survivors within one interval",
        )
        taken_after = time.monotonic() - killed_at
        assert _owned(survivors[0]).isdisjoint(_owned(survivors[1]))
        wait_until(
            lambda: _sample(survivors[0], "mds_service_instances") == 2,
            2 * INTERVAL_SECONDS + SLACK_SECONDS,
            "the survivors count two instances",
        )
        assert _sample(survivors[0], "mds_service_symbols_owned") == len(_owned(survivors[0]))
        assert _sample(survivors[0], "mds_service_symbol_ownership_changes_total") > 0
        status = subprocess.run(
            [sys.executable, "-m", "market_data_services", "status", survivors[0].url],
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert "AggregatorService: owns 15 of 30 symbols, shared by 2 instances" in status.stdout

        assert writer.done.wait(120), "the tick writer did not finish"
        assert writer.error is None, writer.error
        # The survivors build what arrived last, at their next iterations: every tick
        # counted once in the minutes and in the 5-minute buckets (the range is a whole
        # number of both).
        expected_ticks = MINUTES * 60 * len(SYMBOLS)

        def every_tick_built() -> bool:
            with engine.connect() as connection:
                counts = dict(
                    connection.execute(
                        text(
                            "SELECT timeframe, sum(tick_count) FROM candles "
                            "WHERE timeframe IN ('1m', '5m') GROUP BY timeframe"
                        )
                    ).all()
                )
            return counts == {"1m": expected_ticks, "5m": expected_ticks}

        wait_until(every_tick_built, 60, "every tick of every symbol built into candles")
        for process in survivors:
            process.signal(signal.SIGTERM)
            assert process.wait(30) == 0
        live = _candles(engine, writer.end_ms)
    finally:
        writer.stop()

    # One instance, from scratch, over the same ticks: the reference.
    reference_url = database_factory.url("postgresql")
    reference = create_engine(reference_url)
    upgrade(reference)
    with engine.connect() as source:
        rows = source.execute(text("SELECT symbol, ts, bid, ask FROM ticks ORDER BY id")).all()
    write_ticks(reference, [Tick(*row) for row in rows], numbering="batch")
    result = subprocess.run(
        [sys.executable, "-m", "market_data_services", "backfill", "--db", reference_url],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    expected = _candles(reference, writer.end_ms)
    engine.dispose()
    reference.dispose()

    assert len(live) == len(expected) > 0
    assert live == expected
    per_symbol = {s: 0 for s in SYMBOLS}
    for symbol, timeframe, _ in live:
        if timeframe == "1m":
            per_symbol[symbol] += 1
    assert set(per_symbol.values()) == {MINUTES}, "a gap in some symbol's minutes"
    print(f"symbols taken over {taken_after:.1f} s after the kill")


def test_a_second_mds_run_on_one_sqlite_file_exits_1_naming_the_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mds.sqlite'}"
    first = MdsProcess(["--db", url, "--demo"], cwd=tmp_path)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "market_data_services", "run", "--db", url, "--demo"],
            cwd=tmp_path,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert f"is already used by another mds run (pid {first.proc.pid} on " in result.stderr
        assert first.health()[0] == 200  # the first one goes on undisturbed
        first.signal(signal.SIGTERM)
        assert first.wait(30) == 0
        # Once the first has stopped, the next one starts.
        second = MdsProcess(["--db", url], cwd=tmp_path)
        second.close()
    finally:
        first.close()
