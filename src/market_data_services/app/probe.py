"""A check for ``/readyz`` that answers on time even when what it checks hangs.

Running the check on the HTTP worker thread would let a hung database hold one worker per
request until every worker is stuck and ``/metrics`` and ``/healthz`` stop answering.
Instead one check runs at a time, on its own thread. The request that starts it waits for
it up to ``deadline_seconds``; requests meanwhile answer from the previous result (or wait
too, when there is none yet); once the check has run past its deadline every request
answers "not ready" at once, until it ends. A result is reused for ``fresh_seconds``, so
a burst of probes costs one check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    #: Why not ok, in a few words (an exception's type name, or the deadline).
    error: str | None
    #: Clock time of the result.
    at: float


@dataclass
class _Flight:
    """One run of the check."""

    started: float
    done: threading.Event = field(default_factory=threading.Event)
    result: ProbeResult | None = None  # written by the check's thread before done.set()


class SingleFlightProbe:
    """``check()`` runs ``probe`` (which raises when not ok) as described above."""

    def __init__(
        self,
        probe: Callable[[], None],
        *,
        name: str,
        deadline_seconds: float = 1.5,
        fresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._name = name
        self._deadline = deadline_seconds
        self._fresh = fresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last: ProbeResult | None = None  # guarded by _lock
        self._flight: _Flight | None = None  # guarded by _lock

    def check(self) -> ProbeResult:
        now = self._clock()
        with self._lock:
            last, flight = self._last, self._flight
            if flight is None:
                if last is not None and now - last.at < self._fresh:
                    return last
                flight = self._flight = _Flight(started=now)
                starter = True
            else:
                starter = False
        if starter:
            threading.Thread(
                target=self._run, args=(flight,), name=f"mds-probe-{self._name}", daemon=True
            ).start()
        elif last is not None and now - flight.started < self._deadline:
            return last
        flight.done.wait(max(0.0, flight.started + self._deadline - now))
        result = flight.result
        if result is None:
            return ProbeResult(False, f"no answer within {self._deadline:g} s", self._clock())
        return result

    def _run(self, flight: _Flight) -> None:
        error: str | None = "the check ended abnormally"
        try:
            self._probe()
            error = None
        except Exception as exc:
            logger.debug("probe.failed", extra={"probe": self._name, "error": repr(exc)})
            error = type(exc).__name__
        finally:
            result = ProbeResult(error is None, error, self._clock())
            flight.result = result
            with self._lock:
                self._last = result
                self._flight = None
            flight.done.set()
