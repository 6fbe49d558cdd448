"""Retail sentiment in: validation and storage of readings.

``ingest_sentiment(engine, paths, ...)`` loads sentiment files (``plain`` CSV with
percentages, or IG client sentiment exports; see ``layouts/sentiment.py``) into
``sentiment_readings``, as ``mds ingest sentiment`` does; ``write_sentiment(engine,
readings)`` stores readings from a live feed (shares 0..1). Values outside 0..100 %, or
long and short not adding up to 100 % (within ``sum_tolerance``), are rejected with the
reason, file and line.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.engine import Engine

from market_data_services.ingest.files import ImplausibleTimeError
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
    IngestProgress,
    IngestReport,
    Rejection,
    future_tolerance_ms,
    inspect_files,
    load_files,
)
from market_data_services.market.symbols import check_symbol, is_valid_symbol, symbol_rule
from market_data_services.runtime.telemetry import families_for
from market_data_services.runtime.validate import fraction
from market_data_services.storage.engine import begin_write
from market_data_services.storage.locks import SENTIMENT_WRITE_LOCK_KEY, hold_advisory_lock
from market_data_services.storage.schema import SOURCE_LENGTH, sentiment_readings
from market_data_services.storage.upsert import upsert
from market_data_services.timeutil import format_ms, parse_zone

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
)
_CODE = {reason: number for number, reason in enumerate(REJECT_REASONS, start=1)}

#: Default tolerance of |long + short - 1| (one percentage point).
DEFAULT_SUM_TOLERANCE = 0.01
_READING_COLUMNS = ("symbol", "ts", "source", "long_share", "short_share")
_READING_KEY = ("symbol", "ts", "source")


class SentimentReading(NamedTuple):
    """One reading for ``write_sentiment``: shares are fractions 0..1.

    ``short_share`` None means ``1 - long_share``.
    """

    symbol: str
    ts_ms: int
    long_share: float
    short_share: float | None = None
    source: str = ""


# -- metrics families ----------------------------------------------------------------------------


class _IngestFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "mds_sentiment_readings_written",
            "Sentiment readings stored as new rows.",
            registry=registry,
        )
        self.duplicates = Counter(
            "mds_sentiment_readings_duplicate",
            "Valid readings skipped because the same (symbol, time, source) was stored.",
            registry=registry,
        )
        self.rejected = Counter(
            "mds_sentiment_readings_rejected",
            "Sentiment readings rejected, by reason.",
            ["reason"],
            registry=registry,
        )
        self.by_reason = {reason: self.rejected.labels(reason) for reason in REJECT_REASONS}


def sentiment_ingest_metrics(registry: CollectorRegistry | None = None) -> _IngestFamilies:
    """The sentiment ingestion counters of ``registry`` (created, at zero, on first use)."""
    return families_for(registry, _IngestFamilies)


# -- ingestion -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Policy:
    symbols: frozenset[str] | None
    future_tolerance_ms: int
    sum_tolerance: float


def _policy(
    symbols: Collection[str] | None, future_tolerance_seconds: float, sum_tolerance: float
) -> _Policy:
    tolerance = future_tolerance_ms(future_tolerance_seconds)
    fraction(sum_tolerance, "sum_tolerance")
    allowed = None if symbols is None else frozenset(check_symbol(s) for s in symbols)
    return _Policy(
        symbols=allowed, future_tolerance_ms=tolerance, sum_tolerance=float(sum_tolerance)
    )


def _check(
    raw: RawReadings, policy: _Policy, now_ms: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], list[Rejection]]:
    """Which readings to keep, their short shares (1 - long where none), the rejections."""
    long, given_short, ts = raw.long_share, raw.short_share, raw.ts
    has_short = ~np.isnan(given_short) if len(raw) else np.zeros(0, dtype=np.bool_)
    short = np.where(has_short, given_short, 1.0 - long)
    reason = np.zeros(len(raw), dtype=np.int8)

    def mark(mask: npt.NDArray[np.bool_], name: str) -> None:
        reason[(reason == 0) & mask] = _CODE[name]

    mark(~np.isfinite(long) | (has_short & ~np.isfinite(given_short)), "not_finite")
    with np.errstate(invalid="ignore"):
        mark((long < 0) | (long > 1) | (short < 0) | (short > 1), "out_of_range")
        mark(np.abs(long + short - 1.0) > policy.sum_tolerance, "sum_mismatch")
    mark(ts < 0, "timestamp_out_of_range")
    mark(ts > now_ms + policy.future_tolerance_ms, "future_timestamp")
    per_symbol = np.zeros(max(len(raw.symbols), 1), dtype=np.int8)
    for code, name in enumerate(raw.symbols):
        if not is_valid_symbol(name):
            per_symbol[code] = _CODE["malformed"]
        elif policy.symbols is not None and name not in policy.symbols:
            per_symbol[code] = _CODE["unknown_symbol"]
    bad_source = np.array(
        [len(s) > SOURCE_LENGTH or not s.isprintable() for s in raw.sources] or [False]
    )
    if len(raw):
        pending = reason == 0
        reason[pending] = per_symbol[raw.symbol_codes][pending]
        mark(bad_source[raw.source_codes], "malformed")
    keep = reason == 0

    def message(name: str, index: int) -> str:
        symbol = raw.symbols[int(raw.symbol_codes[index])]
        stamp = int(ts[index])
        long_pct, short_pct = 100 * float(long[index]), 100 * float(short[index])
        if name == "not_finite":
            return f"{symbol}: long {long_pct} % and short {short_pct} % must be numbers"
        if name == "out_of_range":
            return f"{symbol}: long {long_pct:g} % and short {short_pct:g} % must be within 0..100"
        if name == "sum_mismatch":
            return (
                f"{symbol}: long {long_pct:g} % + short {short_pct:g} % = "
                f"{long_pct + short_pct:g} %, not 100 (tolerance {100 * policy.sum_tolerance:g})"
            )
        if name == "timestamp_out_of_range":
            return f"{symbol}: timestamp {stamp} ms is before 1970"
        if name == "future_timestamp":
            return (
                f"{symbol}: timestamp {format_ms(stamp)} is more than "
                f"{policy.future_tolerance_ms // 1000} s after now ({format_ms(now_ms)}); "
                f"wrong --tz?"
            )
        if name == "unknown_symbol":
            allowed = ", ".join(sorted(policy.symbols or ()))
            return f"symbol {symbol!r} is not among the symbols being loaded ({allowed})"
        if not is_valid_symbol(symbol):
            return f"symbol {symbol!r} is not a valid symbol ({symbol_rule()})"
        source = raw.sources[int(raw.source_codes[index])]
        return f"source {source[:40]!r} must be at most {SOURCE_LENGTH} printable characters"

    rejections = [
        Rejection(raw.source, int(raw.lines[i]), name, message(name, i))
        for i in np.flatnonzero(~keep).tolist()
        for name in [REJECT_REASONS[int(reason[i]) - 1]]
    ]
    return keep, short, rejections


def _store(
    engine: Engine,
    raw: RawReadings,
    *,
    policy: _Policy,
    now_ms: int,
    report: IngestReport,
    metrics: _IngestFamilies,
) -> None:
    report.rows += len(raw) + len(raw.rejections)
    keep, short, rejections = _check(raw, policy, now_ms)
    index = np.flatnonzero(keep)
    accepted = int(index.shape[0])
    written = 0
    if accepted:
        codes = raw.symbol_codes[index]
        ts = raw.ts[index]
        rows = zip(
            [raw.symbols[c] for c in codes.tolist()],
            ts.tolist(),
            [raw.sources[c] for c in raw.source_codes[index].tolist()],
            raw.long_share[index].tolist(),
            short[index].tolist(),
            strict=True,
        )
        with begin_write(engine) as connection:
            hold_advisory_lock(connection, SENTIMENT_WRITE_LOCK_KEY)
            written = upsert(
                connection,
                sentiment_readings,
                rows,
                columns=_READING_COLUMNS,
                key=_READING_KEY,
                update=(),
            )
            if written < 0:  # pragma: no cover - both our drivers report it
                written = accepted
        counts = np.bincount(codes, minlength=len(raw.symbols))
        for code, name in enumerate(raw.symbols):
            if counts[code]:
                mine = ts[codes == code]
                report._accept(name, int(counts[code]), int(mine.min()), int(mine.max()))
    report.accepted += accepted
    report.written += written
    report.duplicates += accepted - written
    for rejection in sorted(itertools.chain(raw.rejections, rejections), key=_line):
        report._reject(rejection)
        metrics.by_reason[rejection.reason].inc()
    metrics.written.inc(written)
    metrics.duplicates.inc(accepted - written)


def _line(rejection: Rejection) -> int:
    return rejection.line or 0


def _report(max_examples: int) -> IngestReport:
    return IngestReport(max_examples=max_examples, unit="readings", crossed_noun=None)


def inspect_sentiment_files(
    paths: str | Path | Iterable[str | Path],
    *,
    layout: str | None = None,
    time_unit: str = "auto",
    latest_ms: int | None = None,
) -> list[SentimentFile]:
    """Find the sentiment files under ``paths`` and tell each one's layout and time unit.

    Raises NotASentimentFileError for the first file that is not sentiment data, and
    ImplausibleTimeError for one whose first time is before 1990 or after ``latest_ms``
    (default: an hour from now) in ``time_unit``.
    """
    inspect_one = functools.partial(
        inspect_sentiment_file, time_unit=time_unit, latest_ms=latest_ms
    )
    return inspect_files(paths, layout, LAYOUTS, find_sentiment_files, inspect_one)


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
) -> IngestReport:
    """Load sentiment files into ``sentiment_readings`` and report what was kept.

    ``tz`` is the zone of times without an offset (IG exports carry none). ``source``
    names the source of files without a source column (default ``ig`` for IG exports,
    else ''). ``time_unit`` is the unit of epoch-number times (``s``, ``ms``, ``us``,
    ``ns``), or ``auto``: told per file by the size of its first one. Every file is
    inspected before anything is written; one whose first time is before 1990 or in the
    future in its unit raises ImplausibleTimeError.
    """
    zone = parse_zone(tz) if isinstance(tz, str) else tz
    policy = _policy(symbols, future_tolerance_seconds, sum_tolerance)
    latest_ms = int(wall_clock() * 1000) + policy.future_tolerance_ms
    files = inspect_sentiment_files(paths, layout=layout, time_unit=time_unit, latest_ms=latest_ms)
    metrics = sentiment_ingest_metrics(registry)
    report = _report(max_examples)
    return load_files(
        files,
        lambda sentiment_file: read_readings(sentiment_file, zone=zone, source=source),
        lambda chunk: _store(
            engine,
            chunk,
            policy=policy,
            now_ms=int(wall_clock() * 1000),
            report=report,
            metrics=metrics,
        ),
        report,
        progress,
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
    policy = _policy(symbols, future_tolerance_seconds, sum_tolerance)
    raw = _readings_to_raw(readings, source)
    report = _report(max_examples)
    _store(
        engine,
        raw,
        policy=policy,
        now_ms=int(wall_clock() * 1000),
        report=report,
        metrics=sentiment_ingest_metrics(registry),
    )
    return report


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
