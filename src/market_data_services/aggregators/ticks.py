"""Moved to ``market_data_services.ingest.ticks`` (issue 11).

This module re-exports its names so that imports written before still work; new code
imports them from ``market_data_services.ingest``.
"""

from market_data_services.ingest.ticks import (
    CHUNK_ROWS,
    DEFAULT_FUTURE_TOLERANCE_SECONDS,
    LAYOUTS,
    NUMBERINGS,
    REJECT_REASONS,
    TICK_WRITE_LOCK_KEY,
    ImplausibleTimeError,
    IngestProgress,
    IngestReport,
    NotATickFileError,
    Rejection,
    Tick,
    TickFile,
    check_symbol,
    ingest_ticks,
    inspect_tick_files,
    tick_metrics,
    write_ticks,
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
