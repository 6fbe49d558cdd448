"""The exporter-toolkit web configuration file: read unchanged, refused naming the key."""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from market_data_services.app.auth import BasicAuth, hash_password_bcrypt
from market_data_services.app.catalog import SERVICES
from market_data_services.app.cli import main
from market_data_services.app.config import ConfigError, ConfigSource, HttpConfig
from market_data_services.app.server import HttpServer, make_app
from market_data_services.app.webconfig import load_web_config
from tests.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write_web_config(directory: Path, pki: Pki, **tls: Any) -> Path:
    """A file as a platform team writes it: relative paths, a $2y$ bcrypt hash."""
    for source in (pki.ca, pki.server_cert, pki.server_key):
        (directory / source.name).write_bytes(source.read_bytes())
    config = {
        "tls_server_config": {
            "cert_file": "server.crt",
            "key_file": "server.key",
            **tls,
        },
        "basic_auth_users": {"alice": "$2y$" + hash_password_bcrypt("wonderland", cost=4)[4:]},
    }
    path = directory / "web-config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def fetch(url: str, context: ssl.SSLContext, password: str | None = None) -> int:
    headers = {}
    if password is not None:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()
        )
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def serve_from(path: Path) -> HttpServer:
    web = load_web_config(path)
    app = make_app(
        registry=CollectorRegistry(),
        health=lambda: (200, {}),
        ready=lambda: (True, {}),
        auth=BasicAuth.from_hashes(web.users),
    )
    server = HttpServer(app, host="127.0.0.1", port=0, threads=2, tls=web.tls)
    server.start()
    return server


def test_a_web_config_file_serves_tls_with_its_bcrypt_users(tmp_path: Path, pki: Pki) -> None:
    server = serve_from(write_web_config(tmp_path, pki))
    try:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(pki.ca))
        assert fetch(f"{server.url}/metrics", context, "wonderland") == 200
        assert fetch(f"{server.url}/metrics", context, "guess") == 401
        assert fetch(f"{server.url}/metrics", context) == 401
    finally:
        server.stop()


def test_client_certificates_are_required_when_the_file_says_so(tmp_path: Path, pki: Pki) -> None:
    path = write_web_config(
        tmp_path,
        pki,
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file="ca.crt",
        min_version="TLS13",
    )
    server = serve_from(path)
    try:
        anonymous = ssl.create_default_context(cafile=str(pki.ca))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            fetch(f"{server.url}/metrics", anonymous, "wonderland")
        with_cert = ssl.create_default_context(cafile=str(pki.ca))
        with_cert.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        assert fetch(f"{server.url}/metrics", with_cert, "wonderland") == 200
        old = ssl.create_default_context(cafile=str(pki.ca))
        old.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            fetch(f"{server.url}/metrics", old, "wonderland")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"min_version": "TLS9"}, "tls_server_config.min_version: must be one of TLS10"),
        (
            {"client_auth_type": "RequestClientCert"},
            "tls_server_config.client_auth_type: must be one of NoClientCert",
        ),
        (
            {"client_auth_type": "RequireAndVerifyClientCert"},
            "tls_server_config.client_ca_file: is required",
        ),
        ({"client_ca_file": "ca.crt"}, "tls_server_config.client_auth_type: client_ca_file is"),
        ({"cipher_suites": ["X"]}, "tls_server_config.cipher_suites: is not supported"),
        ({"cert_file": "missing.crt"}, "tls_server_config.cert_file: no such file"),
        ({"ciphers": "x"}, "tls_server_config.ciphers: unknown key; valid keys here: cert_file"),
        ({"users": {"bob": "hunter2"}}, "basic_auth_users.bob: must look like"),
    ],
)
def test_a_bad_web_config_file_is_refused_naming_the_key(
    tmp_path: Path, pki: Pki, patch: dict[str, Any], expected: str
) -> None:
    users = patch.pop("users", None)
    path = write_web_config(tmp_path, pki, **patch)
    if users is not None:
        raw = yaml.safe_load(path.read_text())
        raw["basic_auth_users"] = users
        path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as refused:
        HttpConfig(web_config_file=str(path))
    assert str(refused.value).startswith(f"web_config_file: {path}: {expected}")


def test_a_web_config_file_and_the_http_auth_keys_together_are_refused(
    tmp_path: Path, pki: Pki
) -> None:
    path = write_web_config(tmp_path, pki)
    env = {
        "MDS_HTTP_WEB_CONFIG_FILE": str(path),
        "MDS_HTTP_BASIC_AUTH_USERNAME": "prom",
        "MDS_HTTP_BASIC_AUTH_PASSWORD": "pw",
    }
    with pytest.raises(ConfigError, match=r"http\.web_config_file: set either web_config_file or"):
        ConfigSource(catalog=SERVICES, environ=env).load()


def test_the_web_config_file_flag_sets_the_key(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_web_config(tmp_path, pki)
    assert main(["config", "show", "--web.config.file", str(path), "--format", "json"]) == 0
    assert f'"web_config_file": "{path}"' in capsys.readouterr().out
