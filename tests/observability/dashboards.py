"""The shipped Grafana dashboards and their generator, read once for the tests."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
PROVISIONING_DIR = DASHBOARDS_DIR / "provisioning"

_LABEL_VALUES = re.compile(r"label_values\((?:(?P<expr>.+),\s*)?(?P<label>\w+)\)")


def generator() -> ModuleType:
    """dashboards/generate.py, imported from its file (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "mds_dashboards_generate", DASHBOARDS_DIR / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text())
    assert isinstance(document, dict)
    return document


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: load(path) for path in DASHBOARD_FILES}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"{dashboard['title']} / {panel['title']} / {target['refId']}", target["expr"]


def variable_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(variable, series selector or "", label) of every label_values() variable."""
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = _LABEL_VALUES.fullmatch(variable["query"])
        assert match, f"{variable['name']}: not label_values(...): {variable['query']}"
        yield variable["name"], match.group("expr") or "", match.group("label")
