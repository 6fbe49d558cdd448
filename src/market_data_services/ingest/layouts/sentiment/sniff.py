"""Which layout a sentiment file has (told from its header by the registered layouts,
or forced), and reading it with that layout's reader."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path
from typing import cast

from market_data_services.ingest.layouts.base import ReadOptions, inspect_layout, read_file
from market_data_services.ingest.layouts.sentiment.common import RawReadings, SentimentFile

#: The layouts shipped (``layouts.base.layout_names("sentiment")`` adds registered ones).
LAYOUTS = ("plain", "ig")


def inspect_sentiment_file(
    path: Path, layout: str | None = None, *, time_unit: str = "auto", latest_ms: int | None = None
) -> SentimentFile:
    """Tell the layout of ``path`` (or check the forced one) from its header, and the unit
    of its times from its first time.

    Raises ImplausibleTimeError when that time is before 1990 or after ``latest_ms``
    (default: an hour from now) in the unit read.
    """
    found = inspect_layout("sentiment", path, layout, time_unit=time_unit, latest_ms=latest_ms)
    return cast(SentimentFile, found)


def read_readings(
    sentiment_file: SentimentFile, *, zone: tzinfo, source: str | None
) -> Iterator[RawReadings]:
    """Parse ``sentiment_file`` into chunks of readings, with its layout's reader.

    ``source`` names the source of readings without a source column (default: ``ig``
    for IG exports, else '').
    """
    options = ReadOptions(zone=zone, source=source)
    return cast(Iterator[RawReadings], read_file("sentiment", sentiment_file, options))


__all__ = ["LAYOUTS", "inspect_sentiment_file", "read_readings"]
