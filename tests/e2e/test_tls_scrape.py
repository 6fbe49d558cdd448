"""A real Prometheus scrapes ``mds run`` over TLS, with a client certificate and basic
auth, all from an exporter-toolkit web config file written as a platform team would."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from market_data_services.app.auth import hash_password_bcrypt
from tests.conftest import require_executable
from tests.e2e.mds_process import MdsProcess, wait_until
from tests.e2e.monitoring import prometheus
from tests.pki import make_pki

pytestmark = pytest.mark.slow


def test_prometheus_scrapes_mds_over_tls_with_basic_auth_from_a_web_config_file(
    tmp_path: Path,
) -> None:
    executable = require_executable("prometheus", "prometheus")
    pki = make_pki(tmp_path / "pki")
    web_config = tmp_path / "pki" / "web-config.yml"
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": "server.crt",
                    "key_file": "server.key",
                    "client_auth_type": "RequireAndVerifyClientCert",
                    "client_ca_file": "ca.crt",
                    "min_version": "TLS12",
                },
                "basic_auth_users": {"prometheus": hash_password_bcrypt("scrape-me", cost=4)},
            }
        )
    )
    mds = MdsProcess(
        [
            "--db",
            f"sqlite:///{tmp_path / 'mds.sqlite'}",
            "--web.config.file",
            str(web_config),
        ],
        cwd=tmp_path,
    )
    try:
        assert mds.url.startswith("https://127.0.0.1:")
        target = mds.url.removeprefix("https://")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "mds",
                    "scheme": "https",
                    "tls_config": {
                        "ca_file": str(pki.ca),
                        "cert_file": str(pki.client_cert),
                        "key_file": str(pki.client_key),
                    },
                    "basic_auth": {"username": "prometheus", "password": "scrape-me"},
                    "static_configs": [{"targets": [target]}],
                },
                {
                    # The same target with a wrong password: refused, so up is 0.
                    "job_name": "mds-wrong-password",
                    "scheme": "https",
                    "tls_config": {
                        "ca_file": str(pki.ca),
                        "cert_file": str(pki.client_cert),
                        "key_file": str(pki.client_key),
                    },
                    "basic_auth": {"username": "prometheus", "password": "guess"},
                    "static_configs": [{"targets": [target]}],
                },
            ],
        }
        with prometheus(executable, config, tmp_path / "prometheus") as server:

            def up(job: str) -> list[str]:
                result = server.get_json("/api/v1/query", query=f'up{{job="{job}"}}')
                return [sample["value"][1] for sample in result["data"]["result"]]

            wait_until(lambda: up("mds") == ["1"], 30, "up == 1 for the TLS + basic auth job")
            wait_until(lambda: up("mds-wrong-password") == ["0"], 30, "up == 0, wrong password")
            families = server.get_json("/api/v1/query", query='mds_service_running{job="mds"}')[
                "data"
            ]["result"]
            assert families, "the scraped metrics reached Prometheus"
    finally:
        mds.close()
