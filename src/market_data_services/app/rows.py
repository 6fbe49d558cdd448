"""How rows of derived data are written as text: the fields, times, CSV and JSON lines.

One place for the HTTP API and ``mds export``, so a CSV from either has the same
columns and the same spelling of times and booleans. Pages are converted column by
column (numpy formats the times), because ``mds export`` writes millions of rows.
"""

from __future__ import annotations

import csv
import json
import math
from typing import Any, TextIO

import numpy as np

from market_data_services.app.openapi import field_names
from market_data_services.storage.derived import Kind, Row


def time_texts(kind: Kind, ts_ms: list[int]) -> list[str]:
    """ISO-8601 UTC of each time: ``2026-11-30T04:00:00Z`` for candles (buckets start
    on whole minutes), ``2026-11-30T04:00:01.250Z`` for book and sentiment rows."""
    moments = np.asarray(ts_ms, dtype=np.int64).astype("datetime64[ms]")
    if kind.time_column == "ts_open":
        texts = np.datetime_as_string(moments, unit="s")
    else:
        texts = np.datetime_as_string(moments, unit="ms")
    return [f"{text}Z" for text in texts.tolist()]


def records(kind: Kind, page: list[Row]) -> list[dict[str, Any]]:
    """The page as JSON objects (NaN and infinity, which JSON lacks, as null)."""
    names = field_names(kind)
    texts = time_texts(kind, [row[0] for row in page])
    out = []
    for row, text in zip(page, texts, strict=True):
        values = [row[0], text, *row[1:]]
        out.append(
            {
                name: None if isinstance(v, float) and not math.isfinite(v) else v
                for name, v in zip(names, values, strict=True)
            }
        )
    return out


def _text_columns(kind: Kind, page: list[Row]) -> list[list[Any]]:
    columns: list[list[Any]] = [list(column) for column in zip(*page, strict=True)]
    columns.insert(1, time_texts(kind, columns[0]))
    for index, name in enumerate(field_names(kind)):
        if name == "complete":
            columns[index] = ["true" if v else "false" for v in columns[index]]
    return columns


def write_csv(out: TextIO, kind: Kind, page: list[Row], *, header: bool) -> None:
    """The page as CSV lines (after a header line when ``header``)."""
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(field_names(kind))
    if page:
        writer.writerows(zip(*_text_columns(kind, page), strict=True))


def json_objects(kind: Kind, page: list[Row]) -> list[str]:
    """Each row of the page as the text of one JSON object."""
    if not page:
        return []
    columns = _text_columns(kind, page)
    floats = [i for i, c in enumerate(columns) if c and isinstance(c[0], float)]
    if not all(np.isfinite(np.asarray(columns[i], dtype=np.float64)).all() for i in floats):
        return [json.dumps(r, allow_nan=False) for r in records(kind, page)]
    # One format string per page: float repr is valid JSON for finite values, and
    # this is several times faster than json.dumps of a dict per row.
    parts = []
    for index, name in enumerate(field_names(kind)):
        sample = columns[index][0]
        if name == "time":
            spec = '"%s"'
        elif isinstance(sample, str | bool):
            spec = "%s"
        elif isinstance(sample, float):
            spec = "%r"
        else:
            spec = "%d"
        parts.append(f'"{name}":{spec}')
    template = "{" + ",".join(parts) + "}"
    return [template % values for values in zip(*columns, strict=True)]


def write_jsonl(out: TextIO, kind: Kind, page: list[Row]) -> None:
    """The page as JSON lines, one object per row."""
    out.writelines(f"{text}\n" for text in json_objects(kind, page))


__all__ = ["json_objects", "records", "time_texts", "write_csv", "write_jsonl"]
