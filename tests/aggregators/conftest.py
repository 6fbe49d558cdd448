"""Where the real market data lives (read-only, never copied into the project)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import unavailable


def shared_data() -> Path:
    default = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return Path(os.environ.get("MDS_SHARED_DATA", default)).resolve()


@pytest.fixture(scope="session")
def ticks_dir() -> Path:
    path = shared_data() / "forex_ticks"
    if not path.is_dir():
        unavailable(f"the shared market data ({path})", "set MDS_SHARED_DATA to its folder")
    return path


@pytest.fixture(scope="session")
def orderbook_dir() -> Path:
    path = shared_data() / "orderbook"
    if not path.is_dir():
        unavailable(f"the shared market data ({path})", "set MDS_SHARED_DATA to its folder")
    return path


@pytest.fixture(scope="session")
def sentiment_dir() -> Path:
    path = shared_data() / "sentiment"
    if not path.is_dir():
        unavailable(f"the shared market data ({path})", "set MDS_SHARED_DATA to its folder")
    return path
