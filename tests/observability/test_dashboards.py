"""The shipped dashboards: current with their generator, linted as Grafana's
dashboard-linter would, and reading only metrics the service exports."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.observability.dashboards import (
    DASHBOARD_FILES,
    DASHBOARDS_DIR,
    PROVISIONING_DIR,
    dashboards,
    generator,
    panels,
    queries,
    variable_queries,
)
from tests.observability.promql import counters_read_raw, metric_names
from tests.observability.rules import AWAITED_METRICS, recording_rules

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
#: Units the panels may use: a subset of dashboard-linter's panel-units-rule list.
UNITS = {"none", "s", "ops", "cps", "percentunit"}
#: Variables every dashboard has, and the ones only some have.
COMMON_VARIABLES = ["datasource", "job", "instance"]
OPTIONAL_VARIABLES = {"service", "symbol"}
SELECTOR = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^{}]*\})?")

DASHBOARDS = dashboards()


def each_dashboard() -> Any:
    return pytest.mark.parametrize("dashboard", DASHBOARDS.values(), ids=list(DASHBOARDS))


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    module = generator()
    assert sorted(module.DASHBOARDS) == [path.name for path in DASHBOARD_FILES]
    for name, build in module.DASHBOARDS.items():
        committed = (DASHBOARDS_DIR / name).read_text()
        assert committed == module.render(build()), (
            f"dashboards/{name} is not current: run python dashboards/generate.py"
        )


def test_dashboard_uids_are_unique() -> None:
    uids = [dashboard["uid"] for dashboard in DASHBOARDS.values()]
    assert len(uids) == len(set(uids))


@each_dashboard()
def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), dashboard["title"]


@each_dashboard()
def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


@each_dashboard()
def test_one_datasource_variable_used_by_every_panel_target_and_variable(
    dashboard: dict[str, Any],
) -> None:
    variables = dashboard["templating"]["list"]
    sources = [v for v in variables if v["type"] == "datasource"]
    assert len(sources) == 1
    assert sources[0]["name"] == "datasource"
    assert sources[0]["label"] == "Data source"
    assert sources[0]["query"] == "prometheus"
    for variable in variables:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE_REF, variable["name"]
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]


@each_dashboard()
def test_label_variables_are_multi_select_with_all_matching_anything(
    dashboard: dict[str, Any],
) -> None:
    variables = dashboard["templating"]["list"]
    names = [v["name"] for v in variables]
    assert names[:3] == COMMON_VARIABLES
    assert set(names[3:]) <= OPTIONAL_VARIABLES
    for variable in variables:
        if variable["type"] != "query":
            continue
        assert variable["label"] == variable["name"].title()
        assert variable["multi"] is True, variable["name"]
        assert variable["includeAll"] is True, variable["name"]
        assert variable["allValue"] == ".+", variable["name"]
        assert variable["refresh"] == 2, f"{variable['name']}: refresh on time-range change"


@each_dashboard()
def test_every_panel_has_a_title_description_and_unit(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert panel["title"].strip(), panel["id"]
        if panel["type"] == "row":
            continue
        assert panel["description"].strip(), panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"] in UNITS, panel["title"]
        assert panel["targets"], panel["title"]


@each_dashboard()
def test_every_query_selects_by_job_and_instance(dashboard: dict[str, Any]) -> None:
    for where, expr in queries(dashboard):
        selectors = [
            (m.group(1), m.group(2) or "")
            for m in SELECTOR.finditer(expr)
            if m.group(1) in metric_names(expr)
        ]
        assert selectors, where
        for name, braces in selectors:
            assert 'job=~"$job"' in braces, f"{where}: {name} lacks the job matcher"
            assert 'instance=~"$instance"' in braces, f"{where}: {name} lacks the instance matcher"


@each_dashboard()
def test_every_range_is_the_rate_interval(dashboard: dict[str, Any]) -> None:
    for where, expr in queries(dashboard):
        for window in re.findall(r"\[([^\]]*)\]", expr):
            assert window == "$__rate_interval", f"{where}: [{window}]"


@each_dashboard()
def test_counters_are_read_through_rate_or_increase(dashboard: dict[str, Any]) -> None:
    for where, expr in queries(dashboard):
        assert counters_read_raw(expr) == set(), where


def dashboard_metric_names() -> set[str]:
    names: set[str] = set()
    for dashboard in DASHBOARDS.values():
        for _, expr in queries(dashboard):
            names |= metric_names(expr)
        for _, selector, _ in variable_queries(dashboard):
            names |= metric_names(selector)
    return names


def test_dashboards_read_only_metrics_the_service_exports(
    demo_scrape: dict[str, object],
) -> None:
    recorded = {rule["record"] for rule in recording_rules()}
    unknown = dashboard_metric_names() - demo_scrape.keys() - recorded - AWAITED_METRICS.keys()
    assert unknown == set(), "dashboards read series that `mds run --demo` does not export"


def test_variables_select_labels_the_service_exports(demo_scrape: dict[str, Any]) -> None:
    for dashboard in DASHBOARDS.values():
        for name, selector, label in variable_queries(dashboard):
            for metric in metric_names(selector) or {""}:
                samples = demo_scrape.get(metric, [])
                assert any(label in labels for labels, _ in samples) or label in {
                    "job",
                    "instance",
                }, f"{dashboard['title']}: variable {name} lists {label} of {metric}"


def symbols_of(metrics: set[str], scrape: dict[str, Any]) -> set[str]:
    return {
        labels["symbol"]
        for metric in metrics
        for labels, _ in scrape.get(metric, [])
        if "symbol" in labels
    }


def test_the_symbol_variable_lists_every_symbol_a_panel_shows(
    demo_scrape: dict[str, Any],
) -> None:
    # The demo has ticks and sentiment of EUR/USD and NZD/USD and books of XRPUSDT only:
    # a list taken from one kind of data would leave another kind's row empty.
    for dashboard in DASHBOARDS.values():
        for name, selector, _ in variable_queries(dashboard):
            if name != "symbol":
                continue
            listed = symbols_of(metric_names(selector), demo_scrape)
            for where, expr in queries(dashboard):
                if 'symbol=~"$symbol"' in expr:
                    shown = symbols_of(metric_names(expr), demo_scrape)
                    assert shown, f"{where}: no symbol in the demo's scrape"
                    assert shown <= listed, f"{where}: {sorted(shown - listed)} not in $symbol"


def test_dashboards_awaiting_metrics_from_other_work(demo_scrape: dict[str, object]) -> None:
    used = dashboard_metric_names()
    awaited = {name: why for name, why in AWAITED_METRICS.items() if name in used}
    exported = awaited.keys() & demo_scrape.keys()
    assert exported == set(), f"exported now, drop from AWAITED_METRICS: {sorted(exported)}"
    if awaited:
        pytest.skip(f"panels wait for metrics not exported yet: {awaited}")


def test_provisioning_loads_these_dashboards_and_a_prometheus_datasource() -> None:
    (provider_file,) = (PROVISIONING_DIR / "dashboards").glob("*.yml")
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/mds"
    (source_file,) = (PROVISIONING_DIR / "datasources").glob("*.yml")
    (source,) = yaml.safe_load(source_file.read_text())["datasources"]
    assert source["type"] == "prometheus"
