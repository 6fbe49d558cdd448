"""The shipped alerts stay quiet on a healthy service at the shipped intervals.

promtool unit tests feed the rules series sampled exactly when the test says, so they
cannot see races between scrapes and rule groups. Here a real Prometheus runs
deploy/prometheus.yml as shipped (15 s scrapes and evaluations; only the target, the rule
file paths and the Alertmanager address point at the test's servers) with the shipped
rule files unchanged, against `mds run --demo`, whose demo feed runs every second and
book service every five, both faster than Prometheus looks.

Whether a race shows depends on where in the 15 s cycle the scrape falls between the
rule groups' evaluations; Prometheus places each target's scrape by a hash of its labels
and each group's evaluation by a hash of its name and file. So the one process is listed
as several targets, each with its own ``instance`` label and hence its own scrape phase:
a race between scrapes and groups shows in some of them whatever port the service got.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_executable
from tests.e2e.mds_process import MdsProcess, wait_until
from tests.e2e.monitoring import (
    WebhookReceiver,
    alertmanager,
    alertmanager_config,
    prometheus,
    prometheus_config,
)
from tests.observability.rules import ALERTMANAGER_CONFIG, RULE_FILES

pytestmark = pytest.mark.slow

PROMETHEUS_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus.yml"

#: How long Prometheus watches the service: twelve and more evaluations at 15 s, long
#: enough for every `for: 1m` and `for: 2m` of a wrongly pending alert to run out.
WATCH_SECONDS = 200.0
#: Alerts may be pending while the first scrapes come in, not after this.
SETTLE_SECONDS = 60.0
POLL_SECONDS = 3.0
#: Targets, all the same process: about one scrape phase a second of the 15 s cycle.
PHASES = 12


@pytest.fixture(scope="module")
def prometheus_executable() -> str:
    return require_executable("prometheus", "prometheus")


@pytest.fixture(scope="module")
def alertmanager_executable() -> str:
    return require_executable("prometheus-alertmanager", "prometheus-alertmanager")


def describe(alert: dict[str, Any]) -> str:
    """``Name{labels} state``, the alert's identity in a report."""
    labels = alert["labels"]
    rest = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    return f"{labels['alertname']}{{{rest}}} {alert['state']}"


def test_a_healthy_demo_raises_no_alert_at_the_shipped_scrape_and_evaluation_intervals(
    tmp_path: Path, prometheus_executable: str, alertmanager_executable: str
) -> None:
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
        mds = MdsProcess(["--demo"], cwd=tmp_path / "mds")
        stack.callback(mds.close)
        address = mds.url.removeprefix("http://")
        config = prometheus_config(
            PROMETHEUS_CONFIG,
            rule_files=RULE_FILES,
            targets=[address],
            alertmanager_url=am.url,
        )
        (job,) = config["scrape_configs"]
        job["static_configs"] = [
            {"targets": [address], "labels": {"instance": f"{address}#{phase}"}}
            for phase in range(PHASES)
        ]
        prom = stack.enter_context(
            prometheus(prometheus_executable, config, tmp_path / "prometheus")
        )
        started = time.monotonic()

        def scraped() -> bool:
            answer = prom.get_json("/api/v1/query", query='up{job="mds"} == 1')
            return bool(answer["data"]["result"])

        wait_until(scraped, 60, "Prometheus scraped mds")

        wrong: dict[str, str] = {}  # alert -> when it was first seen, and its value
        unhealthy: list[str] = []
        while (elapsed := time.monotonic() - started) < WATCH_SECONDS:
            for alert in prom.get_json("/api/v1/alerts")["data"]["alerts"]:
                if alert["state"] == "firing" or elapsed >= SETTLE_SECONDS:
                    wrong.setdefault(describe(alert), f"{elapsed:.0f}s value={alert['value']}")
            status, health = mds.health()
            if status != 200:
                unhealthy.append(f"{elapsed:.0f}s {health}")
            time.sleep(POLL_SECONDS)

        assert not wrong, (
            f"alerts on a healthy service at {config['global']} "
            f"(health not 200 at: {unhealthy or 'never'}):\n"
            + "\n".join(f"{when}: {what}" for what, when in sorted(wrong.items()))
        )
        assert hook.alerts() == []
