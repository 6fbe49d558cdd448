"""deploy/: the Prometheus config and the docker-compose stack use the shipped files.

Docker cannot run on the machines these tests run on, so the stack itself is not started
here; tests/e2e runs the same Prometheus config, rules and Alertmanager config for real.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.observability.rules import ALERTS_DIR, REPO, RULE_FILES

DEPLOY = REPO / "deploy"


def test_prometheus_config_loads_the_shipped_rules_and_scrapes_job_mds(
    promtool: str, tmp_path: Path
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert sorted(Path(p).name for p in config["rule_files"]) == [p.name for p in RULE_FILES]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["mds"]
    # promtool checks the config with the rule files where this checkout has them.
    config["rule_files"] = [str(ALERTS_DIR / Path(p).name) for p in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_mounts_only_files_of_this_repository() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounted = []
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                mounted.append((DEPLOY / source).resolve())
    assert mounted
    for path in mounted:
        assert path.exists(), path
    assert (ALERTS_DIR / "alertmanager.yml").resolve() in mounted
    assert (REPO / "dashboards" / "provisioning").resolve() in mounted
