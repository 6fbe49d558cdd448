"""The health report of ``/api/health/aggregators``.

The specification's shape and rule: a service is healthy when it runs, its breaker is not
open and its error rate is below 5 %; the answer is 200 when all are, 503 otherwise.
Two refinements, both reported in the JSON: the error rate that decides is taken over a
recent window (``recent_error_rate``; the specification's lifetime ``error_rate`` stays
beside it), so a service that recovered is healthy again without a restart; and an
iteration running past its deadline (``stuck``) makes the service degraded, since a hung
query keeps the breaker closed and the error count at zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from market_data_services.runtime import ThreadedBackgroundService
from market_data_services.runtime.service import utc_iso


@dataclass(frozen=True, kw_only=True)
class HealthRule:
    error_rate_threshold: float = 0.05
    #: Iterations older than this do not count in the deciding error rate (0: all kept).
    error_rate_window_seconds: float = 600.0


def _percent(rate: float) -> str:
    return f"{rate * 100:.2f}%"


def service_health(
    service: ThreadedBackgroundService, rule: HealthRule, now: float
) -> tuple[bool, dict[str, Any]]:
    """Whether ``service`` is healthy, and its entry in the report."""
    m = service.get_metrics()
    iterations, errors = m["iteration_count"], m["error_count"]
    outcomes = service.recent_outcomes()
    if rule.error_rate_window_seconds > 0:
        since = now - rule.error_rate_window_seconds
        outcomes = [o for o in outcomes if o[0] >= since]
    recent_errors = sum(1 for _, failed in outcomes if failed)
    recent_rate = recent_errors / max(len(outcomes), 1)
    breaker = m["circuit_breaker_state"]

    reasons: list[str] = []
    if not m["is_running"]:
        reasons.append("not running")
    if breaker == "open":
        reasons.append("circuit breaker open")
    if recent_rate >= rule.error_rate_threshold:
        reasons.append(
            f"error rate {_percent(recent_rate)} over the last {len(outcomes)} iterations "
            f">= {_percent(rule.error_rate_threshold)}"
        )
    if m["stuck"]:
        reasons.append(
            f"iteration running for {m['current_iteration_seconds']:.0f}s "
            f"(stuck after {m['stuck_after_seconds']:g}s)"
        )
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
        "skipped": m["skipped_count"],
        "overruns": m["overrun_count"],
        "stuck": m["stuck"],
        "current_iteration_seconds": round(m["current_iteration_seconds"], 3),
        "interval_seconds": m["interval_seconds"],
        "last_success": None if m["last_success_time"] is None else utc_iso(m["last_success_time"]),
        "last_error": last_error,
        "symbols": m["symbols"],
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
