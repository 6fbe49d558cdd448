"""What both tick layouts share: the file and parsed-tick types, and finding and opening
the files (plain text, gzip or a single-member zip; the compression is told from the
bytes, not the name)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

from market_data_services.ingest.files import TextLines, WrongFileKindError, find_files, open_text
from market_data_services.ingest.pipeline import Rejection

#: Name endings ``find_tick_files`` picks from a directory.
TICK_FILE_SUFFIXES = (".csv", ".csv.gz", ".zip", ".gz", ".txt")


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class NotATickFileError(WrongFileKindError):
    """A file that is not tick data at all (as opposed to a file with some bad rows)."""

    kind = "a tick"


@dataclass
class RawTicks:
    """Parsed rows of one source (or one chunk of it), not yet validated.

    Columns share one length. ``symbol_codes`` index ``symbols``. ``volume`` is NaN and
    ``has_volume`` False where a row has none; ``has_volume`` is None when no row can
    have one (the source has no volume column).
    """

    source: str
    symbols: list[str]
    symbol_codes: npt.NDArray[np.int32]
    ts: IntArray
    bid: FloatArray
    ask: FloatArray
    volume: FloatArray
    has_volume: BoolArray | None
    lines: IntArray
    rejections: list[Rejection] = field(default_factory=list)
    #: The kept rows' order among equal (symbol, ts), numbered by the ingest once the
    #: rows are checked (in file order, before the chunk is handed to a writer).
    seq: IntArray | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True)
class TickFile:
    """A file whose layout is known: what ``inspect_file`` found."""

    path: Path
    layout: str
    day: date | None = None  # lean: the date in the file name
    columns: tuple[str, ...] = ()  # plain: the header, lower-cased
    #: plain: the unit of epoch-number times as stated (auto: told by the first one) ...
    time_unit: str = "auto"
    #: ... and, with auto, the unit the first one told (None: no epoch number seen).
    told_unit: str | None = None

    @property
    def has_symbol_column(self) -> bool:
        return "symbol" in self.columns


def find_tick_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the tick files under the directories named, sorted by path."""
    return find_files(paths, TICK_FILE_SUFFIXES)


def open_tick_text(path: Path) -> TextLines:
    return open_text(path, NotATickFileError)


__all__ = [
    "TICK_FILE_SUFFIXES",
    "NotATickFileError",
    "RawTicks",
    "TickFile",
    "find_tick_files",
    "open_tick_text",
]
