"""Rows of derived data as text: JSON has no NaN, so a page holding one falls back to
null there, and the fast path's output is the JSON that json.dumps would write."""

from __future__ import annotations

import json
import math

from market_data_services.app.rows import json_objects
from market_data_services.storage.derived import BOOK, CANDLES


def test_a_nan_in_a_page_is_written_as_null() -> None:
    row = (1_796_011_201_250, *([1.1] * 10), math.nan)
    (text,) = json_objects(BOOK, [row])
    record = json.loads(text)
    assert record["ofi"] is None and record["time"] == "2026-11-30T04:00:01.250Z"


def test_the_fast_path_writes_what_json_dumps_would() -> None:
    row = (1_796_011_200_000, 1.1, 1.1015000000000001, 1.0999, 1.1, 15.0, 15, False)
    (text,) = json_objects(CANDLES, [row])
    assert json.loads(text) == {
        "ts_open": 1_796_011_200_000,
        "time": "2026-11-30T04:00:00Z",
        "open": 1.1,
        "high": 1.1015000000000001,
        "low": 1.0999,
        "close": 1.1,
        "volume": 15.0,
        "tick_count": 15,
        "complete": False,
    }
