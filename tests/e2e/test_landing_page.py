"""The landing page in a real browser: headless Debian Chromium, driven by Playwright,
against a real ``mds run --demo``.

Playwright is given the system's Chromium (``executable_path``), so it downloads no browser.
The first test saves a screenshot into its temporary folder; with
``MDS_UPDATE_SCREENSHOT=1`` it writes the one the README shows (docs/landing.png), so a
test run leaves the checkout as it found it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry

from market_data_services.app.landing import LandingPage
from market_data_services.app.server import HttpServer, make_app
from tests.conftest import require_executable, unavailable
from tests.e2e.mds_process import MdsProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

LINKS = ("/metrics", "/healthz", "/readyz", "/api/health/aggregators", "/api/v1/openapi.json")
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "landing.png"
DEMO_SERVICES = {
    "AggregatorService",
    "DOMAggregatorService",
    "SentimentAggregatorService",
    "DemoFeedService",
}
#: The demo's candles are there seconds after start (it backfills 300 s); a slow CI
#: machine gets a minute.
CANDLES_TIMEOUT_MS = 60_000

#: Pixels of the plot area in the closed candles' colours (up, down), from lightweight-charts'
#: takeScreenshot() (the whole chart as one canvas) cut to the pane, left of the price axis.
#: The open bucket's grey is left out: the last-price label and line wear it too.
CANDLE_PIXELS_JS = """() => {
  const { chart } = window.mdsLanding;
  const canvas = chart.takeScreenshot();
  const pane = chart.paneSize();
  const ratio = canvas.width / (pane.width + chart.priceScale("right").width());
  const pixels = canvas.getContext("2d")
    .getImageData(0, 0, Math.floor(pane.width * ratio), Math.floor(pane.height * ratio)).data;
  const colours = [[0x26, 0xa6, 0x9a], [0xef, 0x53, 0x50]];
  let count = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    for (const [r, g, b] of colours) {
      const distance = Math.abs(pixels[i] - r) + Math.abs(pixels[i + 1] - g)
        + Math.abs(pixels[i + 2] - b);
      if (distance < 24) {
        count++;
        break;
      }
    }
  }
  return count;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = require_executable("chromium", "chromium chromium-driver")
    try:
        # Imported here so that without it the test says how to get it (and fails in CI).
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        unavailable(
            "the Python package `playwright`", "install the test extra: make .venv/.installed"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        yield browser
        browser.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[MdsProcess]:
    process = MdsProcess(["--demo"], cwd=tmp_path)
    yield process
    process.close()


class Problems:
    """Errors the page logs or throws: a CSP refusal, a failed fetch, a script error."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("console", lambda m: self.seen.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.seen.append(f"uncaught: {e}"))


def service_rows(page: Page) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("#services tbody tr")].map(
             (tr) => [tr.dataset.service, {
               status: tr.cells[1].textContent, breaker: tr.cells[2].textContent,
               last_success: tr.cells[3].textContent, symbols: tr.cells[6].textContent}]))"""
    )
    return rows


def wait_for_candles(page: Page) -> list[dict[str, Any]]:
    """The chart's series once it holds candles, as the chart library has them."""
    page.wait_for_function(
        "() => window.mdsLanding && window.mdsLanding.series.data().length > 0",
        timeout=CANDLES_TIMEOUT_MS,
    )
    bars: list[dict[str, Any]] = page.evaluate("() => window.mdsLanding.series.data()")
    return bars


def test_demo_landing_page_shows_the_process_its_services_and_a_drawn_candle_chart(
    browser: Browser, demo: MdsProcess, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 960})
    problems = Problems(page)
    page.goto(f"{demo.url}/?symbol=EUR/USD&timeframe=1m")

    assert page.title().startswith("mds ")
    assert page.inner_text("#database") == "sqlite:///mds.sqlite"
    for path in LINKS:
        assert page.locator(f'a[href="{path}"]').count() == 1
        assert demo.get(path)[0] == 200, path

    page.wait_for_function(
        "() => document.querySelectorAll('#services tbody tr').length === 4", timeout=30_000
    )
    rows = service_rows(page)
    assert set(rows) == DEMO_SERVICES
    assert {row["breaker"] for row in rows.values()} == {"closed"}
    assert rows["AggregatorService"]["symbols"] == "EUR/USD, NZD/USD"
    assert rows["DOMAggregatorService"]["symbols"] == "XRPUSDT"

    bars = wait_for_candles(page)
    assert page.locator("#symbol").input_value() == "EUR/USD"
    for bar in bars:
        assert bar["low"] <= min(bar["open"], bar["close"]) <= max(bar["open"], bar["close"])
        assert max(bar["open"], bar["close"]) <= bar["high"]
    assert [b["time"] for b in bars] == sorted({b["time"] for b in bars})
    assert page.get_attribute("#chart", "data-candles") == str(len(bars))
    assert "candles, last" in page.inner_text("#chart-status")
    # Drawn, not only loaded: candle-coloured pixels on the chart's canvas.
    assert page.evaluate(CANDLE_PIXELS_JS) > 200

    # The table refreshes itself: the demo feed's "last success" moves on without a reload.
    before = page.inner_text("#services-updated")
    page.wait_for_function(
        "(before) => document.getElementById('services-updated').textContent !== before",
        arg=before,
        timeout=15_000,
    )
    # The uptime counts on.
    uptime = page.inner_text("#uptime")
    page.wait_for_function(
        "(u) => document.getElementById('uptime').textContent !== u", arg=uptime, timeout=5_000
    )
    assert page.inner_text("#overall") in {"healthy", "degraded"}

    update = os.environ.get("MDS_UPDATE_SCREENSHOT") == "1"
    screenshot = README_SCREENSHOT if update else tmp_path / "landing.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000  # a page was drawn, not an empty image
    assert problems.seen == []


def test_choosing_another_symbol_and_timeframe_redraws_and_keeps_the_choice_in_the_address(
    browser: Browser, demo: MdsProcess
) -> None:
    page = browser.new_page()
    problems = Problems(page)
    page.goto(demo.url)
    wait_for_candles(page)
    page.wait_for_function("() => document.getElementById('symbol').options.length === 2")
    assert page.locator("#symbol").input_value() == "EUR/USD"  # the first with candles

    first = page.evaluate("() => window.mdsLanding.series.data().at(-1).close")
    page.select_option("#symbol", "NZD/USD")
    page.wait_for_function(
        "(first) => window.mdsLanding.series.data().length > 0"
        " && window.mdsLanding.series.data().at(-1).close !== first",
        arg=first,
        timeout=CANDLES_TIMEOUT_MS,
    )
    nzd = page.evaluate("() => window.mdsLanding.series.data().at(-1).close")
    assert 0.5 < nzd < 1.0 < first  # NZD/USD trades below 1, EUR/USD above
    page.select_option("#timeframe", "5m")
    page.wait_for_url("**/?symbol=NZD%2FUSD&timeframe=5m")

    page.reload()
    wait_for_candles(page)
    assert page.locator("#symbol").input_value() == "NZD/USD"
    assert page.locator("#timeframe").input_value() == "5m"
    assert problems.seen == []


def test_behind_basic_auth_the_page_and_its_requests_use_the_browsers_credentials(
    browser: Browser, tmp_path: Path
) -> None:
    process = MdsProcess(
        [
            "--demo",
            "--set",
            "http.basic_auth_username=viewer",
            "--set",
            "http.basic_auth_password=correct horse",
        ],
        cwd=tmp_path,
    )
    try:
        assert process.get("/")[0] == 401
        assert process.get("/static/landing.js")[0] == 401
        context = browser.new_context(
            http_credentials={"username": "viewer", "password": "correct horse"}
        )
        page = context.new_page()
        problems = Problems(page)
        assert page.goto(process.url).status == 200  # type: ignore[union-attr]
        page.wait_for_function(
            "() => document.querySelectorAll('#services tbody tr').length === 4", timeout=30_000
        )
        assert len(wait_for_candles(page)) > 0
        assert problems.seen == []
        context.close()
    finally:
        process.close()


def test_a_degraded_service_and_a_missing_data_api_are_shown_not_hidden(browser: Browser) -> None:
    """In-process server whose health is 503 and which has no /api/v1: the page says so."""
    degraded = {
        "overall_status": "degraded",
        "services": {
            "AggregatorService": {
                "status": "degraded",
                "circuit_breaker": "open",
                "reasons": ["circuit breaker open", "the last 5 iterations failed"],
                "iterations": 9,
                "errors": 5,
                "last_error": "OperationalError: database is locked",
                "last_success": None,
                "symbols": ["EUR/USD"],
            }
        },
    }
    app = make_app(
        registry=CollectorRegistry(),
        health=lambda: (503, degraded),
        ready=lambda: (False, {}),
        landing=LandingPage(database_url="sqlite:///mds.sqlite"),
    )
    server = HttpServer(app, port=0)
    server.start()
    try:
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_function("() => document.querySelectorAll('#services tbody tr').length === 1")
        row = page.locator('#services tr[data-service="AggregatorService"]')
        assert row.locator("td.status").inner_text() == "degraded"
        assert row.locator("td.status").get_attribute("title") == (
            "circuit breaker open; the last 5 iterations failed"
        )
        assert row.locator("td.breaker").inner_text() == "open"
        assert row.locator("td").nth(3).inner_text() == "never"
        assert page.inner_text("#overall") == "degraded"
        page.wait_for_function("() => document.getElementById('chart-status').textContent")
        assert page.inner_text("#chart-status") == "symbols: HTTP 404 (not found)"
    finally:
        server.stop()
