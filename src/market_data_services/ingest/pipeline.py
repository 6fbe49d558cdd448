"""What every ingester shares: rejections with their place, the report, the policy, and
the loop over files.

Ticks, order-book snapshots and sentiment readings are loaded the same way: each row is
validated, bad rows are rejected with a reason code and their file and line, good rows
beside them are kept, and an ``IngestReport`` says what happened.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

from market_data_services.market.symbols import check_symbol
from market_data_services.timeutil import format_ms

#: Default allowance for feed clocks running ahead of ours.
DEFAULT_FUTURE_TOLERANCE_SECONDS = 3600.0


class Rejection(NamedTuple):
    """One rejected row: where it was, why (a reason code), and a readable message."""

    source: str
    line: int | None
    reason: str
    message: str

    @property
    def where(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class IngestProgress(NamedTuple):
    """Handed to an ingester's ``progress`` callback after each file."""

    files_done: int
    files_total: int
    rows: int
    path: str


@dataclass
class IngestReport:
    """What an ingestion did. ``accepted == written + duplicates``.

    ``unit`` names what was loaded (ticks, snapshots, readings) in ``summary()``;
    ``crossed_noun`` names the crossed and locked count there (``quotes``, ``books``),
    and None leaves it out (sentiment has no such state).
    """

    files: int = 0
    rows: int = 0
    accepted: int = 0
    written: int = 0
    duplicates: int = 0
    rejected: int = 0
    crossed: int = 0
    locked: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    symbols: dict[str, int] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None
    max_examples: int = 100
    unit: str = "ticks"
    crossed_noun: str | None = "quotes"

    def _reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.rejected_by_reason[rejection.reason] = (
            self.rejected_by_reason.get(rejection.reason, 0) + 1
        )
        if len(self.rejections) < self.max_examples:
            self.rejections.append(rejection)

    def _accept(self, symbol: str, count: int, first_ts: int, last_ts: int) -> None:
        self.symbols[symbol] = self.symbols.get(symbol, 0) + count
        self.first_ts = first_ts if self.first_ts is None else min(self.first_ts, first_ts)
        self.last_ts = last_ts if self.last_ts is None else max(self.last_ts, last_ts)

    def summary(self) -> str:
        """One line: ``1,144,807 ticks accepted (1,144,807 new, 0 already stored), ...``."""
        parts = [
            f"{self.accepted:,} {self.unit} accepted ({self.written:,} new, "
            f"{self.duplicates:,} already stored)",
            f"{self.rejected:,} rejected",
        ]
        if self.crossed_noun is not None:
            parts.append(f"{self.crossed:,} crossed and {self.locked:,} locked {self.crossed_noun}")
        if self.first_ts is not None and self.last_ts is not None:
            parts.append(f"from {format_ms(self.first_ts)} to {format_ms(self.last_ts)}")
        return "; ".join(parts)


def future_tolerance_ms(seconds: float) -> int:
    """``future_tolerance_seconds`` checked and in milliseconds."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not (seconds >= 0 and math.isfinite(seconds))
    ):
        raise ValueError(f"future_tolerance_seconds must be a finite number >= 0, got {seconds!r}")
    return int(seconds * 1000)


__all__ = [
    "DEFAULT_FUTURE_TOLERANCE_SECONDS",
    "IngestProgress",
    "IngestReport",
    "QuotePolicy",
    "Rejection",
    "future_tolerance_ms",
    "inspect_files",
    "load_files",
]


class _DataFile(Protocol):
    @property
    def path(self) -> Path: ...


F = TypeVar("F", bound=_DataFile)
C = TypeVar("C")


def inspect_files(
    paths: str | Path | Iterable[str | Path],
    layout: str | None,
    layouts: Sequence[str],
    find: Callable[[list[str | Path]], Iterable[Path]],
    inspect_one: Callable[[Path, str | None], F],
) -> list[F]:
    """Find the files under ``paths`` and inspect each (its layout) before any is loaded."""
    if layout is not None and layout not in layouts:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(layouts)}")
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    return [inspect_one(path, layout) for path in find(items)]


def load_files(
    files: Sequence[F],
    chunks: Callable[[F], Iterable[C]],
    store: Callable[[C], None],
    report: IngestReport,
    progress: Callable[[IngestProgress], None] | None,
) -> IngestReport:
    """Store every chunk of every file in order; count files and report progress."""
    for done, data_file in enumerate(files, start=1):
        for chunk in chunks(data_file):
            store(chunk)
        report.files += 1
        if progress is not None:
            progress(IngestProgress(done, len(files), report.rows, str(data_file.path)))
    return report


@dataclass(frozen=True, kw_only=True)
class QuotePolicy:
    """What a tick or book ingester accepts: which symbols, crossed quotes, how far ahead."""

    symbols: frozenset[str] | None
    reject_crossed: bool
    future_tolerance_ms: int

    @classmethod
    def of(
        cls,
        symbols: Collection[str] | None,
        reject_crossed: bool,
        future_tolerance_seconds: float,
    ) -> QuotePolicy:
        """Checked arguments: bad symbols and tolerances raise ValueError naming them."""
        allowed = None
        if symbols is not None:
            allowed = frozenset(check_symbol(name) for name in symbols)
        return cls(
            symbols=allowed,
            reject_crossed=bool(reject_crossed),
            future_tolerance_ms=future_tolerance_ms(future_tolerance_seconds),
        )
