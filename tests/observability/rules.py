"""The shipped alerting and recording rules, read once for the tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTS_DIR = REPO / "alerts"
RULE_FILES = sorted(ALERTS_DIR.glob("*-rules.yml"))
UNIT_TEST_FILES = sorted((ALERTS_DIR / "tests").glob("*.yaml"))
ALERTMANAGER_CONFIG = ALERTS_DIR / "alertmanager.yml"
RUNBOOK = REPO / "docs" / "runbook.md"

#: The one pattern of every alert's runbook link: its section in docs/runbook.md.
RUNBOOK_URL = (
    "https://github.com/market-data-services/market-data-services/blob/main/docs/runbook.md"
    "#{anchor}"
)

#: Metrics the rules or dashboards use that the service does not export yet, with the
#: work that adds them. Each is reported as a skip until it is exported. (The order-book
#: and sentiment gauges are exported since the DOM and sentiment services joined mds run.)
AWAITED_METRICS: dict[str, str] = {}

#: Series Prometheus makes itself rather than scraping them.
PROMETHEUS_SERIES = frozenset({"up"})


def load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        document = yaml.safe_load(handle)
    assert isinstance(document, dict), f"{path}: not a YAML mapping"
    return document


def rules() -> list[dict[str, Any]]:
    return [
        rule for path in RULE_FILES for group in load(path)["groups"] for rule in group["rules"]
    ]


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "record" in rule]


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")
