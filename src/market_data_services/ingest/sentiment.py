"""Retail sentiment in: validation and storage of readings.

``ingest_sentiment(engine, paths, ...)`` loads sentiment files (``plain`` CSV with
percentages, or IG client sentiment exports; see ``layouts/sentiment/``) into
``sentiment_readings``, as ``mds ingest sentiment`` does; ``write_sentiment(engine,
readings)`` stores readings from a live feed (shares 0..1). Values outside 0..100 %, or
long and short not adding up to 100 % (within ``sum_tolerance``), are rejected with the
reason, file and line.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Collection, Iterable
from datetime import tzinfo
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from market_data_services.ingest.files import (
    BadFileError,
    ImplausibleTimeError,
    ReadLimits,
    reading_with,
)
from market_data_services.ingest.layouts.base import layout_names
from market_data_services.ingest.layouts.sentiment import (
    LAYOUTS,
    NotASentimentFileError,
    RawReadings,
    SentimentFile,
    find_sentiment_files,
    inspect_sentiment_file,
    read_readings,
)
from market_data_services.ingest.pipeline import (
    DEFAULT_FUTURE_TOLERANCE_SECONDS,
    DEFAULT_SUM_TOLERANCE,
    BoolArray,
    Checks,
    IngestFamilies,
    IngestKind,
    IngestProgress,
    IngestReport,
    MetricNames,
    QuotePolicy,
    Rejection,
    ingest_chunks,
    inspect_files,
    write_chunk,
)
from market_data_services.runtime.telemetry import families_for
from market_data_services.storage.locks import SENTIMENT_WRITE_LOCK_KEY
from market_data_services.storage.schema import SOURCE_LENGTH, sentiment_readings
from market_data_services.storage.upsert import upsert
from market_data_services.timeutil import parse_zone

#: Why a reading can be rejected: the ``reason`` label of
#: ``mds_sentiment_readings_rejected_total``.
REJECT_REASONS = (
    "malformed",  # unparseable row, wrong field count, bad symbol or source text
    "not_finite",  # NaN or infinite share
    "out_of_range",  # a share outside 0..1 (a percent outside 0..100)
    "sum_mismatch",  # long + short further than sum_tolerance from 1
    "timestamp_out_of_range",  # before 1990 (in a file's unit) or 1970, after year 9999
    "future_timestamp",  # later than now + future_tolerance_seconds
    "unknown_symbol",  # not among the symbols being loaded
    "line_too_long",  # a line over ingest.max_line_bytes (not read)
    "field_too_long",  # a CSV field over ingest.max_field_chars
)
_READING_COLUMNS = ("symbol", "ts", "source", "long_share", "short_share")
_READING_KEY = ("symbol", "ts", "source")
_METRICS = MetricNames(
    written=("mds_sentiment_readings_written", "Sentiment readings stored as new rows."),
    duplicates=(
        "mds_sentiment_readings_duplicate",
        "Valid readings skipped because the same (symbol, time, source) was stored.",
    ),
    rejected=("mds_sentiment_readings_rejected", "Sentiment readings rejected, by reason."),
)


class SentimentReading(NamedTuple):
    """One reading for ``write_sentiment``: shares are fractions 0..1.

    ``short_share`` None means ``1 - long_share``.
    """

    symbol: str
    ts_ms: int
    long_share: float
    short_share: float | None = None
    source: str = ""


def _families(registry: CollectorRegistry) -> IngestFamilies:
    return IngestFamilies(registry, _METRICS, REJECT_REASONS)


def sentiment_ingest_metrics(registry: CollectorRegistry | None = None) -> IngestFamilies:
    """The sentiment ingestion counters of ``registry`` (created, at zero, on first use)."""
    return families_for(registry, _families)


def _short(raw: RawReadings) -> npt.NDArray[np.float64]:
    """Short shares: as given, or 1 - long where the file gives none."""
    return np.where(np.isnan(raw.short_share), 1.0 - raw.long_share, raw.short_share)


class _Readings(IngestKind[RawReadings]):
    """Sentiment readings: shares within 0..1 that add up to 1, and a printable source."""

    unit = "readings"
    kind = "sentiment"
    reasons = REJECT_REASONS
    lock_key = SENTIMENT_WRITE_LOCK_KEY

    def families(self, registry: CollectorRegistry | None) -> IngestFamilies:
        return sentiment_ingest_metrics(registry)

    def check(self, raw: RawReadings, checks: Checks, policy: QuotePolicy) -> None:
        long, given_short = raw.long_share, raw.short_share
        has_short = ~np.isnan(given_short)
        short = _short(raw)
        checks.mark(~np.isfinite(long) | (has_short & ~np.isfinite(given_short)), "not_finite")
        with np.errstate(invalid="ignore"):
            checks.mark((long < 0) | (long > 1) | (short < 0) | (short > 1), "out_of_range")
            checks.mark(np.abs(long + short - 1.0) > policy.sum_tolerance, "sum_mismatch")

    def check_after_symbols(self, raw: RawReadings, checks: Checks) -> None:
        bad_source = np.array(
            [len(s) > SOURCE_LENGTH or not s.isprintable() for s in raw.sources] or [False]
        )
        if len(raw):
            checks.mark(bad_source[raw.source_codes], "malformed")

    def describe(
        self, raw: RawReadings, name: str, index: int, checks: Checks, policy: QuotePolicy
    ) -> str:
        symbol = raw.symbols[int(raw.symbol_codes[index])]
        long_pct = 100 * float(raw.long_share[index])
        short_pct = 100 * float(_short(raw)[index])
        if name == "not_finite":
            return f"{symbol}: long {long_pct} % and short {short_pct} % must be numbers"
        if name == "out_of_range":
            return f"{symbol}: long {long_pct:g} % and short {short_pct:g} % must be within 0..100"
        if name == "sum_mismatch":
            return (
                f"{symbol}: long {long_pct:g} % + short {short_pct:g} % = "
                f"{long_pct + short_pct:g} %, not 100 (tolerance {100 * policy.sum_tolerance:g})"
            )
        source = raw.sources[int(raw.source_codes[index])]
        return f"source {source[:40]!r} must be at most {SOURCE_LENGTH} printable characters"

    def write(self, connection: Connection, raw: RawReadings, keep: BoolArray) -> int:
        rows = zip(
            [raw.symbols[c] for c in raw.symbol_codes[keep].tolist()],
            raw.ts[keep].tolist(),
            [raw.sources[c] for c in raw.source_codes[keep].tolist()],
            raw.long_share[keep].tolist(),
            _short(raw)[keep].tolist(),
            strict=True,
        )
        return upsert(
            connection,
            sentiment_readings,
            rows,
            columns=_READING_COLUMNS,
            key=_READING_KEY,
            update=(),
        )


def inspect_sentiment_files(
    paths: str | Path | Iterable[str | Path],
    *,
    layout: str | None = None,
    time_unit: str = "auto",
    latest_ms: int | None = None,
    failures: list[BadFileError] | None = None,
) -> list[SentimentFile]:
    """Find the sentiment files under ``paths`` and tell each one's layout and time unit.

    Raises NotASentimentFileError for the first file that is not sentiment data, and
    ImplausibleTimeError for one whose first time is before 1990 or after ``latest_ms``
    (default: an hour from now) in ``time_unit``.

    With ``failures`` (a list), a file that cannot be inspected (not of the kind, an
    implausible first time, a special or unreadable file) is added to it as a
    ``BadFileError`` instead, and the other files are inspected still.
    """
    inspect_one = functools.partial(
        inspect_sentiment_file, time_unit=time_unit, latest_ms=latest_ms
    )
    return inspect_files(
        paths,
        layout,
        layout_names("sentiment"),
        find_sentiment_files,
        inspect_one,
        failures=failures,
    )


def ingest_sentiment(
    engine: Engine,
    paths: str | Path | Iterable[str | Path],
    *,
    symbols: Collection[str] | None = None,
    tz: str | tzinfo = "UTC",
    layout: str | None = None,
    time_unit: str = "auto",
    source: str | None = None,
    sum_tolerance: float = DEFAULT_SUM_TOLERANCE,
    future_tolerance_seconds: float = DEFAULT_FUTURE_TOLERANCE_SECONDS,
    registry: CollectorRegistry | None = None,
    progress: Callable[[IngestProgress], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
    max_examples: int = 100,
    limits: ReadLimits | None = None,
) -> IngestReport:
    """Load sentiment files into ``sentiment_readings`` and report what was kept.

    ``tz`` is the zone of times without an offset (IG exports carry none). ``source``
    names the source of files without a source column (default ``ig`` for IG exports,
    else ''). ``time_unit`` is the unit of epoch-number times (``s``, ``ms``, ``us``,
    ``ns``), or ``auto``: told per file by the size of its first one. Every file is
    inspected before anything is written; one whose first time is before 1990 or in the
    future in its unit raises ImplausibleTimeError. A file damaged part way (corrupt
    compression, bytes that are not UTF-8, a CSV error) is read up to the damage, those
    rows stored, and the damage reported in ``report.failed_files`` (a ``BadFileError``
    naming file, line and reason); the next file goes on.
    """
    zone = parse_zone(tz) if isinstance(tz, str) else tz
    policy = QuotePolicy.of(symbols, False, future_tolerance_seconds, sum_tolerance)
    latest_ms = int(wall_clock() * 1000) + policy.future_tolerance_ms
    with reading_with(limits or ReadLimits()):  # inspection skips the lines reading will
        files = inspect_sentiment_files(
            paths, layout=layout, time_unit=time_unit, latest_ms=latest_ms
        )
    return ingest_chunks(
        engine,
        _Readings(),
        files,
        lambda sentiment_file: read_readings(sentiment_file, zone=zone, source=source),
        policy=policy,
        registry=registry,
        progress=progress,
        wall_clock=wall_clock,
        max_examples=max_examples,
        limits=limits,
    )


def write_sentiment(
    engine: Engine,
    readings: Iterable[SentimentReading | tuple[Any, ...]],
    *,
    symbols: Collection[str] | None = None,
    sum_tolerance: float = DEFAULT_SUM_TOLERANCE,
    future_tolerance_seconds: float = DEFAULT_FUTURE_TOLERANCE_SECONDS,
    registry: CollectorRegistry | None = None,
    wall_clock: Callable[[], float] = time.time,
    source: str = "write_sentiment",
    max_examples: int = 100,
) -> IngestReport:
    """Validate and store ``(symbol, ts_ms, long_share[, short_share[, source]])``
    readings (shares 0..1) in one transaction."""
    policy = QuotePolicy.of(symbols, False, future_tolerance_seconds, sum_tolerance)
    return write_chunk(
        engine,
        _Readings(),
        _readings_to_raw(readings, source),
        policy=policy,
        registry=registry,
        wall_clock=wall_clock,
        max_examples=max_examples,
    )


def _readings_to_raw(
    readings: Iterable[SentimentReading | tuple[Any, ...]], where: str
) -> RawReadings:
    symbols: dict[str, int] = {}
    sources: dict[str, int] = {}
    codes: list[int] = []
    source_codes: list[int] = []
    stamps: list[int] = []
    longs: list[float] = []
    shorts: list[float] = []
    lines: list[int] = []
    rejections: list[Rejection] = []
    for number, reading in enumerate(readings, start=1):
        try:
            if not 3 <= len(reading) <= 5:
                raise ValueError(f"expected 3 to 5 fields, got {len(reading)}")
            name, stamp = reading[0], reading[1]
            if not isinstance(name, str):
                raise ValueError(f"symbol must be text, got {name!r}")
            if isinstance(stamp, bool) or not isinstance(stamp, int | np.integer):
                raise ValueError(f"ts_ms must be an integer (epoch ms), got {stamp!r}")
            long = float(reading[2])
            short_value = reading[3] if len(reading) > 3 else None
            short = math.nan if short_value is None else float(short_value)
            origin = reading[4] if len(reading) > 4 else ""
            if not isinstance(origin, str):
                raise ValueError(f"source must be text, got {origin!r}")
        except (TypeError, ValueError) as exc:
            rejections.append(Rejection(where, number, "malformed", f"reading {number}: {exc}"))
            continue
        codes.append(symbols.setdefault(name, len(symbols)))
        source_codes.append(sources.setdefault(origin, len(sources)))
        stamps.append(int(stamp))
        longs.append(long)
        shorts.append(short)
        lines.append(number)
    return RawReadings(
        source=where,
        symbols=list(symbols),
        symbol_codes=np.array(codes, dtype=np.int32),
        sources=list(sources),
        source_codes=np.array(source_codes, dtype=np.int32),
        ts=np.array(stamps, dtype=np.int64),
        long_share=np.array(longs, dtype=np.float64),
        short_share=np.array(shorts, dtype=np.float64),
        lines=np.array(lines, dtype=np.int64),
        rejections=rejections,
    )


__all__ = [
    "DEFAULT_FUTURE_TOLERANCE_SECONDS",
    "DEFAULT_SUM_TOLERANCE",
    "LAYOUTS",
    "REJECT_REASONS",
    "SENTIMENT_WRITE_LOCK_KEY",
    "ImplausibleTimeError",
    "NotASentimentFileError",
    "SentimentFile",
    "SentimentReading",
    "ingest_sentiment",
    "inspect_sentiment_files",
    "sentiment_ingest_metrics",
    "write_sentiment",
]
