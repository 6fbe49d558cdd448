"""Plain sentiment CSV: a header ``timestamp,symbol,long_pct,short_pct[,source]`` (any
order, any case), then one reading a row; percentages 0..100; timestamps ISO-8601 (in
``--tz`` without an offset) or epoch numbers in one unit per file (``FileTimes``)."""

from __future__ import annotations

from pathlib import Path

from market_data_services.ingest.files import parse_number
from market_data_services.ingest.layouts.sentiment.common import (
    PLAIN_COLUMNS,
    REQUIRED,
    NotASentimentFileError,
    ReadingsReader,
    SentimentFile,
    SentimentLayout,
    csv_header,
)


class PlainSentiment(SentimentLayout):
    name = "plain"
    description = "a header timestamp,symbol,long_pct,short_pct[,source] (percent 0..100)"
    signature = "a header 'timestamp,symbol,long_pct,short_pct[,source]'"

    def sniff(self, first: str) -> bool:
        return set(REQUIRED) <= {c.lower() for c in csv_header(first)}

    def inspect(
        self, path: Path, first: str, *, time_unit: str, latest_ms: int | None
    ) -> SentimentFile:
        lowered = tuple(c.lower() for c in csv_header(first))
        unknown = [c for c in lowered if c not in PLAIN_COLUMNS]
        if unknown:
            raise NotASentimentFileError(
                path,
                f"unknown column {unknown[0]!r} in the header; "
                f"valid columns: {', '.join(PLAIN_COLUMNS)}",
            )
        duplicated = sorted({c for c in lowered if lowered.count(c) > 1})
        if duplicated:
            raise NotASentimentFileError(path, f"column {duplicated[0]!r} appears twice")
        found = SentimentFile(path, self.name, lowered)
        return self.judged(found, time_unit=time_unit, latest_ms=latest_ms)

    @staticmethod
    def add_row(reader: ReadingsReader, row: list[str], line: int, ts: int) -> None:
        position = reader.position
        symbol = row[position["symbol"]].strip()
        try:
            long_pct = parse_number(row[position["long_pct"]], "long_pct")
            short_pct = parse_number(row[position["short_pct"]], "short_pct")
        except ValueError as exc:
            reader.reject(line, "malformed", f"{exc}; row {','.join(row)[:80]!r}")
            return
        if not symbol:
            reader.reject(line, "malformed", "the symbol field is empty")
            return
        given = row[position["source"]].strip() if "source" in position else ""
        reader.add(symbol, given, ts, line, long=long_pct, short=short_pct)


__all__ = ["PlainSentiment"]
