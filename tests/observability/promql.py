"""Just enough PromQL reading for the lints: the metric names an expression selects.

No PromQL parser ships for Python, and the Prometheus 2.42 binaries here have no command
that prints a parsed query, so this reads our own expressions lexically: strings, label
matchers, ranges and grouping clauses are removed, then every identifier that is not a
function call or a keyword is a metric name; so is every name a ``__name__`` matcher lists
(``{__name__=~"a|b"}``; a pattern that is not such a list is refused). The real parser
checks the same expressions where it matters: ``promtool check rules`` for the rules, a
real Prometheus for the dashboard queries (tests/e2e).
"""

from __future__ import annotations

import re

_NAME_MATCHER = re.compile(r'__name__\s*(=~|=)\s*"([^"]*)"')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "atan2",
        "inf",
        "nan",
        "Inf",
        "NaN",
    }
)
_COUNTER_USE = r"\b(?:rate|irate|increase)\(\s*{name}\s*(?:\{{[^{{}}]*\}})?\s*\["


def _without_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


def _names_matched(expr: str) -> set[str]:
    """Names selected with ``{__name__="a"}`` or ``{__name__=~"a|b"}``."""
    names: set[str] = set()
    for operator, value in _NAME_MATCHER.findall(expr):
        alternatives = value.split("|") if operator == "=~" else [value]
        for name in alternatives:
            if not _NAME.fullmatch(name):
                raise ValueError(f"__name__ matcher is not a list of names: {value!r}")
            names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (recording-rule names included)."""
    names = _names_matched(expr)
    text = _without_strings(expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        name = match.group(0)
        if name in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def counters_read_raw(expr: str) -> set[str]:
    """``*_total`` names in ``expr`` not read through rate(), irate() or increase().

    A counter's raw value depends on when the process started; only its rate means
    anything on a graph or in an alert (dashboard-linter's target-counter-agg-rule).
    """
    text = _without_strings(expr)
    raw: set[str] = set()
    for name in {n for n in metric_names(expr) if n.endswith("_total")}:
        uses = len(re.findall(rf"(?<![\w:]){re.escape(name)}(?![\w:])", text))
        wrapped = len(re.findall(_COUNTER_USE.format(name=re.escape(name)), text))
        if wrapped < uses:
            raw.add(name)
    return raw
