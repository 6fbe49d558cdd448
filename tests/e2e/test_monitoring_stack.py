"""The shipped alerts and dashboards against a real Prometheus and Alertmanager.

`mds run --demo` on PostgreSQL, scraped every second by Prometheus with the shipped rule
files (durations scaled down, see tests/e2e/monitoring.py), which sends its alerts to an
Alertmanager running the shipped configuration, whose webhooks point at a receiver in
the test. The database is locked for real, as a stuck job would lock it.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import require_executable
from tests.databases import DatabaseFactory
from tests.e2e.mds_process import MdsProcess, wait_until
from tests.e2e.monitoring import (
    Server,
    WebhookReceiver,
    alertmanager,
    alertmanager_config,
    prometheus,
    prometheus_config,
    scaled_rules,
)
from tests.observability.dashboards import dashboards, queries, variable_queries
from tests.observability.promql import metric_names
from tests.observability.rules import ALERTMANAGER_CONFIG, AWAITED_METRICS, RULE_FILES

pytestmark = pytest.mark.slow

PROMETHEUS_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus.yml"

#: Every `for:` and range of the shipped rules runs 30 times faster: `for: 1m` is 2 s.
TIME_SCALE = 1 / 30
#: What Grafana would put in the dashboards' variables with "All" selected.
DASHBOARD_VARIABLES = {
    "__rate_interval": "10s",
    "job": ".+",
    "instance": ".+",
    "service": ".+",
    "symbol": ".+",
}

#: The candle service runs every second and opens its breaker after two failures; the
#: breaker waits 3 s before a trial. A lock wait longer than 0.2 s is an error.
MDS_ARGS = [
    "--demo",
    "--set",
    "database.migrate=always",
    "--set",
    "database.busy_timeout_seconds=0.2",
    "--set",
    "services.candles.interval_seconds=1",
    "--set",
    "services.candles.circuit_breaker.failure_threshold=2",
    "--set",
    "services.candles.circuit_breaker.timeout_seconds=3",
]


@pytest.fixture(scope="module")
def prometheus_executable() -> str:
    return require_executable("prometheus", "prometheus")


@pytest.fixture(scope="module")
def alertmanager_executable() -> str:
    return require_executable("prometheus-alertmanager", "prometheus-alertmanager")


@contextlib.contextmanager
def ticks_locked(url: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on ``ticks``: no one reads or writes it meanwhile."""
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as connection:
        connection.execute("LOCK TABLE ticks IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.rollback()


def instant(server: Server, query: str) -> list[dict[str, Any]]:
    answer = server.get_json("/api/v1/query", query=query)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def substitute(expr: str) -> str:
    return re.sub(r"\$(\w+)", lambda m: DASHBOARD_VARIABLES[m.group(1)], expr)


def has_finite_point(server: Server, expr: str, start: float) -> bool:
    answer = server.get_json(
        "/api/v1/query_range", query=expr, start=str(start), end=str(time.time()), step="1"
    )
    assert answer["status"] == "success", (expr, answer)
    return any(
        math.isfinite(float(value))
        for series in answer["data"]["result"]
        for _, value in series["values"]
    )


def candle_breaker_alert(status: str) -> Any:
    def matches(path: str, alert: dict[str, Any]) -> bool:
        labels = alert["labels"]
        return (
            path == "/mds-pager"
            and labels.get("alertname") == "MdsCircuitBreakerOpen"
            and labels.get("service") == "AggregatorService"
            and alert["status"] == status
        )

    return matches


@pytest.mark.postgres
def test_locked_database_opens_the_candle_breaker_pages_and_resolves_and_dashboards_have_data(
    tmp_path: Path,
    database_factory: DatabaseFactory,
    prometheus_executable: str,
    alertmanager_executable: str,
) -> None:
    url = database_factory.url("postgresql")
    started = time.time()
    with contextlib.ExitStack() as stack:
        hook = stack.enter_context(WebhookReceiver())
        am = stack.enter_context(
            alertmanager(
                alertmanager_executable,
                alertmanager_config(ALERTMANAGER_CONFIG, hook.url),
                tmp_path / "alertmanager",
            )
        )
        (tmp_path / "mds").mkdir()
        mds = MdsProcess([*MDS_ARGS, "--db", url], cwd=tmp_path / "mds")
        stack.callback(mds.close)
        target = mds.url.removeprefix("http://")
        rules_dir = tmp_path / "rules"
        rules_dir.mkdir()
        config = prometheus_config(
            PROMETHEUS_CONFIG,
            rule_files=scaled_rules(RULE_FILES, rules_dir, TIME_SCALE),
            targets=[target],
            alertmanager_url=am.url,
            interval="1s",
        )
        prom = stack.enter_context(
            prometheus(prometheus_executable, config, tmp_path / "prometheus")
        )

        def candles_scraped_running() -> bool:
            running = instant(prom, 'mds_service_running{service="AggregatorService"} == 1')
            return bool(running)

        wait_until(candles_scraped_running, 60, "Prometheus sees the candle service running")
        assert instant(prom, 'ALERTS{alertname="MdsCircuitBreakerOpen"}') == []

        with ticks_locked(url):
            _, alert = hook.wait_for(
                candle_breaker_alert("firing"), 90, "the breaker alert reaches the pager"
            )
            assert alert["labels"] == {
                "alertname": "MdsCircuitBreakerOpen",
                "severity": "critical",
                "job": "mds",
                "instance": target,
                "service": "AggregatorService",
            }
            assert alert["annotations"]["runbook_url"].endswith("#mdscircuitbreakeropen")
            assert mds.health()[1]["services"]["AggregatorService"]["circuit_breaker"] in {
                "open",
                "half_open",
            }

        hook.wait_for(candle_breaker_alert("resolved"), 90, "the resolved notification")
        wait_until(
            lambda: mds.health()[1]["services"]["AggregatorService"]["circuit_breaker"] == "closed",
            30,
            "the candle breaker closed",
        )

        # Every dashboard query returns data from this Prometheus over the run (the
        # candle lag needs a minute to close after the start: wait for it).
        expressions = {
            where: substitute(expr)
            for dashboard in dashboards().values()
            for where, expr in queries(dashboard)
            if not metric_names(expr) & AWAITED_METRICS.keys()
        }
        missing = dict(expressions)

        def every_query_has_data() -> bool:
            for where, expr in list(missing.items()):
                if has_finite_point(prom, expr, started):
                    del missing[where]
            return not missing

        try:
            wait_until(every_query_has_data, 120, "every dashboard query has data")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; without data: {missing}") from None
        for dashboard in dashboards().values():
            for name, selector, label in variable_queries(dashboard):
                series = prom.get_json("/api/v1/series", **{"match[]": substitute(selector)})
                assert any(label in s for s in series["data"]), f"variable {name}: no {label}"


def test_alertmanager_inhibits_a_stopped_service_s_other_alerts(
    tmp_path: Path, alertmanager_executable: str
) -> None:
    def alert(name: str, service: str, severity: str = "critical") -> dict[str, Any]:
        return {
            "labels": {
                "alertname": name,
                "severity": severity,
                "job": "mds",
                "instance": "mds-1:17460",
                "service": service,
            },
            "annotations": {"summary": name},
            "startsAt": datetime.now(UTC).isoformat(),
        }

    def received(name: str, service: str, path: str) -> Any:
        return lambda p, a: (
            p == path and a["labels"]["alertname"] == name and a["labels"]["service"] == service
        )

    with (
        WebhookReceiver() as hook,
        alertmanager(
            alertmanager_executable,
            alertmanager_config(ALERTMANAGER_CONFIG, hook.url),
            tmp_path,
        ) as am,
    ):
        am.post_json(
            "/api/v2/alerts",
            [
                alert("MdsServiceNotRunning", "AggregatorService"),
                alert("MdsCircuitBreakerOpen", "AggregatorService"),  # inhibited
                alert("MdsCircuitBreakerOpen", "DemoFeedService"),  # another service
                alert("MdsIterationSlowerThanInterval", "DemoFeedService", "warning"),
            ],
        )
        hook.wait_for(
            received("MdsServiceNotRunning", "AggregatorService", "/mds-pager"), 30, "not running"
        )
        hook.wait_for(
            received("MdsCircuitBreakerOpen", "DemoFeedService", "/mds-pager"), 30, "other breaker"
        )
        hook.wait_for(
            received("MdsIterationSlowerThanInterval", "DemoFeedService", "/mds-tickets"),
            30,
            "the warning as a ticket",
        )

        def inhibited() -> bool:
            for entry in am.get_json("/api/v2/alerts"):
                labels = entry["labels"]
                if (labels["alertname"], labels["service"]) == (
                    "MdsCircuitBreakerOpen",
                    "AggregatorService",
                ):
                    return bool(entry["status"]["inhibitedBy"])
            return False

        wait_until(inhibited, 10, "Alertmanager marks the stopped service's breaker inhibited")
        time.sleep(3)  # three group intervals: a notification for it would have gone out
        assert not any(
            received("MdsCircuitBreakerOpen", "AggregatorService", "/mds-pager")(p, a)
            for p, a in hook.alerts()
        )
