"""Rows of derived data as text: JSON has no NaN, so a page holding one falls back to
null there, and the fast path's output is the JSON that json.dumps would write."""

from __future__ import annotations

import csv
import io
import json
import math

from market_data_services.app.rows import json_objects, write_csv
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


def test_csv_lines_read_back_with_the_csv_module_as_the_same_values() -> None:
    rows = [
        (1_796_011_200_000, 1.1, 1.1015000000000001, 1.0999, 1.1, 15.0, 15, True),
        (1_796_011_260_000, 1.3872399999999998, 1.4, 1.3, 1.35, 2.0, 2, False),
    ]
    out = io.StringIO()
    write_csv(out, CANDLES, rows, header=True)
    parsed = list(csv.reader(io.StringIO(out.getvalue())))
    assert parsed[0] == [
        "ts_open",
        "time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "tick_count",
        "complete",
    ]
    assert [float(v) for v in parsed[2][2:7]] == list(rows[1][1:6])
    assert parsed[1][1] == "2026-11-30T04:00:00Z" and parsed[2][-1] == "false"
