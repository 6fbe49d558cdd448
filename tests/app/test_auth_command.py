"""``mds config hash-password --bcrypt``: a hash the config and a web config file accept."""

from __future__ import annotations

import base64
import io

import pytest

from market_data_services.app.auth import BasicAuth
from market_data_services.app.catalog import SERVICES
from market_data_services.app.cli import main
from market_data_services.app.config import ConfigSource


def test_a_bcrypt_hash_from_the_command_verifies_and_is_accepted_by_the_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["config", "hash-password", "--bcrypt", "--cost", "4"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("$2b$04$")
    header = "Basic " + base64.b64encode(b"prom:correct horse").decode()
    assert BasicAuth("prom", password_hash=hashed).check(header)
    env = {"MDS_HTTP_BASIC_AUTH_USERNAME": "prom", "MDS_HTTP_BASIC_AUTH_PASSWORD_HASH": hashed}
    assert (
        ConfigSource(catalog=SERVICES, environ=env).load().http.basic_auth_password_hash == hashed
    )


def test_a_password_bcrypt_cannot_take_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("x" * 73 + "\n"))
    assert main(["config", "hash-password", "--bcrypt", "--cost", "4"]) == 2
    assert "up to 72 bytes" in capsys.readouterr().err
