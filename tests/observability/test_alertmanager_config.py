"""The shipped Alertmanager example: valid, and routing each alert where its severity says."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.observability.rules import ALERTMANAGER_CONFIG, REPO, alerting_rules, load

#: Where each severity must go.
RECEIVER_OF_SEVERITY = {"critical": "mds-pager", "warning": "mds-tickets"}


def amtool_run(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [amtool, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def route(amtool: str, labels: dict[str, str], expected: str) -> subprocess.CompletedProcess[str]:
    return amtool_run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={expected}",
        *(f"{key}={value}" for key, value in labels.items()),
    )


def test_alertmanager_config_passes_amtool_check(amtool: str) -> None:
    result = amtool_run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "rule",
    alerting_rules(),
    ids=lambda rule: f"{rule['alert']}-{rule['labels']['severity']}",
)
def test_each_alert_routes_to_the_receiver_of_its_severity(
    amtool: str, rule: dict[str, Any]
) -> None:
    labels = {**rule["labels"], "alertname": rule["alert"], "service": "AggregatorService"}
    expected = RECEIVER_OF_SEVERITY[labels["severity"]]
    result = route(amtool, labels, expected)
    assert result.returncode == 0, result.stdout + result.stderr


def test_routing_check_rejects_a_wrong_receiver(amtool: str) -> None:
    # The check above can fail: a critical alert is not a ticket.
    result = route(
        amtool, {"alertname": "MdsCircuitBreakerOpen", "severity": "critical"}, "mds-tickets"
    )
    assert result.returncode != 0


def test_an_alert_without_severity_still_reaches_a_receiver(amtool: str) -> None:
    result = route(amtool, {"alertname": "SomethingElse"}, "mds-tickets")
    assert result.returncode == 0, result.stdout + result.stderr


def test_notifications_are_grouped_by_service_and_resolved_ones_are_sent() -> None:
    config = load(ALERTMANAGER_CONFIG)
    assert "service" in config["route"]["group_by"]
    for receiver in config["receivers"]:
        for webhook in receiver["webhook_configs"]:
            assert webhook["send_resolved"] is True, receiver["name"]


def test_inhibition_names_only_alerts_that_exist() -> None:
    names = {rule["alert"] for rule in alerting_rules()}
    config = load(ALERTMANAGER_CONFIG)
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            # alertname="A", alertname!="A", or alertname=~"A|B" (not a wider pattern)
            match = re.fullmatch(r'alertname(!?=~?)"(\w+(?:\|\w+)*)"', matcher)
            if match:
                for name in match.group(2).split("|"):
                    assert name in names, matcher
