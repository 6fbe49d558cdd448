"""The test data: samples kept in the repository, the full data set only where needed.

A fresh clone has no ``../shared/data`` beside it; every test must then pass or skip
saying how to get the full set, and in CI (``CI=true``) fail instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPLE_DATA, full_data

ROOT = Path(__file__).resolve().parents[1]


def samples() -> list[Path]:
    return sorted(p for p in SAMPLE_DATA.rglob("*.gz"))


def run_pytest(tmp_path: Path, *args: str, ci: bool = False) -> subprocess.CompletedProcess[str]:
    """pytest in a child process, with ``MDS_SHARED_DATA`` naming an empty folder."""
    empty = tmp_path / "no-data"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["MDS_SHARED_DATA"] = str(empty)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_samples_are_small_and_byte_copies_of_the_full_data_set() -> None:
    assert samples(), f"no samples under {SAMPLE_DATA}"
    assert sum(p.stat().st_size for p in samples()) < 300_000
    for sample in samples():
        original = full_data(str(sample.relative_to(SAMPLE_DATA)))
        assert sample.read_bytes() == original.read_bytes(), sample


def test_every_test_module_collects_without_the_full_data_set(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, "--collect-only", "-q", "tests")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for module in ("test_oracle.py", "test_ticks.py", "test_ingest_command.py"):
        assert f"{module}::" in result.stdout


def test_tests_needing_the_full_data_set_skip_saying_how_and_fail_in_ci(tmp_path: Path) -> None:
    oracle = "tests/aggregators/candles/test_oracle.py"
    local = run_pytest(tmp_path, "-q", "-rs", "-m", "not postgres", oracle)
    assert local.returncode == 0, local.stdout[-3000:]
    assert "passed" not in local.stdout and "failed" not in local.stdout
    assert "set MDS_SHARED_DATA to the folder of the full market data set" in local.stdout
    in_ci = run_pytest(tmp_path, "-q", "-m", "not postgres", "-x", oracle, ci=True)
    assert in_ci.returncode == 1, in_ci.stdout[-3000:]
    assert "(CI=true: required, not skipped)" in in_ci.stdout
