"""Tick ingestion: validate quotes and bulk-write them to the ``ticks`` table.

Two entry points:

- ``ingest_ticks(engine, paths, symbol=..., tz=..., layout=...)`` reads tick files
  (``plain`` or ``lean`` layout; ``.csv``, ``.csv.gz``, single-member ``.zip``; files or
  directories), as ``mds ingest ticks`` does;
- ``write_ticks(engine, ticks)`` writes ``(symbol, ts_ms, bid, ask, volume | None)``
  records from a live feed.

Both validate every row and return an ``IngestReport``: how many were accepted (new or
already stored) and rejected, by reason, with file and line for each rejection. Bad rows
never stop the good ones beside them. Crossed (ask < bid) and locked (ask == bid) quotes
are real market states: they are kept and counted, and crossed ones are rejected only with
``reject_crossed=True``.

A tick's identity is (symbol, ts, seq), ``seq`` numbering ticks with equal ``ts`` in
arrival order within one file or one ``write_ticks`` call; a tick already stored is
skipped, so loading the same file twice adds nothing.
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
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from market_data_services.ingest.files import (
    BadFileError,
    ImplausibleTimeError,
    ReadLimits,
    reading_with,
)
from market_data_services.ingest.layouts.base import layout_names
from market_data_services.ingest.layouts.ticks import (
    LAYOUTS,
    NotATickFileError,
    RawTicks,
    TickFile,
    find_tick_files,
    inspect_file,
    read_chunks,
)
from market_data_services.ingest.pipeline import (
    DEFAULT_FUTURE_TOLERANCE_SECONDS,
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
from market_data_services.market.symbols import check_symbol
from market_data_services.runtime.telemetry import families_for
from market_data_services.storage.bulk import insert_columns_in_range
from market_data_services.storage.locks import TICK_WRITE_LOCK_KEY
from market_data_services.storage.schema import ticks
from market_data_services.timeutil import parse_zone

#: Why a row can be rejected: the ``reason`` label of ``mds_ticks_rejected_total``.
REJECT_REASONS = (
    "malformed",  # unparseable row, wrong field count, bad symbol text
    "not_finite",  # NaN or infinite bid, ask or volume
    "non_positive_price",  # bid or ask <= 0
    "negative_volume",
    "timestamp_out_of_range",  # before 1990 (in a file's unit) or 1970, after year 9999
    "future_timestamp",  # later than now + future_tolerance_seconds
    "unknown_symbol",  # not among the symbols being ingested
    "crossed",  # ask < bid, only with reject_crossed=True
    "line_too_long",  # a line over ingest.max_line_bytes (not read)
    "field_too_long",  # a CSV field over ingest.max_field_chars
)

_TICK_KEY = ("symbol", "ts", "seq")
#: How ``write_ticks`` numbers ticks with equal times (see its docstring).
NUMBERINGS = ("append", "batch")
#: Rows per transaction when a file is long. Two chunks are alive while one is written
#: behind the reading of the next (``pipeline.WriteBehind``), so half of the 250,000 a
#: chunk held when they were written one after the other: the same peak memory. On
#: PostgreSQL, with two writers, three are (a LEAN file of 100 MB: 212 MB peak against
#: 161 MB with one writer); none of it grows with the file.
CHUNK_ROWS = 125_000


class Tick(NamedTuple):
    """One quote for ``write_ticks``; a plain tuple in this order works as well."""

    symbol: str
    ts_ms: int
    bid: float
    ask: float
    volume: float | None = None


_METRICS = MetricNames(
    written=("mds_ticks_written", "Ticks stored as new rows."),
    duplicates=(
        "mds_ticks_duplicate",
        "Valid ticks skipped because the same tick (symbol, time, order) was stored.",
    ),
    rejected=("mds_ticks_rejected", "Ticks rejected, by reason."),
    crossed=(
        "mds_ticks_crossed",
        "Crossed quotes seen (ask below bid); kept unless reject_crossed.",
    ),
    locked=("mds_ticks_locked", "Locked quotes seen (ask equal to bid); kept."),
)


def _families(registry: CollectorRegistry) -> IngestFamilies:
    return IngestFamilies(registry, _METRICS, REJECT_REASONS)


def tick_metrics(registry: CollectorRegistry | None = None) -> IngestFamilies:
    """The ingestion counters of ``registry`` (created, at zero, on first use)."""
    return families_for(registry, _families)


# -- numbering equal times ----------------------------------------------------------------------


class _SeqNumbering:
    """Numbers ticks with equal (symbol, ts) in arrival order across the chunks of a source.

    Keeps the count of every (symbol, ts) seen so far as two sorted arrays, so numbering
    stays exact even when a long file goes back in time between chunks.
    """

    _SHIFT = np.int64(1 << 44)  # ts < 2^44 ms (year 2527); symbol codes above it

    def __init__(self) -> None:
        self._keys: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._counts: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)

    def number(
        self, codes: npt.NDArray[np.int32], ts: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        count = len(ts)
        if count == 0:
            return np.empty(0, dtype=np.int64)
        keys = codes.astype(np.int64) * self._SHIFT + ts
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.empty(count, dtype=np.bool_)
        starts[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts[1:])
        positions = np.arange(count, dtype=np.int64)
        run_start = np.maximum.accumulate(np.where(starts, positions, 0))
        rank = positions - run_start
        if len(self._keys):
            at = np.searchsorted(self._keys, sorted_keys)
            inside = at < len(self._keys)
            found = np.zeros(count, dtype=np.bool_)
            found[inside] = self._keys[at[inside]] == sorted_keys[inside]
            rank = rank + np.where(found, self._counts[np.minimum(at, len(self._keys) - 1)], 0)
        seq = np.empty(count, dtype=np.int64)
        seq[order] = rank
        unique, per_key = np.unique(sorted_keys, return_counts=True)
        merged = np.concatenate([self._keys, unique])
        merged_counts = np.concatenate([self._counts, per_key])
        self._keys, inverse = np.unique(merged, return_inverse=True)
        self._counts = np.bincount(inverse, weights=merged_counts).astype(np.int64)
        return seq


# -- writing -----------------------------------------------------------------------------------


class _Ticks(IngestKind[RawTicks]):
    """Tick quotes: finite positive prices, volumes >= 0; crossed and locked quotes.

    Ticks with equal (symbol, ts) are numbered (``seq``) in arrival order within one
    source; with ``after_stored`` (``write_ticks``' append numbering) after the ticks
    already stored at that time.
    """

    unit = "ticks"
    kind = "ticks"
    crossed_noun = "quotes"
    reasons = REJECT_REASONS
    lock_key = TICK_WRITE_LOCK_KEY
    symbol_in_messages = False

    def __init__(self, *, after_stored: bool = False) -> None:
        self._after_stored = after_stored
        # Files' ticks are numbered within the file: their writers need no order.
        self.parallel_writes = not after_stored
        self._numbering = _SeqNumbering()  # owned by the reading thread

    def families(self, registry: CollectorRegistry | None) -> IngestFamilies:
        return tick_metrics(registry)

    def start_source(self) -> None:
        self._numbering = _SeqNumbering()  # equal times are numbered within one source

    def check(self, raw: RawTicks, checks: Checks, policy: QuotePolicy) -> None:
        bid, ask = raw.bid, raw.ask
        finite = np.isfinite(bid) & np.isfinite(ask)
        has_volume = raw.has_volume
        if has_volume is not None:
            finite &= ~has_volume | np.isfinite(raw.volume)
        checks.mark(~finite, "not_finite")
        with np.errstate(invalid="ignore"):
            checks.mark((bid <= 0) | (ask <= 0), "non_positive_price")
            if has_volume is not None:
                checks.mark(has_volume & (raw.volume < 0), "negative_volume")

    def crossed_and_locked(self, raw: RawTicks, valid: BoolArray) -> tuple[BoolArray, BoolArray]:
        with np.errstate(invalid="ignore"):
            return valid & (raw.ask < raw.bid), valid & (raw.ask == raw.bid)

    def describe(
        self, raw: RawTicks, name: str, index: int, checks: Checks, policy: QuotePolicy
    ) -> str:
        bid, ask = float(raw.bid[index]), float(raw.ask[index])
        if name == "not_finite":
            volume = float(raw.volume[index])
            has_volume = raw.has_volume is not None and bool(raw.has_volume[index])
            bad = [
                f"{field} {value}"
                for field, value in (("bid", bid), ("ask", ask), ("volume", volume))
                if not math.isfinite(value) and (field != "volume" or has_volume)
            ]
            return f"{' and '.join(bad)} is not a finite number"
        if name == "non_positive_price":
            return f"price must be > 0, got bid {bid} ask {ask}"
        if name == "negative_volume":
            return f"volume must be >= 0, got {float(raw.volume[index])}"
        return f"crossed quote: ask {ask} below bid {bid} (rejected by reject_crossed)"

    def prepare(self, raw: RawTicks, keep: BoolArray) -> None:
        raw.seq = self._numbering.number(raw.symbol_codes[keep], raw.ts[keep])

    def write(self, connection: Connection, raw: RawTicks, keep: BoolArray) -> int:
        codes, stamps = raw.symbol_codes[keep], raw.ts[keep]
        assert raw.seq is not None, "prepare() numbers the kept ticks before they are written"
        seq = raw.seq
        if self._after_stored:
            # Inside the write lock, so no other writer can take the same numbers.
            seq = seq + _next_seq(connection, raw.symbols, codes, stamps)
        volume = _volume_column(raw, keep)
        bid, ask = raw.bid[keep], raw.ask[keep]
        # One symbol at a time, each in file order: the symbol is then one constant
        # parameter, not a value per row. (Ids follow file order within a symbol.)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(raw.symbols) + 1))
        written = 0
        for code, name in enumerate(raw.symbols):
            mine = order[bounds[code] : bounds[code + 1]]
            if not len(mine):
                continue
            columns: dict[str, npt.NDArray[Any] | str] = {
                "symbol": name,
                "ts": stamps[mine],
                "seq": seq[mine],
                "bid": bid[mine],
                "ask": ask[mine],
            }
            if volume is not None:
                columns["volume"] = volume[mine]
            # The common first load has nothing stored in its range: no conflict checks.
            written += insert_columns_in_range(
                connection, ticks, columns, ranged="ts", key=_TICK_KEY
            )
        return written


def _volume_column(raw: RawTicks, keep: BoolArray) -> npt.NDArray[np.float64] | None:
    """The kept ticks' volumes, NaN where a tick has none (stored as NULL), or None when
    no kept tick has one."""
    if raw.has_volume is None:
        return None
    present = raw.has_volume[keep]
    if not present.any():
        return None
    return np.where(present, raw.volume[keep], np.nan)


def _next_seq(
    connection: Connection,
    symbols: list[str],
    codes: npt.NDArray[np.int32],
    stamps: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Per row, how many ticks are already stored with the same symbol and time."""
    offsets = np.zeros(len(stamps), dtype=np.int64)
    query = text(
        "SELECT ts, max(seq) + 1 FROM ticks "
        "WHERE symbol = :symbol AND ts >= :low AND ts <= :high GROUP BY ts"
    )
    for code, name in enumerate(symbols):
        rows = np.flatnonzero(codes == code)
        if not len(rows):
            continue
        mine = stamps[rows]
        found = connection.execute(
            query, {"symbol": name, "low": int(mine.min()), "high": int(mine.max())}
        ).all()
        if not found:
            continue
        known = np.array([r[0] for r in found], dtype=np.int64)
        following = np.array([r[1] for r in found], dtype=np.int64)
        at = np.searchsorted(known, mine)
        inside = at < len(known)
        hit = np.zeros(len(mine), dtype=np.bool_)
        hit[inside] = known[at[inside]] == mine[inside]
        offsets[rows[hit]] = following[at[hit]]
    return offsets


# -- the API -----------------------------------------------------------------------------------


def inspect_tick_files(
    paths: str | Path | Iterable[str | Path],
    *,
    layout: str | None = None,
    time_unit: str = "auto",
    latest_ms: int | None = None,
    failures: list[BadFileError] | None = None,
) -> list[TickFile]:
    """Find the tick files under ``paths`` and tell each one's layout and time unit from
    its first rows, reading nothing more.

    Raises NotATickFileError for the first file that is not tick data, and
    ImplausibleTimeError for one whose first time is before 1990 or after ``latest_ms``
    (default: an hour from now) in ``time_unit``, so a mistake is reported before
    anything is written.

    With ``failures`` (a list), a file that cannot be inspected (not of the kind, an
    implausible first time, a special or unreadable file) is added to it as a
    ``BadFileError`` instead, and the other files are inspected still.
    """
    inspect_one = functools.partial(inspect_file, time_unit=time_unit, latest_ms=latest_ms)
    return inspect_files(
        paths, layout, layout_names("ticks"), find_tick_files, inspect_one, failures=failures
    )


def ingest_ticks(
    engine: Engine,
    paths: str | Path | Iterable[str | Path],
    *,
    symbol: str | None = None,
    symbols: Collection[str] | None = None,
    tz: str | tzinfo = "UTC",
    layout: str | None = None,
    time_unit: str = "auto",
    reject_crossed: bool = False,
    future_tolerance_seconds: float = DEFAULT_FUTURE_TOLERANCE_SECONDS,
    registry: CollectorRegistry | None = None,
    progress: Callable[[IngestProgress], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
    max_examples: int = 100,
    limits: ReadLimits | None = None,
) -> IngestReport:
    """Load tick files into the ``ticks`` table and report what was accepted and rejected.

    ``symbol`` names the symbol of files without a symbol column (required for lean).
    Rows of a plain file with a symbol column must name ``symbol`` (or one of ``symbols``)
    when given, else they are rejected as ``unknown_symbol``. ``tz`` is the zone of times
    that carry none (an IANA name or a fixed offset such as ``UTC-05:00``). ``layout``
    forces ``plain`` or ``lean``; by default it is told from each file's first line.
    ``time_unit`` is the unit of epoch-number times (``s``, ``ms``, ``us``, ``ns``), or
    ``auto``: told per file by the size of its first one.

    Every file is inspected before anything is written: a file that is not tick data
    raises NotATickFileError, and one whose first time is before 1990 or in the future
    in its unit raises ImplausibleTimeError; nothing is loaded then. Each file is then
    written in transactions of up to ``CHUNK_ROWS`` rows. A file damaged part way (corrupt
    compression, bytes that are not UTF-8, a CSV error) is read up to the damage, those
    rows stored, and the damage reported in ``report.failed_files`` (a ``BadFileError``
    naming file, line and reason); the next file goes on.
    """
    zone = parse_zone(tz) if isinstance(tz, str) else tz
    if symbol is not None:
        check_symbol(symbol)
    allowed = symbols
    if allowed is None and symbol is not None:
        allowed = [symbol]
    policy = QuotePolicy.of(allowed, reject_crossed, future_tolerance_seconds)
    latest_ms = int(wall_clock() * 1000) + policy.future_tolerance_ms
    with reading_with(limits or ReadLimits()):  # inspection skips the lines reading will
        files = inspect_tick_files(paths, layout=layout, time_unit=time_unit, latest_ms=latest_ms)
    if symbol is None:
        missing = [f for f in files if not f.has_symbol_column]
        if missing:
            raise ValueError(
                f"{missing[0].path}: the file has no symbol column; give the symbol (--symbol SYM)"
            )
    return ingest_chunks(
        engine,
        _Ticks(),
        files,
        lambda tick_file: read_chunks(tick_file, symbol=symbol, zone=zone, chunk_rows=CHUNK_ROWS),
        policy=policy,
        registry=registry,
        progress=progress,
        wall_clock=wall_clock,
        max_examples=max_examples,
        limits=limits,
    )


def write_ticks(
    engine: Engine,
    records: Iterable[Tick | tuple[Any, ...]],
    *,
    symbols: Collection[str] | None = None,
    reject_crossed: bool = False,
    future_tolerance_seconds: float = DEFAULT_FUTURE_TOLERANCE_SECONDS,
    registry: CollectorRegistry | None = None,
    wall_clock: Callable[[], float] = time.time,
    source: str = "write_ticks",
    max_examples: int = 100,
    numbering: str = "append",
) -> IngestReport:
    """Validate and store ``(symbol, ts_ms, bid, ask, volume | None)`` records in one
    transaction; ``ts_ms`` is UTC epoch milliseconds.

    ``symbols``, when given, is the set of symbols accepted (others are rejected as
    ``unknown_symbol``). Records with equal (symbol, ts_ms) keep the order given.

    ``numbering`` says what a record with the same symbol and time as a stored tick is:

    - ``"append"`` (default, a live feed): a new tick that arrived after the stored ones;
      ticks with equal times split over several calls are all kept, in arrival order;
    - ``"batch"`` (a replayable batch): ticks are numbered within the call, so sending
      the same batch again adds nothing, like loading a file twice.
    """
    if numbering not in NUMBERINGS:
        raise ValueError(f"unknown numbering {numbering!r}; valid: {', '.join(NUMBERINGS)}")
    policy = QuotePolicy.of(symbols, reject_crossed, future_tolerance_seconds)
    return write_chunk(
        engine,
        _Ticks(after_stored=numbering == "append"),
        _records_to_raw(records, source),
        policy=policy,
        registry=registry,
        wall_clock=wall_clock,
        max_examples=max_examples,
    )


def _records_to_raw(records: Iterable[Tick | tuple[Any, ...]], source: str) -> RawTicks:
    codes: dict[str, int] = {}
    symbol_codes: list[int] = []
    ts_list: list[int] = []
    bids: list[float] = []
    asks: list[float] = []
    volumes: list[float] = []
    has_volume: list[bool] = []
    lines: list[int] = []
    rejections: list[Rejection] = []
    for number, record in enumerate(records, start=1):
        try:
            if len(record) not in (4, 5):
                raise ValueError(f"expected 4 or 5 fields, got {len(record)}")
            name = record[0]
            if not isinstance(name, str):
                raise ValueError(f"symbol must be text, got {name!r}")
            stamp = record[1]
            if isinstance(stamp, bool) or not isinstance(stamp, int | np.integer):
                raise ValueError(f"ts_ms must be an integer (epoch ms), got {stamp!r}")
            bid, ask = float(record[2]), float(record[3])
            volume = record[4] if len(record) == 5 else None
            volume_value = float("nan") if volume is None else float(volume)
        except (TypeError, ValueError) as exc:
            rejections.append(Rejection(source, number, "malformed", f"record {number}: {exc}"))
            continue
        code = codes.setdefault(name, len(codes))
        symbol_codes.append(code)
        ts_list.append(int(stamp))
        bids.append(bid)
        asks.append(ask)
        volumes.append(volume_value)
        has_volume.append(volume is not None)
        lines.append(number)
    return RawTicks(
        source=source,
        symbols=list(codes),
        symbol_codes=np.array(symbol_codes, dtype=np.int32),
        ts=np.array(ts_list, dtype=np.int64),
        bid=np.array(bids, dtype=np.float64),
        ask=np.array(asks, dtype=np.float64),
        volume=np.array(volumes, dtype=np.float64),
        has_volume=np.array(has_volume, dtype=np.bool_),
        lines=np.array(lines, dtype=np.int64),
        rejections=rejections,
    )


__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_FUTURE_TOLERANCE_SECONDS",
    "LAYOUTS",
    "NUMBERINGS",
    "REJECT_REASONS",
    "TICK_WRITE_LOCK_KEY",
    "ImplausibleTimeError",
    "IngestProgress",
    "IngestReport",
    "NotATickFileError",
    "Rejection",
    "Tick",
    "TickFile",
    "check_symbol",
    "ingest_ticks",
    "inspect_tick_files",
    "tick_metrics",
    "write_ticks",
]
