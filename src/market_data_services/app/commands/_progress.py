"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


class ProgressBar:
    """``[#######.......]  7/13 files  532,903 ticks  note``, redrawn in place.

    Does nothing when the stream is not a terminal (a pipe, a log file, CI), so output
    meant for machines stays clean. Redraws at most every ``min_interval`` seconds.
    """

    def __init__(
        self,
        total: int,
        *,
        unit: str,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval: float = 0.1,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._total = max(total, 0)
        self._unit = unit
        self._min_interval = min_interval
        self._last_draw = 0.0
        self._drawn = False

    @property
    def enabled(self) -> bool:
        """Whether the bar is drawn (stderr is a terminal, unless told)."""
        return self._enabled

    def update(self, done: int, detail: str = "", *, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self._min_interval and done < self._total:
            return
        self._last_draw = now
        width = shutil.get_terminal_size((80, 20)).columns
        fraction = done / self._total if self._total else 1.0
        bar_width = 24
        filled = int(bar_width * min(fraction, 1.0))
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}] {done}/{self._total} {self._unit}"
        if detail:
            line = f"{line}  {detail}"
        self._stream.write("\r" + line[: max(width - 1, 10)].ljust(max(width - 1, 10)))
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line, so what is printed next starts on a fresh one."""
        if self._enabled and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
