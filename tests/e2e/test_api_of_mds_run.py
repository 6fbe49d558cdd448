"""The HTTP API as a user of ``mds run --demo`` reads it: a real process, a real SQLite
file, real HTTP; the demo feed's minute still open shows as ``complete: false``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mds_process import MdsProcess, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[MdsProcess]:
    process = MdsProcess(["--demo", "--speed", "30"], cwd=tmp_path)
    yield process
    process.close()


def test_the_demo_candles_are_served_with_the_open_minute_last(demo: MdsProcess) -> None:
    def has_candles() -> bool:
        status, body = demo.get("/api/v1/symbols")
        return status == 200 and "EUR/USD" in json.loads(body)["candles"]

    wait_until(has_candles, 30, "EUR/USD among the candle symbols")
    status, body = demo.get("/api/v1/candles?symbol=EUR/USD&timeframe=1m")
    assert status == 200
    candles = json.loads(body)["candles"]
    flags = [c["complete"] for c in candles]
    # Written candles first, then the open minute, and the one before it while the
    # candle service has not written it yet.
    assert flags and flags[-1] is False
    assert flags == sorted(flags, reverse=True) and flags.count(False) <= 2
    status, body = demo.get("/api/v1/openapi.json")
    assert status == 200 and json.loads(body)["openapi"] == "3.1.0"
