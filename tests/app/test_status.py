from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from market_data_services.app.auth import BasicAuth, hash_password
from market_data_services.app.cli import main
from market_data_services.app.commands.status import health_url
from market_data_services.app.server import HttpServer, make_app

REPORT: dict[str, Any] = {
    "overall_status": "degraded",
    "services": {
        "AggregatorService": {
            "status": "healthy",
            "running": True,
            "circuit_breaker": "closed",
            "iterations": 1205,
            "errors": 3,
            "error_rate": "0.25%",
            "recent_error_rate": "0.00%",
            "last_success": "2025-01-08T10:15:23.000Z",
            "reasons": [],
            "symbols": ["EUR/USD", "GBP/USD", "USD/JPY"],
            "owned_symbols": ["EUR/USD", "USD/JPY"],
            "ownership": {"shared": True, "instances": 2, "unowned_symbols": []},
        },
        "SentimentAggregatorService": {
            "status": "degraded",
            "running": True,
            "circuit_breaker": "open",
            "iterations": 2410,
            "errors": 156,
            "error_rate": "6.47%",
            "recent_error_rate": "40.00%",
            "last_success": None,
            "reasons": ["circuit breaker open"],
        },
    },
}


@pytest.fixture
def instance() -> Iterator[HttpServer]:
    """A server answering with a fixed report, as a running ``mds run`` would."""
    app = make_app(
        registry=CollectorRegistry(),
        health=lambda: (503, REPORT),
        ready=lambda: (True, {}),
    )
    server = HttpServer(app, port=0)
    server.start()
    yield server
    server.stop()


def test_status_prints_a_table_and_exits_1_when_degraded(
    instance: HttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", instance.url]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "SERVICE",
        "STATUS",
        "RUNNING",
        "BREAKER",
        "SYMBOLS",
        "ITERATIONS",
        "ERRORS",
        "ERROR",
        "RATE",
        "RECENT",
        "LAST",
        "SUCCESS",
    ]
    assert lines[1].split() == [
        "AggregatorService",
        "healthy",
        "yes",
        "closed",
        "2/3",
        "1205",
        "3",
        "0.25%",
        "0.00%",
        "2025-01-08T10:15:23.000Z",
    ]
    assert lines[2].split()[:5] == ["SentimentAggregatorService", "degraded", "yes", "open", "-"]
    assert lines[2].split()[-1] == "never"
    assert "overall: degraded" in out
    assert "SentimentAggregatorService: circuit breaker open" in out
    assert (
        "AggregatorService: owns 2 of 3 symbols, shared by 2 instances: EUR/USD, USD/JPY"
    ) in lines


def test_status_json_passes_the_report_through(
    instance: HttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    host, port = instance.address
    assert main(["status", f"{host}:{port}", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == REPORT


def test_status_of_an_unreachable_instance_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["status", f"http://127.0.0.1:{port}", "--timeout", "2"]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_health_url_accepts_base_urls_host_port_and_the_endpoint() -> None:
    assert health_url(None) == "http://127.0.0.1:17460/api/health/aggregators"
    assert health_url("10.0.0.5:9000") == "http://10.0.0.5:9000/api/health/aggregators"
    assert health_url("https://h/") == "https://h/api/health/aggregators"
    assert health_url("http://h/api/health/aggregators") == "http://h/api/health/aggregators"


def test_a_password_in_the_url_is_percent_decoded_and_never_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_app(
        registry=CollectorRegistry(),
        health=lambda: (200, {"overall_status": "healthy", "services": {}}),
        ready=lambda: (True, {}),
        auth=BasicAuth("prom", password_hash=hash_password("p@ss:word", iterations=1000)),
    )
    server = HttpServer(app, port=0)
    server.start()
    try:
        host, port = server.address
        assert main(["status", f"http://prom:p%40ss%3Aword@{host}:{port}"]) == 0
        capsys.readouterr()
        assert main(["status", f"http://prom:wrong-secret@{host}:{port}"]) == 1
        err = capsys.readouterr().err
        assert "HTTP 401" in err
        assert "wrong-secret" not in err
        assert f"http://prom:***@{host}:{port}" in err
    finally:
        server.stop()
