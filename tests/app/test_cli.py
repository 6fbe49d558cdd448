from __future__ import annotations

import subprocess
import sys

from market_data_services import __version__


def run_mds(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "market_data_services", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )


def test_version_prints_the_package_version() -> None:
    result = run_mds("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mds {__version__}"


def test_help_describes_the_command() -> None:
    result = run_mds("--help")
    assert result.returncode == 0
    assert "usage: mds" in result.stdout


def test_no_command_prints_help_and_exits_2() -> None:
    result = run_mds()
    assert result.returncode == 2
    assert "usage: mds" in result.stdout
