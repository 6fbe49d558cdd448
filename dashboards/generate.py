"""Generate the Grafana dashboards of market-data-services from one description.

    python dashboards/generate.py           # rewrite dashboards/*.json
    python dashboards/generate.py --check   # exit 1 if a committed file is not current

The JSON files are what Grafana loads (file provisioning or import); this script is how
they are edited, so that every panel gets the same datasource, variables, label matchers
and legend conventions. tests/observability/test_dashboards.py checks that the committed
files are what this script writes, and lints them.

Conventions (Grafana's dashboard-linter): one ``datasource`` variable that every panel
and variable uses; ``job``, ``instance`` (and ``service``, ``symbol``) variables,
multi-select with ``allValue: ".+"``, refreshed on time-range change; every query
matches ``job=~"$job"`` and ``instance=~"$instance"``; every range is
``[$__rate_interval]``; counters (``_total``) only inside ``rate()``/``increase()``;
every panel has a title, a description and a unit.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: Grafana's classic dashboard JSON model. Grafana migrates older schema versions
#: forward when it loads a dashboard, so any release since this version reads it as is.
SCHEMA_VERSION = 41
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["market-data-services", "mds"]
RANGE = "[$__rate_interval]"

COLORS = {"green": "green", "yellow": "yellow", "red": "red", "blue": "blue", "gray": "text"}


def matchers(*extra: str) -> str:
    """The label matchers every query carries, plus ``extra``."""
    return "{" + ", ".join(['job=~"$job"', 'instance=~"$instance"', *extra]) + "}"


SERVICE = matchers('service=~"$service"')
SYMBOL = matchers('symbol=~"$symbol"')
ALL = matchers()


# -- panels ----------------------------------------------------------------------------------


@dataclass
class Target:
    expr: str
    legend: str


@dataclass
class Panel:
    title: str
    description: str
    unit: str
    targets: list[Target]
    kind: str = "timeseries"  # or "stat", "state-timeline"
    width: int = 12
    height: int = 8
    #: Value -> (text, colour): shown instead of the number (states, signals).
    mappings: dict[int, tuple[str, str]] = field(default_factory=dict)
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    #: Draw a dashed line at these values, in this colour (thresholds of the alerts).
    threshold: tuple[float, str] | None = None
    stack: bool = False


@dataclass
class Row:
    title: str
    panels: list[Panel]


def _field_config(panel: Panel) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if panel.threshold is not None:
        value, color = panel.threshold
        steps.append({"color": color, "value": value})
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "color": {"mode": "palette-classic" if not panel.mappings else "thresholds"},
        "thresholds": {"mode": "absolute", "steps": steps},
        "mappings": [],
    }
    if panel.mappings:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    str(value): {"text": text, "color": COLORS[color], "index": index}
                    for index, (value, (text, color)) in enumerate(sorted(panel.mappings.items()))
                },
            }
        ]
        defaults["color"] = {"mode": "fixed", "fixedColor": "text"}
    for key in ("decimals", "min", "max"):
        value = getattr(panel, key)
        if value is not None:
            defaults[key] = value
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10 if panel.stack else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "dashed" if panel.threshold else "off"},
        }
    elif panel.kind == "state-timeline":
        defaults["custom"] = {"fillOpacity": 80, "lineWidth": 0}
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "value_and_name",
        }
    if panel.kind == "state-timeline":
        return {
            "mergeValues": True,
            "showValue": "auto",
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        }
    return {
        "legend": {
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
            "calcs": ["lastNotNull", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": _field_config(panel),
        "options": _options(panel),
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": DATASOURCE,
                "editorMode": "code",
                "expr": target.expr,
                "legendFormat": target.legend,
                "range": True,
                "instant": False,
            }
            for index, target in enumerate(panel.targets)
        ],
    }


def _layout(rows: list[Row]) -> list[dict[str, Any]]:
    """Rows one under the other; panels left to right, wrapping at Grafana's 24 columns."""
    panels: list[dict[str, Any]] = []
    next_id = 1
    y = 0
    for row in rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + line_height
                line_height = 0
            panels.append(_panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


# -- variables and dashboards ----------------------------------------------------------------


def _query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,  # on time-range change
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "regex": "",
        "hide": 0,
        "options": [],
    }


def _variables(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "includeAll": False,
            "multi": False,
            "options": [],
        },
        _query_variable("job", "Job", "label_values(mds_service_running, job)"),
        _query_variable(
            "instance", "Instance", 'label_values(mds_service_running{job=~"$job"}, instance)'
        ),
        *extra,
    ]


def _dashboard(
    uid: str, title: str, description: str, variables: list[Any], rows: list[Row]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "Market data services",
                "type": "dashboards",
                "tags": ["market-data-services"],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": _layout(rows),
    }


BREAKER_STATES = {0: ("closed", "green"), 1: ("half_open", "yellow"), 2: ("open", "red")}
BY_SERVICE = "by (instance, service)"
LEGEND_SERVICE = "{{service}} {{instance}}"


def services_overview() -> dict[str, Any]:
    def rate(metric: str) -> str:
        return f"sum {BY_SERVICE} (rate({metric}{SERVICE}{RANGE}))"

    def quantile(q: float) -> str:
        return (
            f"histogram_quantile({q}, sum by (le, instance, service) "
            f"(rate(mds_service_iteration_duration_seconds_bucket{SERVICE}{RANGE})))"
        )

    rows = [
        Row(
            "Status",
            [
                Panel(
                    "Running",
                    "Whether each service's loop thread is alive (mds_service_running). A "
                    "stopped service does no work; MdsServiceNotRunning pages after 2 minutes.",
                    "none",
                    [Target(f"max {BY_SERVICE} (mds_service_running{SERVICE})", LEGEND_SERVICE)],
                    kind="stat",
                    width=8,
                    mappings={0: ("stopped", "red"), 1: ("running", "green")},
                ),
                Panel(
                    "Circuit breaker state",
                    "Worst breaker state seen in each step: closed (working), half_open (a "
                    "trial iteration is allowed), open (iterations skipped). Read through "
                    "max_over_time so a short opening between scrapes still shows.",
                    "none",
                    [
                        Target(
                            f"max {BY_SERVICE} (max_over_time("
                            f"mds_service_circuit_breaker_state{SERVICE}{RANGE}))",
                            LEGEND_SERVICE,
                        )
                    ],
                    kind="state-timeline",
                    width=16,
                    mappings=BREAKER_STATES,
                ),
                Panel(
                    "Time since last success",
                    "Seconds since each service last finished an iteration without error, "
                    "as each scrape found it, beside the alert's threshold (three of its "
                    "intervals, at least a minute): MdsServiceStalled pages when the first "
                    "stays above the second for a minute.",
                    "s",
                    [
                        Target(
                            f"max {BY_SERVICE} "
                            f"(timestamp(mds_service_last_success_timestamp_seconds{SERVICE}) "
                            f"- (mds_service_last_success_timestamp_seconds{SERVICE} > 0))",
                            LEGEND_SERVICE,
                        ),
                        Target(
                            f"clamp_min(3 * max {BY_SERVICE} "
                            f"(mds_service_interval_seconds{SERVICE}), 60)",
                            "threshold {{service}} {{instance}}",
                        ),
                    ],
                ),
                Panel(
                    "Current iteration time",
                    "How long the iteration in flight has been running (0 between "
                    "iterations). A value that keeps growing is a stuck iteration.",
                    "s",
                    [
                        Target(
                            f"max {BY_SERVICE} "
                            f"(mds_service_iteration_in_progress_seconds{SERVICE})",
                            LEGEND_SERVICE,
                        )
                    ],
                ),
            ],
        ),
        Row(
            "Throughput and errors",
            [
                Panel(
                    "Iteration rate",
                    "Iterations run per second, failed ones included, skipped ones not.",
                    "ops",
                    [Target(rate("mds_service_iterations_total"), LEGEND_SERVICE)],
                ),
                Panel(
                    "Error ratio",
                    "Share of iterations that raised. The objective allows 1 % of attempts "
                    "to fail or be skipped over 30 days (alerts/recording-rules.yml).",
                    "percentunit",
                    [
                        Target(
                            f"{rate('mds_service_errors_total')} / "
                            f"{rate('mds_service_iterations_total')}",
                            LEGEND_SERVICE,
                        )
                    ],
                    min=0,
                    threshold=(0.01, "red"),
                ),
                Panel(
                    "Skipped iterations",
                    "Iterations per second skipped because the circuit breaker was open: "
                    "work that was due and not done.",
                    "ops",
                    [Target(rate("mds_service_iterations_skipped_total"), LEGEND_SERVICE)],
                ),
                Panel(
                    "Overruns",
                    "Iterations per second that ended after the next one was due (slower "
                    "than the interval). MdsIterationSlowerThanInterval opens a ticket when "
                    "more than 10 % overrun for 15 minutes.",
                    "ops",
                    [Target(rate("mds_service_iteration_overruns_total"), LEGEND_SERVICE)],
                ),
            ],
        ),
        Row(
            "Iteration time",
            [
                Panel(
                    "Iteration time p50 / p95 / p99",
                    "Quantiles of the time one iteration took, from the "
                    "mds_service_iteration_duration_seconds histogram, beside the configured "
                    "interval: an iteration longer than its interval delays the next one.",
                    "s",
                    [
                        Target(quantile(0.5), "p50 {{service}} {{instance}}"),
                        Target(quantile(0.95), "p95 {{service}} {{instance}}"),
                        Target(quantile(0.99), "p99 {{service}} {{instance}}"),
                        Target(
                            f"max {BY_SERVICE} (mds_service_interval_seconds{SERVICE})",
                            "interval {{service}} {{instance}}",
                        ),
                    ],
                    width=24,
                ),
            ],
        ),
        Row(
            "Symbol ownership",
            [
                Panel(
                    "Symbols owned",
                    "Symbols each instance works (mds_service_symbols_owned). Instances on "
                    "one PostgreSQL database share the symbols, at most ceil(n/k) each; on "
                    "SQLite, or alone, one instance owns them all. Beside it, the symbols an "
                    "instance saw without an owner at its last claim: MdsSymbolWithoutOwner "
                    "pages when one stays so for three intervals.",
                    "none",
                    [
                        Target(
                            f"max {BY_SERVICE} (mds_service_symbols_owned{SERVICE})",
                            LEGEND_SERVICE,
                        ),
                        Target(
                            f"max {BY_SERVICE} (mds_service_symbols_unowned{SERVICE})",
                            "without owner {{service}} {{instance}}",
                        ),
                    ],
                    width=12,
                ),
                Panel(
                    "Ownership changes",
                    "Symbols per second each instance started (acquired) or stopped "
                    "(released) owning: an instance joining, leaving or dying, or a "
                    "backfill borrowing symbols. Quiet in steady state.",
                    "ops",
                    [
                        Target(
                            "sum by (instance, service, change) (rate("
                            f"mds_service_symbol_ownership_changes_total{SERVICE}{RANGE}))",
                            "{{change}} {{service}} {{instance}}",
                        )
                    ],
                    width=12,
                ),
            ],
        ),
    ]
    service = _query_variable(
        "service",
        "Service",
        'label_values(mds_service_running{job=~"$job", instance=~"$instance"}, service)',
    )
    return _dashboard(
        "mds-services",
        "Market data services / Services",
        "Every background service of market-data-services: running, throughput, errors, "
        "circuit breakers and iteration time.",
        _variables(service),
        rows,
    )


SIGNALS = {
    -1: ("crowd long: sell", "red"),
    0: ("neutral", "gray"),
    1: ("crowd short: buy", "green"),
}
BY_SYMBOL = "by (instance, symbol)"
#: One per-symbol series of each kind of market data: ticks, order books, sentiment.
SYMBOL_METRICS = (
    "mds_data_freshness_seconds",
    "mds_dom_last_snapshot_timestamp_seconds",
    "mds_sentiment_last_reading_timestamp_seconds",
)
LEGEND_SYMBOL = "{{symbol}} {{instance}}"


def market_data() -> dict[str, Any]:
    rows = [
        Row(
            "Ticks",
            [
                Panel(
                    "Ticks ingested per second",
                    "Ticks stored as new rows per second, and valid ticks skipped because "
                    "the same tick was already stored (a file loaded twice, a feed replay).",
                    "cps",
                    [
                        Target(
                            f"sum by (instance) (rate(mds_ticks_written_total{ALL}{RANGE}))",
                            "written {{instance}}",
                        ),
                        Target(
                            f"sum by (instance) (rate(mds_ticks_duplicate_total{ALL}{RANGE}))",
                            "duplicate {{instance}}",
                        ),
                    ],
                ),
                Panel(
                    "Ticks rejected per second, by reason",
                    "Ticks refused by validation (malformed, not finite, non-positive price, "
                    "future timestamp, unknown symbol, crossed under the strict policy). "
                    "Good ticks beside them are kept.",
                    "cps",
                    [
                        Target(
                            "sum by (instance, reason) "
                            f"(rate(mds_ticks_rejected_total{ALL}{RANGE}))",
                            "{{reason}} {{instance}}",
                        )
                    ],
                    stack=True,
                ),
                Panel(
                    "Crossed and locked quotes per second",
                    "Quotes with ask below bid (crossed) or equal to it (locked): real market "
                    "states, kept and counted unless the strict policy rejects crossed ones.",
                    "cps",
                    [
                        Target(
                            f"sum by (instance) (rate(mds_ticks_crossed_total{ALL}{RANGE}))",
                            "crossed {{instance}}",
                        ),
                        Target(
                            f"sum by (instance) (rate(mds_ticks_locked_total{ALL}{RANGE}))",
                            "locked {{instance}}",
                        ),
                    ],
                ),
                Panel(
                    "Data freshness by symbol",
                    "Age of the newest stored tick of each symbol, as the candle service "
                    "sees it. MdsMarketDataStale pages above 5 minutes (dashed) while the "
                    "forex market is open.",
                    "s",
                    [
                        Target(
                            f"max {BY_SYMBOL} (mds_data_freshness_seconds{SYMBOL})",
                            LEGEND_SYMBOL,
                        )
                    ],
                    threshold=(300, "red"),
                ),
            ],
        ),
        Row(
            "Candles",
            [
                Panel(
                    "Candle lag p95 by timeframe",
                    "95th percentile of the time from a bucket's end to its candle being "
                    "written, per timeframe (timely candles; late ticks and backfills are "
                    "counted as rewritten instead).",
                    "s",
                    [
                        Target(
                            "histogram_quantile(0.95, sum by (le, timeframe) "
                            f"(rate(mds_candle_lag_seconds_bucket{ALL}{RANGE})))",
                            "{{timeframe}}",
                        )
                    ],
                ),
                Panel(
                    "Candles written per second by timeframe",
                    "Candle rows written per second, per timeframe, and those rewritten for "
                    "buckets that had already closed (late ticks, backfills).",
                    "cps",
                    [
                        Target(
                            f"sum by (timeframe) (rate(mds_candles_written_total{ALL}{RANGE}))",
                            "written {{timeframe}}",
                        ),
                        Target(
                            f"sum by (timeframe) (rate(mds_candles_rewritten_total{ALL}{RANGE}))",
                            "rewritten {{timeframe}}",
                        ),
                    ],
                ),
            ],
        ),
        Row(
            "Order book",
            [
                Panel(
                    "Spread (basis points)",
                    "Best ask minus best bid of the latest book of each symbol, in basis "
                    "points of the mid price.",
                    "none",
                    [Target(f"max {BY_SYMBOL} (mds_dom_spread_bps{SYMBOL})", LEGEND_SYMBOL)],
                    width=8,
                    decimals=2,
                ),
                Panel(
                    "Microprice",
                    "Microprice of the latest book: the best prices weighted by the size on "
                    "the opposite side, a short-term fair value.",
                    "none",
                    [Target(f"max {BY_SYMBOL} (mds_dom_microprice{SYMBOL})", LEGEND_SYMBOL)],
                    width=8,
                    decimals=5,
                ),
                Panel(
                    "Book imbalance",
                    "Bid size minus ask size over their sum, at the top level and over the "
                    "top 5 levels of the latest book: above 0 more is bid than offered.",
                    "percentunit",
                    [
                        Target(
                            f"max by (instance, symbol, levels) (mds_dom_imbalance_ratio{SYMBOL})",
                            "{{symbol}} top {{levels}} {{instance}}",
                        )
                    ],
                    width=8,
                    min=-1,
                    max=1,
                ),
            ],
        ),
        Row(
            "Sentiment",
            [
                Panel(
                    "Crowd long share",
                    "Share of retail clients long each symbol, latest reading and its "
                    "exponential moving average.",
                    "percentunit",
                    [
                        Target(
                            f"max {BY_SYMBOL} (mds_sentiment_long_share_ratio{SYMBOL})",
                            LEGEND_SYMBOL,
                        ),
                        Target(
                            f"max {BY_SYMBOL} (mds_sentiment_long_share_ema_ratio{SYMBOL})",
                            "EMA {{symbol}} {{instance}}",
                        ),
                    ],
                    min=0,
                    max=1,
                ),
                Panel(
                    "Contrarian signal",
                    "-1 when the crowd is long at or above the upper threshold (sell), +1 "
                    "when it is at or below the lower one (buy), 0 between; with hysteresis.",
                    "none",
                    [Target(f"max {BY_SYMBOL} (mds_sentiment_signal{SYMBOL})", LEGEND_SYMBOL)],
                    kind="state-timeline",
                    mappings=SIGNALS,
                ),
            ],
        ),
    ]
    # Every symbol of every kind of data, so picking one never empties a row: ticks (the
    # candle service's freshness), order books and sentiment readings (their last-seen
    # gauges), whichever of them a symbol has.
    symbol = _query_variable(
        "symbol",
        "Symbol",
        "label_values({"
        f'__name__=~"{"|".join(SYMBOL_METRICS)}", job=~"$job", instance=~"$instance"'
        "}, symbol)",
    )
    return _dashboard(
        "mds-market-data",
        "Market data services / Market data",
        "What the services make of the market data: ticks in, candles out, freshness, "
        "order-book metrics and retail sentiment.",
        _variables(symbol),
        rows,
    )


DASHBOARDS = {
    "mds-services.json": services_overview,
    "mds-market-data.json": market_data,
}


def render(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is not current")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build())
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"not current, run python dashboards/generate.py: {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
