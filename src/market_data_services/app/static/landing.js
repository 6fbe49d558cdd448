// The landing page's behaviour: a services table refreshed from the health JSON and a
// candlestick chart of /api/v1/candles. Plain script, no build step: it runs as shipped.
// Text from the server goes in through textContent only, never as HTML.
(function () {
  "use strict";

  const REFRESH_MS = 5000;
  const CANDLE_LIMIT = 300;
  const UP = "#26a69a";
  const DOWN = "#ef5350";
  const OPEN_BUCKET = "#9e9e9e";

  const $ = (id) => document.getElementById(id);

  function duration(seconds) {
    const whole = Math.max(0, Math.floor(seconds));
    const days = Math.floor(whole / 86400);
    const rest = whole % 86400;
    const pad = (n) => String(n).padStart(2, "0");
    const clock = `${pad(Math.floor(rest / 3600))}:${pad(Math.floor((rest % 3600) / 60))}:${pad(rest % 60)}`;
    return days ? `${days}d ${clock}` : clock;
  }

  function ago(iso) {
    if (!iso) return "never";
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (seconds < 1) return "just now";
    if (seconds < 120) return `${Math.round(seconds)} s ago`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
    return `${Math.round(seconds / 3600)} h ago`;
  }

  // An error body of ours is JSON with "error" or plain text; show either, shortened.
  async function problem(what, response) {
    let detail = "";
    try {
      const text = await response.text();
      try {
        const body = JSON.parse(text);
        detail = body.error || body.message || body.detail || text;
      } catch (_) {
        detail = text;
      }
    } catch (_) {}
    detail = String(detail).trim().slice(0, 200);
    return `${what}: HTTP ${response.status}${detail ? ` (${detail})` : ""}`;
  }

  async function getJson(url, what, acceptable) {
    const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!(acceptable || [200]).includes(response.status)) throw new Error(await problem(what, response));
    return response.json();
  }

  // -- uptime: the server's figure at render time, counted on from there -----------------
  const uptime = $("uptime");
  const uptimeAtLoad = Number(uptime.dataset.seconds);
  const loadedAt = performance.now();
  setInterval(() => {
    uptime.textContent = duration(uptimeAtLoad + (performance.now() - loadedAt) / 1000);
  }, 1000);

  // -- services table ----------------------------------------------------------------------
  function cell(row, text, className, title) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    return td;
  }

  function renderServices(body) {
    const tbody = $("services").tBodies[0];
    const rows = Object.entries(body.services || {}).map(([name, s]) => {
      const row = document.createElement("tr");
      row.dataset.service = name;
      cell(row, name, "name");
      cell(row, s.status, `status ${s.status}`, (s.reasons || []).join("; "));
      cell(row, s.circuit_breaker, `breaker ${s.circuit_breaker}`);
      cell(row, ago(s.last_success), "", s.last_success || "");
      cell(row, String(s.iterations), "number");
      cell(row, String(s.errors), "number", s.last_error ? String(s.last_error) : "");
      cell(row, (s.symbols || []).join(", "), "symbols");
      return row;
    });
    tbody.replaceChildren(...rows);
    const overall = $("overall");
    overall.textContent = body.overall_status;
    overall.className = `status ${body.overall_status}`;
    $("services-updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
  }

  async function refreshServices() {
    const error = $("services-error");
    try {
      // 503 is the health answer when a service is degraded: same JSON, still a table.
      renderServices(await getJson("/api/health/aggregators", "health", [200, 503]));
      error.hidden = true;
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  }

  // -- chart -------------------------------------------------------------------------------
  const container = $("chart");
  const chart = LightweightCharts.createChart(container, {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#333333" },
    grid: { vertLines: { color: "#f0f0f0" }, horzLines: { color: "#f0f0f0" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  const series = chart.addSeries(LightweightCharts.CandlestickSeries, {
    upColor: UP,
    downColor: DOWN,
    borderVisible: false,
    wickUpColor: UP,
    wickDownColor: DOWN,
  });
  // For the browser test and for anyone poking at the page from the console.
  window.mdsLanding = { chart, series };

  const symbolSelect = $("symbol");
  const timeframeSelect = $("timeframe");
  const status = $("chart-status");
  let shown = ""; // the symbol and timeframe on the chart, to fit the view once per change

  // Decimals enough for every price shown (forex has 5 or 6, crypto varies), at most 8. A
  // price comes as a binary float (1.3946100000000001): its decimals are the fewest that
  // give back the same number, not the digits of its text.
  function decimals(value) {
    for (let digits = 0; digits < 8; digits++) {
      if (Math.abs(value - Number(value.toFixed(digits))) <= Math.abs(value) * 1e-12) return digits;
    }
    return 8;
  }

  function precision(candles) {
    let digits = 2;
    for (const c of candles) {
      for (const v of [c.open, c.high, c.low, c.close]) digits = Math.max(digits, decimals(v));
    }
    return digits;
  }

  function toBar(c) {
    const bar = { time: Math.floor(c.ts_open / 1000), open: c.open, high: c.high, low: c.low, close: c.close };
    if (c.complete === false) Object.assign(bar, { color: OPEN_BUCKET, wickColor: OPEN_BUCKET });
    return bar;
  }

  async function refreshChart() {
    const symbol = symbolSelect.value;
    const timeframe = timeframeSelect.value;
    if (!symbol) return;
    const query = new URLSearchParams({ symbol, timeframe, limit: String(CANDLE_LIMIT) });
    try {
      const body = await getJson(`/api/v1/candles?${query}`, "candles");
      if (symbolSelect.value !== symbol || timeframeSelect.value !== timeframe) return; // changed meanwhile
      const candles = body.candles || [];
      const digits = precision(candles);
      series.applyOptions({ priceFormat: { type: "price", precision: digits, minMove: 10 ** -digits } });
      series.setData(candles.map(toBar));
      const key = `${symbol} ${timeframe}`;
      if (shown !== key) {
        chart.timeScale().fitContent();
        shown = key;
      }
      container.dataset.candles = String(candles.length);
      const last = candles[candles.length - 1];
      status.textContent = last
        ? `${candles.length} candles, last ${last.time.replace("T", " ").replace(/:00Z$|Z$/, "")} UTC` +
          (last.complete === false ? " (open)" : "")
        : "no candles yet";
      status.className = "";
    } catch (e) {
      status.textContent = e.message;
      status.className = "error";
    }
  }

  // The chosen symbol and timeframe live in the address (?symbol=EUR/USD&timeframe=5m), so a
  // view can be bookmarked or sent.
  function remember() {
    const params = new URLSearchParams(location.search);
    params.set("symbol", symbolSelect.value);
    params.set("timeframe", timeframeSelect.value);
    history.replaceState(null, "", `?${params}`);
  }

  const wanted = new URLSearchParams(location.search);
  if (wanted.get("timeframe")) timeframeSelect.value = wanted.get("timeframe");
  if (!timeframeSelect.value) timeframeSelect.selectedIndex = 0;

  async function loadSymbols() {
    try {
      const body = await getJson("/api/v1/symbols", "symbols");
      const symbols = body.candles || [];
      symbolSelect.replaceChildren(...symbols.map((s) => new Option(s, s)));
      if (symbols.includes(wanted.get("symbol"))) symbolSelect.value = wanted.get("symbol");
      if (!symbols.length) status.textContent = "no symbols with candles yet";
    } catch (e) {
      status.textContent = e.message;
      status.className = "error";
    }
  }

  for (const select of [symbolSelect, timeframeSelect]) {
    select.addEventListener("change", () => {
      remember();
      refreshChart();
    });
  }

  refreshServices();
  setInterval(refreshServices, REFRESH_MS);
  // Symbols are asked again while there are none: a fresh demo has candles seconds later.
  async function refreshSymbolsAndChart() {
    if (!symbolSelect.options.length) await loadSymbols();
    await refreshChart();
  }
  refreshSymbolsAndChart();
  setInterval(refreshSymbolsAndChart, REFRESH_MS);
})();
