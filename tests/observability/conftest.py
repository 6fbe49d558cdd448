"""Fixtures for the observability lints: the shipped files and a real scrape of the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_executable
from tests.e2e.mds_process import MdsProcess, wait_until

REPO = Path(__file__).resolve().parents[2]

#: Every service `mds run --demo` starts has run an iteration by then.
FIRST_ITERATIONS_TIMEOUT_SECONDS = 60.0


def sample_names(body: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of a text-format scrape."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


@pytest.fixture(scope="session")
def demo_scrape(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, list[tuple[dict[str, str], float]]]]:
    """One scrape of a real `mds run --demo`, taken once every service has iterated."""
    process = MdsProcess(["--demo"], cwd=tmp_path_factory.mktemp("demo-scrape"))
    try:
        latest: dict[str, list[tuple[dict[str, str], float]]] = {}

        def every_service_iterated() -> bool:
            nonlocal latest
            status, body = process.get("/metrics")
            assert status == 200
            latest = sample_names(body)
            iterations = latest.get("mds_service_iterations_total", [])
            return bool(iterations) and all(value > 0 for _, value in iterations)

        wait_until(
            every_service_iterated,
            FIRST_ITERATIONS_TIMEOUT_SECONDS,
            "every service of mds run --demo ran an iteration",
        )
        yield latest
    finally:
        process.close()


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_executable("promtool", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_executable("amtool", "prometheus-alertmanager")
