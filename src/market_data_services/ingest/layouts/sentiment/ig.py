"""IG client sentiment exports: a ``Date`` column, then one column per market holding the
percent of clients long (short is 100 minus it). A six-letter market such as ``EURUSD``
is read as ``EUR/USD``; an empty cell is no reading."""

from __future__ import annotations

import re
from pathlib import Path

from market_data_services.ingest.files import parse_number
from market_data_services.ingest.layouts.sentiment.common import (
    NotASentimentFileError,
    ReadingsReader,
    SentimentFile,
    SentimentLayout,
    csv_header,
)

_FX_PAIR = re.compile(r"^[A-Z]{6}$")


def market_symbol(column: str) -> str:
    """``EURUSD`` -> ``EUR/USD``; anything else as it is."""
    name = column.strip()
    return f"{name[:3]}/{name[3:]}" if _FX_PAIR.match(name) else name


class IgSentiment(SentimentLayout):
    name = "ig"
    description = (
        "an IG client sentiment export: a Date column (in --tz), then one column per market "
        "holding the percent long (EURUSD is read as EUR/USD)"
    )
    signature = "an IG export header 'Date,EURUSD,...'"
    default_source = "ig"

    def sniff(self, first: str) -> bool:
        columns = csv_header(first)
        return len(columns) > 1 and columns[0].lower() == "date"

    def inspect(
        self, path: Path, first: str, *, time_unit: str, latest_ms: int | None
    ) -> SentimentFile:
        columns = csv_header(first)
        empty = [i for i, name in enumerate(columns[1:], start=2) if not name]
        if empty:
            raise NotASentimentFileError(path, f"column {empty[0]} of the header has no name")
        found = SentimentFile(path, self.name, columns)
        return self.judged(found, time_unit=time_unit, latest_ms=latest_ms)

    @staticmethod
    def add_row(reader: ReadingsReader, row: list[str], line: int, ts: int) -> None:
        for name, cell in zip(reader.columns[1:], row[1:], strict=True):
            value = cell.strip()
            if not value:
                continue
            market = market_symbol(name)
            try:
                long_pct = parse_number(value, "long percent")
            except ValueError:
                reader.reject(
                    line, "malformed", f"{market}: long percent {value!r} is not a number"
                )
                continue
            reader.add(market, "", ts, line, long=long_pct, short=float("nan"))


__all__ = ["IgSentiment", "market_symbol"]
