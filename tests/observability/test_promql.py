"""The lexical PromQL reader the lints rely on, on expressions shaped like ours."""

from __future__ import annotations

import pytest

from tests.observability.promql import counters_read_raw, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="mds"} == 0', {"up"}),
        (
            'sum by (job, service) (rate(mds_service_errors_total{job=~"$job"}[$__rate_interval]))'
            " / on (job) group_left () mds:slo_error_budget:ratio",
            {"mds_service_errors_total", "mds:slo_error_budget:ratio"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) "
            "(rate(mds_service_iteration_duration_seconds_bucket[5m])))",
            {"mds_service_iteration_duration_seconds_bucket"},
        ),
        ("vector(1) and on () (day_of_week() == 5 and hour() < 21)", set()),
        ('time() - max(x{service="a"}) > 3 * y offset 5m', {"x", "y"}),
        ('label_replace(z, "dst", "$1", "src", "(.*)") > 1e-3', {"z"}),
        ('{__name__=~"a_seconds|b:c", job=~"$job"}', {"a_seconds", "b:c"}),
        ('count({__name__="d"}) + e', {"d", "e"}),
    ],
)
def test_metric_names_are_the_selected_series_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_counters_inside_rate_or_increase_are_accepted() -> None:
    assert counters_read_raw("rate(a_total[5m]) + increase(b_total{x='1'}[1h])") == set()


def test_a_counter_read_raw_is_reported_even_when_also_rated() -> None:
    assert counters_read_raw("a_total - rate(a_total[5m]) + sum(b_total)") == {
        "a_total",
        "b_total",
    }


def test_a_name_pattern_that_is_not_a_list_of_names_is_refused() -> None:
    with pytest.raises(ValueError, match="not a list of names"):
        metric_names('{__name__=~"mds_.+"}')
