from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from market_data_services import SentimentAggregatorService
from market_data_services.aggregators.sentiment import ContrarianThresholds
from market_data_services.ingest.sentiment import SentimentReading, write_sentiment
from market_data_services.storage import sentiment_metrics

NOW = 1_700_000_000.0
T0 = 1_699_000_000_000
HOUR_MS = 3_600_000
METRICS = ("long_share", "long_share_ema", "change_window", "window_min", "window_max", "signal")


def stored_metrics(engine: Engine, symbol: str) -> list[dict[str, float]]:
    m = sentiment_metrics
    with engine.connect() as connection:
        rows = connection.execute(select(m).where(m.c.symbol == symbol).order_by(m.c.ts)).mappings()
        return [{k: v for k, v in row.items() if k != "symbol"} for row in rows]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# -- the oracle: the definitions, reading by reading -----------------------------------


def expected(
    readings: list[tuple[int, float]],
    *,
    window_ms: int = HOUR_MS,
    alpha: float = 2 / 11,
    enter_long: float = 0.70,
    exit_long: float = 0.65,
    enter_short: float = 0.30,
    exit_short: float = 0.35,
) -> list[dict[str, float]]:
    by_time: dict[int, list[float]] = {}
    for ts, share in readings:
        by_time.setdefault(ts, []).append(share)
    series = [(ts, sum(v) / len(v)) for ts, v in sorted(by_time.items())]
    rows = []
    ema = None
    state = "neutral"
    for ts, x in series:
        window = [v for t, v in series if ts - window_ms < t <= ts]
        ema = x if ema is None else alpha * x + (1 - alpha) * ema
        if state == "crowd_long":
            if x < exit_long:
                state = "neutral"
        elif state == "crowd_short" and x > exit_short:
            state = "neutral"
        if state == "neutral":
            if x >= enter_long:
                state = "crowd_long"
            elif x <= enter_short:
                state = "crowd_short"
        rows.append(
            {
                "ts": ts,
                "long_share": x,
                "long_share_ema": ema,
                "change_window": x - window[0],
                "window_min": min(window),
                "window_max": max(window),
                "signal": {"neutral": 0, "crowd_long": -1, "crowd_short": 1}[state],
            }
        )
    return rows


def assert_metrics_equal(actual: list[dict[str, float]], wanted: list[dict[str, float]]) -> None:
    assert [r["ts"] for r in actual] == [r["ts"] for r in wanted]
    assert [r["signal"] for r in actual] == [r["signal"] for r in wanted]
    for column in METRICS:
        np.testing.assert_allclose(
            [r[column] for r in actual], [r[column] for r in wanted], rtol=1e-12, atol=1e-12
        )


def random_readings(seed: int, count: int, symbol: str = "EUR/USD") -> list[SentimentReading]:
    """A noisy long share swinging through both thresholds, every 10-300 s."""
    rng = np.random.default_rng(seed)
    ts = T0
    out = []
    for i in range(count):
        ts += int(rng.integers(10, 300)) * 1000
        share = 0.5 + 0.3 * math.sin(i / 12) + rng.normal(0, 0.03)
        out.append(SentimentReading(symbol, ts, round(float(np.clip(share, 0.01, 0.99)), 3)))
    return out


def write(engine: Engine, readings: list[SentimentReading]) -> None:
    report = write_sentiment(engine, readings, wall_clock=lambda: NOW)
    assert report.rejected == 0, report.rejections


def service(engine: Engine, symbols: list[str], **kwargs: object) -> SentimentAggregatorService:
    kwargs.setdefault("registry", CollectorRegistry())
    return SentimentAggregatorService(
        engine,
        symbols=symbols,
        wall_clock=lambda: NOW,
        **kwargs,  # type: ignore[arg-type]
    )


# -- the service ---------------------------------------------------------------------------


def test_metrics_of_a_generated_series_match_the_definitions(engine: Engine) -> None:
    readings = random_readings(1, 300)
    write(engine, readings)
    service(engine, ["EUR/USD"]).run_once()
    actual = stored_metrics(engine, "EUR/USD")
    assert_metrics_equal(actual, expected([(r.ts_ms, r.long_share) for r in readings]))
    assert {r["signal"] for r in actual} == {-1, 0, 1}


def test_the_signal_has_hysteresis_around_both_thresholds(engine: Engine) -> None:
    shares = [0.69, 0.70, 0.67, 0.66, 0.64, 0.71, 0.50, 0.31, 0.30, 0.34, 0.36, 0.29]
    write(engine, [SentimentReading("EUR/USD", T0 + i * 1000, s) for i, s in enumerate(shares)])
    service(engine, ["EUR/USD"]).run_once()
    signals = [r["signal"] for r in stored_metrics(engine, "EUR/USD")]
    assert signals == [0, -1, -1, -1, 0, -1, 0, 0, 1, 1, 0, 1]


def test_thresholds_ema_and_window_are_configurable(engine: Engine) -> None:
    readings = random_readings(2, 200)
    write(engine, readings)
    thresholds = ContrarianThresholds(
        long_enter=0.6, long_exit=0.55, short_enter=0.4, short_exit=0.45
    )
    service(
        engine,
        ["EUR/USD"],
        thresholds=thresholds,
        ema_alpha=0.5,
        history_window_seconds=600,
    ).run_once()
    wanted = expected(
        [(r.ts_ms, r.long_share) for r in readings],
        window_ms=600_000,
        alpha=0.5,
        enter_long=0.6,
        exit_long=0.55,
        enter_short=0.4,
        exit_short=0.45,
    )
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), wanted)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"long_enter": 0.6, "long_exit": 0.65}, "long_exit=0.65 above long_enter=0.6"),
        ({"short_enter": 0.4, "short_exit": 0.35}, "short_enter=0.4 above short_exit=0.35"),
        ({"long_enter": 1.5}, "long_enter must satisfy 0 <= x <= 1"),
        (
            {"short_enter": 0.5, "short_exit": 0.5, "long_exit": 0.5, "long_enter": 0.5},
            "short_enter must be below long_enter",
        ),
    ],
)
def test_inconsistent_thresholds_are_refused_naming_them(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ContrarianThresholds(**kwargs)


def test_ema_span_and_alpha_are_checked(engine: Engine) -> None:
    assert service(engine, ["X"], ema_span=19).ema_alpha == pytest.approx(0.1)
    with pytest.raises(ValueError, match="ema_span must be a number of readings >= 1"):
        service(engine, ["X"], ema_span=0)
    with pytest.raises(ValueError, match="ema_alpha must satisfy 0 < x <= 1"):
        service(engine, ["X"], ema_alpha=0)


def test_sources_reporting_at_the_same_time_are_averaged(engine: Engine) -> None:
    readings = random_readings(3, 60)
    other = [SentimentReading(r.symbol, r.ts_ms, 0.5, None, "b") for r in readings[::3]]
    write(engine, readings + other)
    service(engine, ["EUR/USD"]).run_once()
    both = [(r.ts_ms, r.long_share) for r in readings] + [(r.ts_ms, 0.5) for r in other]
    assert_metrics_equal(stored_metrics(engine, "EUR/USD"), expected(both))


def test_a_configured_source_is_the_only_one_read(engine: Engine) -> None:
    readings = random_readings(3, 60)
    other = [SentimentReading(r.symbol, r.ts_ms, 0.5, None, "b") for r in readings[::3]]
    write(engine, readings + other)
    service(engine, ["EUR/USD"], source="b").run_once()
    assert_metrics_equal(
        stored_metrics(engine, "EUR/USD"), expected([(r.ts_ms, 0.5) for r in other])
    )


def test_a_late_reading_recomputes_everything_after_it(engine: Engine) -> None:
    readings = random_readings(4, 150)
    late = readings[40:45]
    on_time = readings[:40] + readings[45:]
    sentiment = service(engine, ["EUR/USD"])
    write(engine, on_time)
    sentiment.run_once()
    write(engine, late)
    sentiment.run_once()
    assert_metrics_equal(
        stored_metrics(engine, "EUR/USD"), expected([(r.ts_ms, r.long_share) for r in readings])
    )


def test_a_restart_rebuilds_the_window_from_the_database(engine: Engine) -> None:
    readings = random_readings(5, 120)
    write(engine, readings[:80])
    registry = CollectorRegistry()
    first = service(engine, ["EUR/USD"], registry=registry)
    first.run_once()
    before = first.history("EUR/USD")
    # A new process: empty memory. The window comes back from the stored readings.
    del first  # one live service per name on a registry
    write(engine, readings[80:])
    second = service(engine, ["EUR/USD"], registry=registry)
    second.run_once()
    assert_metrics_equal(
        stored_metrics(engine, "EUR/USD"), expected([(r.ts_ms, r.long_share) for r in readings])
    )
    last = readings[-1].ts_ms
    assert second.history("EUR/USD") == [
        (r.ts_ms, r.long_share) for r in readings if last - HOUR_MS < r.ts_ms
    ]
    assert before and before[-1][0] == readings[79].ts_ms
    assert sample(registry, "mds_sentiment_readings_processed_total", symbol="EUR/USD") == 120


def test_an_interrupted_pass_resumes_in_the_next_iteration(engine: Engine) -> None:
    readings = random_readings(6, 100)
    write(engine, readings)
    ticks = itertools.count(0.0, 100.0)  # each clock read is 100 s later: one batch each
    sentiment = service(engine, ["EUR/USD"], batch_size=15, clock=lambda: next(ticks))
    sentiment.run_once()
    assert len(stored_metrics(engine, "EUR/USD")) == 15
    for _ in range(10):
        sentiment.run_once()
    assert_metrics_equal(
        stored_metrics(engine, "EUR/USD"), expected([(r.ts_ms, r.long_share) for r in readings])
    )


def test_the_history_deque_is_bounded(engine: Engine) -> None:
    readings = [SentimentReading("EUR/USD", T0 + i * 1000, 0.5 + i / 1000) for i in range(50)]
    write(engine, readings)
    sentiment = service(engine, ["EUR/USD"], history_max_readings=5)
    sentiment.run_once()
    assert sentiment.history("EUR/USD") == [(r.ts_ms, r.long_share) for r in readings[-5:]]
    assert stored_metrics(engine, "EUR/USD")[-1]["window_min"] == readings[-5].long_share


def test_gauges_show_the_latest_metrics_of_each_configured_symbol(engine: Engine) -> None:
    eur = random_readings(7, 30)
    write(engine, eur + random_readings(8, 30, symbol="USD/JPY"))
    registry = CollectorRegistry()
    service(engine, ["EUR/USD"], registry=registry).run_once()
    last = expected([(r.ts_ms, r.long_share) for r in eur])[-1]
    assert (
        sample(registry, "mds_sentiment_long_share_ratio", symbol="EUR/USD") == last["long_share"]
    )
    assert sample(registry, "mds_sentiment_long_share_ema_ratio", symbol="EUR/USD") == (
        pytest.approx(last["long_share_ema"])
    )
    assert sample(registry, "mds_sentiment_signal", symbol="EUR/USD") == last["signal"]
    assert sample(registry, "mds_sentiment_last_reading_timestamp_seconds", symbol="EUR/USD") == (
        eur[-1].ts_ms / 1000
    )
    labelled = {
        s.labels.get("symbol")
        for metric in registry.collect()
        for s in metric.samples
        if s.name.startswith("mds_sentiment")
    }
    assert labelled <= {"EUR/USD", None}


def test_each_symbol_is_worked_in_its_own_span(engine: Engine) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    write(engine, random_readings(9, 5))
    sentiment = service(engine, ["EUR/USD", "GBP/USD"], tracer=provider.get_tracer("test"))
    sentiment.run_once()
    names = [
        s.attributes["symbol"]
        for s in exporter.get_finished_spans()
        if s.name == "SentimentAggregatorService.symbol"
    ]
    assert names == ["EUR/USD", "GBP/USD"]


def test_defaults_are_the_specifications(engine: Engine) -> None:
    sentiment = service(engine, ["EUR/USD"])
    assert sentiment.interval_seconds == 30.0
    assert sentiment.history_window_seconds == 3600.0
    assert sentiment.service_name == "SentimentAggregatorService"
    assert math.isclose(sentiment.thresholds.long_enter, 0.70)


def test_other_settings_are_refused_until_rebuilt(engine: Engine) -> None:
    readings = random_readings(10, 80)
    write(engine, readings)
    service(engine, ["EUR/USD"]).run_once()
    changed = ContrarianThresholds(long_enter=0.8, long_exit=0.75)
    refused = service(engine, ["EUR/USD"], thresholds=changed)
    assert refused.run_once().value == "failed"
    error = refused.get_metrics()["recent_errors"][-1]
    assert error["type"] == "SettingsMismatchError"
    assert "long_enter=0.7 " in error["error"] and "long_enter=0.8 " in error["error"]
    service(engine, ["EUR/USD"], thresholds=changed, rebuild=True).run_once()
    pairs = [(r.ts_ms, r.long_share) for r in readings]
    assert_metrics_equal(
        stored_metrics(engine, "EUR/USD"), expected(pairs, enter_long=0.8, exit_long=0.75)
    )


def test_catch_up_is_one_counted_iteration_and_raises_its_error(engine: Engine) -> None:
    write(engine, random_readings(11, 40))
    ticks = itertools.count(0.0, 100.0)
    sentiment = service(engine, ["EUR/USD"], batch_size=7, clock=lambda: next(ticks))
    sentiment.catch_up()
    assert len(stored_metrics(engine, "EUR/USD")) == 40
    assert sentiment.get_metrics()["iteration_count"] == 1
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE sentiment_metrics RENAME TO gone")
    write(engine, [SentimentReading("EUR/USD", T0 + 10**9, 0.5)])
    with pytest.raises(Exception, match="sentiment_metrics"):
        sentiment.catch_up()
    assert sentiment.get_metrics()["error_count"] == 1
