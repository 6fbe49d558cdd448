"""Alertmanager holds back stale-data alerts that a broken service of the same instance
explains: the shipped alerts/alertmanager.yml, on a real Alertmanager."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_executable
from tests.e2e.mds_process import wait_until
from tests.e2e.monitoring import WebhookReceiver, alertmanager, alertmanager_config
from tests.observability.rules import ALERTMANAGER_CONFIG

pytestmark = pytest.mark.slow


def alert(name: str, severity: str, instance: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "job": "mds",
            "instance": instance,
            **labels,
        },
        "annotations": {"summary": name},
        "startsAt": datetime.now(UTC).isoformat(),
    }


def test_a_broken_book_or_sentiment_service_holds_back_the_stale_data_it_causes(
    tmp_path: Path,
) -> None:
    executable = require_executable("prometheus-alertmanager", "prometheus-alertmanager")
    with (
        WebhookReceiver() as hook,
        alertmanager(
            executable, alertmanager_config(ALERTMANAGER_CONFIG, hook.url), tmp_path
        ) as am,
    ):
        am.post_json(
            "/api/v2/alerts",
            [
                alert("MdsCircuitBreakerOpen", "critical", "mds-1", service="DOMAggregatorService"),
                alert("MdsOrderBookStale", "critical", "mds-1", symbol="XRPUSDT"),  # held
                alert("MdsOrderBookStale", "critical", "mds-2", symbol="XRPUSDT"),  # other host
                alert(
                    "MdsServiceStalled", "critical", "mds-1", service="SentimentAggregatorService"
                ),
                alert("MdsSentimentStale", "warning", "mds-1", symbol="EUR/USD"),  # held
            ],
        )

        def received(name: str, instance: str, path: str) -> Any:
            return lambda p, a: (
                p == path
                and a["labels"]["alertname"] == name
                and a["labels"]["instance"] == instance
            )

        hook.wait_for(received("MdsCircuitBreakerOpen", "mds-1", "/mds-pager"), 30, "breaker")
        hook.wait_for(received("MdsServiceStalled", "mds-1", "/mds-pager"), 30, "stall")
        hook.wait_for(
            received("MdsOrderBookStale", "mds-2", "/mds-pager"), 30, "the other host's books"
        )

        def inhibited() -> set[str]:
            return {
                entry["labels"]["alertname"]
                for entry in am.get_json("/api/v2/alerts")
                if entry["labels"]["instance"] == "mds-1" and entry["status"]["inhibitedBy"]
            }

        wait_until(
            lambda: inhibited() == {"MdsOrderBookStale", "MdsSentimentStale"},
            10,
            "Alertmanager marks mds-1's stale books and sentiment inhibited",
        )
        time.sleep(3)  # three group intervals: a notification for them would have gone out
        sent = {(a["labels"]["alertname"], a["labels"]["instance"]) for _, a in hook.alerts()}
        assert ("MdsOrderBookStale", "mds-1") not in sent
        assert ("MdsSentimentStale", "mds-1") not in sent
