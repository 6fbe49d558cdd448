"""The catalog and its plugins: what a user adding a service from outside the package sees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from market_data_services.aggregators.dom import DEFAULT_BATCH_SIZE
from market_data_services.aggregators.sentiment import DEFAULT_HISTORY_MAX_READINGS
from market_data_services.app.catalog import DomOptions, SentimentOptions
from tests.conftest import dies_with_parent
from tests.e2e.mds_process import clean_environment
from tests.plugins import EXAMPLE, ROOT, install_plugin


def mds(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = clean_environment()
    environment.update(env)
    return subprocess.run(
        dies_with_parent([sys.executable, "-m", "market_data_services", *args]),
        cwd=cwd,
        env=environment,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )


def test_readme_adding_a_service_shows_the_example_file_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Adding a service") :]
    assert f"```python\n{EXAMPLE.read_text()}```" in section


def test_plugin_that_fails_to_import_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    env = install_plugin(
        tmp_path / "plugins", module="broken", source="import no_such_module\n", entry="broken"
    )
    done = mds(["backfill", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}"], env, tmp_path)
    assert done.returncode == 2
    assert "plugin 'broken' (broken:ENTRY): cannot load: ModuleNotFoundError" in done.stderr
    assert "Traceback" not in done.stderr


def test_plugin_taking_a_builtin_service_name_is_refused(tmp_path: Path) -> None:
    env = install_plugin(
        tmp_path / "plugins", module="spread_summary", source=EXAMPLE.read_text(), entry="dom"
    )
    done = mds(["config", "show"], env, tmp_path)
    assert done.returncode == 2
    assert "plugin 'dom' (spread_summary:ENTRY): a service named 'dom' exists already" in (
        done.stderr
    )


def test_plugin_service_gets_its_configuration_section(tmp_path: Path) -> None:
    env = install_plugin(
        tmp_path / "plugins",
        module="spread_summary",
        source=EXAMPLE.read_text(),
        entry="spread_summary",
    )
    done = mds(["config", "show"], {**env, "MDS_SERVICES_SPREAD_SUMMARY_ENABLED": "no"}, tmp_path)
    assert done.returncode == 0, done.stderr
    section = done.stdout[done.stdout.index("[services.spread_summary]") :]
    assert "enabled = false" in section.split("\n[")[0]


def test_the_defaults_the_catalog_writes_out_are_the_services() -> None:
    # Written out, so that reading the configuration does not import the services (and
    # the ingestion the book service counts in): they must still agree.
    assert DomOptions().batch_size == DEFAULT_BATCH_SIZE
    assert SentimentOptions().history_max_readings == DEFAULT_HISTORY_MAX_READINGS
