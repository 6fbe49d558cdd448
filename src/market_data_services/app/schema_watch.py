"""``SchemaWatch``: whether the database schema is the newest, for ``/readyz``.

A probe must not wait on the database for this, so the answer is read ahead: once at
start, then every ``health.schema_check_interval_seconds`` on a thread of its own.
Entering and leaving "not current" are logged once each, with what to run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from market_data_services.runtime import FailureCondition
from market_data_services.storage.migrate import SchemaStatus, is_schema_error, schema_status
from market_data_services.timeutil import utc_iso

logger = logging.getLogger(__name__)

#: What a service's failing iterations show when a table or column is missing.
SCHEMA_NOT_CURRENT = FailureCondition(
    name="schema_not_current",
    hint="a table or column of the database schema is missing: "
    "run `mds db upgrade`, or restore a dropped table",
)


def schema_condition(error: Exception) -> FailureCondition | None:
    """The services' failure classifier: a missing table or column is a known condition."""
    return SCHEMA_NOT_CURRENT if is_schema_error(error) else None


class SchemaWatch:
    """The last read of the schema's state, refreshed on a named daemon thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        url: str,
        interval_seconds: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._url = url  # for the messages, password masked
        self._interval = interval_seconds
        self._wall_clock = wall_clock
        # Guarded by _lock: the latest status, when it was read, the latest read error.
        self._lock = threading.Lock()
        self._status: SchemaStatus | None = None
        self._checked_at: float | None = None
        self._read_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def seed(self, status: SchemaStatus) -> None:
        """Record a status read elsewhere (start-up's), without logging it."""
        with self._lock:
            self._status, self._checked_at = status, self._wall_clock()

    def check(self) -> SchemaStatus:
        """Read the schema now, record it, log a change; raises if the database cannot be read."""
        try:
            status = schema_status(self._engine)
        except Exception as exc:
            with self._lock:
                first = self._read_error is None
                self._read_error = type(exc).__name__
            if first:
                logger.warning(
                    "database.schema_check_failed",
                    extra={"error_type": type(exc).__name__, "error": _first_line(exc)},
                )
            raise
        with self._lock:
            before = self._status
            self._status, self._checked_at, self._read_error = status, self._wall_clock(), None
        problem = status.problem(self._url)
        if problem is not None and (before is None or before.problem(self._url) != problem):
            logger.error(
                "database.schema_not_current",
                extra={"revision": status.revision, "head": status.head, "problem": problem},
            )
        elif problem is None and before is not None and not before.current:
            logger.info("database.schema_current", extra={"revision": status.revision})
        return status

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Whether the last read found the schema current, and the fields /readyz shows."""
        with self._lock:
            status, checked_at, read_error = self._status, self._checked_at, self._read_error
        if status is None:
            return False, {"schema": False}
        fields: dict[str, Any] = {
            "schema": status.current,
            "schema_revision": status.revision,
            "schema_checked_at": None if checked_at is None else utc_iso(checked_at),
        }
        problem = status.problem(self._url)
        if problem is not None:
            fields["schema_problem"] = problem
        if read_error is not None:
            fields["schema_check_error"] = read_error
        return status.current, fields

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="mds-schema-watch", daemon=True)
        self._thread = thread
        thread.start()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end; wait up to ``timeout`` (a read in flight may outlast it)."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            # A failed read is logged once by check(); the last status stands meanwhile.
            with contextlib.suppress(Exception):
                self.check()


def _first_line(error: BaseException) -> str:
    return next(iter(str(error).splitlines()), type(error).__name__)
