"""The health report of ``/api/health/aggregators``.

The specification's shape and rule: a service is healthy when it runs, its breaker is not
open and its error rate is below 5 %; the answer is 200 when all are, 503 otherwise.
Our refinements, each reported in the JSON:

- Failing now: a service whose latest iteration failed is degraded, whatever its rate.
- Recovered: the error rate is taken over a recent window (``recent_error_rate``: the
  last ``error_rate_window_seconds``, and at least the last ``error_rate_min_iterations``
  iterations; the specification's lifetime ``error_rate`` stays beside it), and a rate
  at or above the threshold degrades the service only when its failures came in two or
  more separate runs (``failure_runs``). One run of failures followed by a success is an
  outage that is over: the service is healthy at its first good iteration, not when the
  outage has left the window. Failures on and off are not over: they keep it degraded.
- Stuck: an iteration running past its deadline makes the service degraded, since a hung
  query keeps the breaker closed and the error count at zero.
- ``condition``: a known cause an operator must remove (a missing schema), with its hint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from market_data_services.runtime import ThreadedBackgroundService
from market_data_services.timeutil import utc_iso


@dataclass(frozen=True, kw_only=True)
class HealthRule:
    error_rate_threshold: float = 0.05
    #: Iterations older than this do not count in the deciding error rate (0: all kept).
    error_rate_window_seconds: float = 600.0
    #: The window holds at least this many iterations, however old, so the rate of a
    #: slow service (one iteration a minute) is not judged on a handful of them.
    error_rate_min_iterations: int = 20


def _percent(rate: float) -> str:
    return f"{rate * 100:.2f}%"


def _window(
    outcomes: list[tuple[float, bool]], rule: HealthRule, now: float
) -> list[tuple[float, bool]]:
    """The outcomes the error rate is taken over (oldest first)."""
    if rule.error_rate_window_seconds <= 0:
        return outcomes
    since = now - rule.error_rate_window_seconds
    recent = [o for o in outcomes if o[0] >= since]
    if len(recent) < rule.error_rate_min_iterations:
        recent = outcomes[-rule.error_rate_min_iterations :]
    return recent


def _failure_runs(outcomes: list[tuple[float, bool]]) -> int:
    """How many unbroken runs of failed iterations ``outcomes`` holds."""
    runs = 0
    previous_failed = False
    for _, failed in outcomes:
        if failed and not previous_failed:
            runs += 1
        previous_failed = failed
    return runs


def _consecutive_failures(outcomes: list[tuple[float, bool]]) -> int:
    count = 0
    for _, failed in reversed(outcomes):
        if not failed:
            break
        count += 1
    return count


def service_health(
    service: ThreadedBackgroundService, rule: HealthRule, now: float
) -> tuple[bool, dict[str, Any]]:
    """Whether ``service`` is healthy, and its entry in the report."""
    m = service.get_metrics()
    iterations, errors = m["iteration_count"], m["error_count"]
    kept = service.recent_outcomes()
    outcomes = _window(kept, rule, now)
    recent_errors = sum(1 for _, failed in outcomes if failed)
    recent_rate = recent_errors / max(len(outcomes), 1)
    runs = _failure_runs(outcomes)
    consecutive = _consecutive_failures(kept)
    breaker = m["circuit_breaker_state"]

    reasons: list[str] = []
    if not m["is_running"]:
        reasons.append("not running")
    if breaker == "open":
        reasons.append("circuit breaker open")
    if consecutive:
        reasons.append(
            "the latest iteration failed"
            if consecutive == 1
            else f"the last {consecutive} iterations failed"
        )
    if recent_rate >= rule.error_rate_threshold and runs >= 2:
        reasons.append(
            f"error rate {_percent(recent_rate)} over the last {len(outcomes)} iterations "
            f">= {_percent(rule.error_rate_threshold)}, in {runs} separate runs of failures"
        )
    if m["stuck"]:
        reasons.append(
            f"iteration running for {m['current_iteration_seconds']:.0f}s "
            f"(stuck after {m['stuck_after_seconds']:g}s)"
        )
    condition = m["condition"]
    if condition is not None:
        reasons.append(condition["hint"])
    healthy = not reasons
    last_error = m["recent_errors"][-1] if m["recent_errors"] else None
    entry = {
        # The specification's fields.
        "status": "healthy" if healthy else "degraded",
        "running": m["is_running"],
        "circuit_breaker": breaker,
        "iterations": iterations,
        "errors": errors,
        "error_rate": _percent(errors / max(iterations, 1)),
        # Ours.
        "reasons": reasons,
        "recent_error_rate": _percent(recent_rate),
        "recent_iterations": len(outcomes),
        "recent_errors": recent_errors,
        "failure_runs": runs,
        "consecutive_failures": consecutive,
        "condition": None if condition is None else condition["name"],
        "skipped": m["skipped_count"],
        "overruns": m["overrun_count"],
        "stuck": m["stuck"],
        "current_iteration_seconds": round(m["current_iteration_seconds"], 3),
        "interval_seconds": m["interval_seconds"],
        "last_success": None if m["last_success_time"] is None else utc_iso(m["last_success_time"]),
        "last_error": last_error,
        "symbols": m["symbols"],
        # The symbols this instance works: all, unless shared with other instances
        # (PostgreSQL), with how many share them and which had no owner at the last claim.
        "owned_symbols": m["owned_symbols"],
        "ownership": m["ownership"],
    }
    return healthy, entry


def health_report(
    services: Sequence[ThreadedBackgroundService],
    rule: HealthRule,
    *,
    wall_clock: Callable[[], float] = time.time,
) -> tuple[int, dict[str, Any]]:
    """The HTTP status (200 or 503) and the JSON body."""
    now = wall_clock()
    entries: dict[str, Any] = {}
    all_healthy = True
    for service in services:
        healthy, entry = service_health(service, rule, now)
        entries[service.service_name] = entry
        all_healthy = all_healthy and healthy
    body = {
        "overall_status": "healthy" if all_healthy else "degraded",
        "services": entries,
        "checked_at": utc_iso(now),
    }
    return (200 if all_healthy else 503), body
