"""The real market data the ingestion and service tests read (a pytest plugin, see
``tests/conftest.py``).

``ticks_dir``, ``orderbook_dir`` and ``sentiment_dir`` are the small samples kept in
``tests/data`` (always there); ``full_ticks_dir`` is the full data set, which the oracle
tests need and which is skipped without (and fails in CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SAMPLE_DATA, full_data


@pytest.fixture(scope="session")
def ticks_dir() -> Path:
    return SAMPLE_DATA / "forex_ticks"


@pytest.fixture(scope="session")
def orderbook_dir() -> Path:
    return SAMPLE_DATA / "orderbook"


@pytest.fixture(scope="session")
def sentiment_dir() -> Path:
    return SAMPLE_DATA / "sentiment"


@pytest.fixture(scope="session")
def full_ticks_dir() -> Path:
    return full_data("forex_ticks")
