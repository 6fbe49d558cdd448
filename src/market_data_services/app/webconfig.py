"""The Prometheus exporter-toolkit web configuration file (``--web.config.file``).

A platform team that already runs exporters has one such YAML file for TLS and basic
auth; ``mds run`` reads it unchanged, as an alternative to the ``[http]`` keys:

    tls_server_config:
      cert_file: server.crt          # relative paths: from the file's own directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
      client_ca_file: ca.crt
      min_version: TLS12             # TLS10..TLS13, default TLS12; max_version likewise
    basic_auth_users:
      alice: $2y$10$...              # bcrypt (or our pbkdf2_sha256$...)

Differences from the toolkit, each refused with the key named rather than ignored: the
file is read once at start (restart to change it); RequestClientCert and
RequireAnyClientCert (client certificates that are not verified) are not offered by
Python's ssl; cipher_suites, curve_preferences, client_allowed_sans, inline cert/key,
http_server_config and rate_limit are not implemented. prefer_server_cipher_suites is
accepted and ignored (Go ignores it too since 1.17).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market_data_services.app.auth import parse_password_hash

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
#: Client certificate policies Python's ssl can enforce, as ssl verify modes.
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
)
_NOT_IMPLEMENTED = (
    "cert",
    "key",
    "cipher_suites",
    "curve_preferences",
    "client_allowed_sans",
)
_TOP_KEYS = ("tls_server_config", "basic_auth_users")
_TOP_NOT_IMPLEMENTED = ("http_server_config", "rate_limit")


class WebConfigError(ValueError):
    """The file is wrong; the message names the file and the key."""

    def __init__(self, path: Path, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")


@dataclass(frozen=True, kw_only=True)
class ServerTls:
    """What the HTTP server's TLS needs: files, client certificates, versions."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    #: ssl.CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED for client certificates.
    verify_mode: ssl.VerifyMode = ssl.CERT_NONE
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None

    def context(self) -> ssl.SSLContext:
        """A server context with these settings (reads the files)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = self.min_version
        if self.max_version is not None:
            context.maximum_version = self.max_version
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
        context.verify_mode = self.verify_mode
        return context


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    path: Path
    tls: ServerTls | None = None
    #: username -> stored hash; empty: no basic auth.
    users: Mapping[str, str] = field(default_factory=dict)


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check the file; WebConfigError names the file and the key at fault."""
    import yaml  # noqa: PLC0415 - only with a file: mds run without one does not import it

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WebConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise WebConfigError(path, "", f"not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise WebConfigError(path, "", "must be a YAML mapping")
    _known(path, raw, "", _TOP_KEYS, _TOP_NOT_IMPLEMENTED)
    tls = _tls(path, raw.get("tls_server_config"))
    users = _users(path, raw.get("basic_auth_users"))
    return WebConfig(path=path, tls=tls, users=users)


def _known(
    path: Path, raw: Mapping[Any, Any], prefix: str, known: tuple[str, ...], later: tuple[str, ...]
) -> None:
    for key in raw:
        dotted = f"{prefix}{key}"
        if key in later:
            raise WebConfigError(path, dotted, "is not supported by mds (see README, Security)")
        if key not in known:
            raise WebConfigError(path, dotted, f"unknown key; valid keys here: {', '.join(known)}")


def _text(path: Path, raw: Mapping[str, Any], key: str, prefix: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebConfigError(path, prefix + key, f"must be a string, got {value!r}")
    return value


def _tls(path: Path, raw: Any) -> ServerTls | None:
    prefix = "tls_server_config."
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict):
        raise WebConfigError(path, "tls_server_config", "must be a mapping")
    _known(path, raw, prefix, _TLS_KEYS, _NOT_IMPLEMENTED)
    files: dict[str, str | None] = {}
    for key in ("cert_file", "key_file", "client_ca_file"):
        name = _text(path, raw, key, prefix)
        if name is not None:
            resolved = path.parent / name  # relative to the file, as the toolkit does
            if not resolved.is_file():
                raise WebConfigError(path, prefix + key, f"no such file: {resolved}")
            name = str(resolved)
        files[key] = name
    for key in ("cert_file", "key_file"):
        if files[key] is None:
            raise WebConfigError(path, prefix + key, "is required in tls_server_config")
    auth_type = _text(path, raw, "client_auth_type", prefix) or "NoClientCert"
    if auth_type not in CLIENT_AUTH_TYPES:
        raise WebConfigError(
            path,
            prefix + "client_auth_type",
            f"must be one of {', '.join(CLIENT_AUTH_TYPES)}; got {auth_type!r}",
        )
    verify_mode = CLIENT_AUTH_TYPES[auth_type]
    if verify_mode != ssl.CERT_NONE and files["client_ca_file"] is None:
        raise WebConfigError(
            path, prefix + "client_ca_file", f"is required with client_auth_type {auth_type}"
        )
    if verify_mode == ssl.CERT_NONE and files["client_ca_file"] is not None:
        raise WebConfigError(
            path,
            prefix + "client_auth_type",
            "client_ca_file is set but client certificates are not checked; "
            "set RequireAndVerifyClientCert or VerifyClientCertIfGiven",
        )
    versions: dict[str, ssl.TLSVersion | None] = {}
    for key, default in (("min_version", "TLS12"), ("max_version", None)):
        text = _text(path, raw, key, prefix) or default
        if text is not None and text not in TLS_VERSIONS:
            raise WebConfigError(
                path, prefix + key, f"must be one of {', '.join(TLS_VERSIONS)}; got {text!r}"
            )
        versions[key] = None if text is None else TLS_VERSIONS[text]
    min_version, max_version = versions["min_version"], versions["max_version"]
    assert min_version is not None
    if max_version is not None and max_version < min_version:
        raise WebConfigError(path, prefix + "max_version", "is below min_version")
    cert_file, key_file = files["cert_file"], files["key_file"]
    assert cert_file is not None and key_file is not None
    return ServerTls(
        cert_file=cert_file,
        key_file=key_file,
        client_ca_file=files["client_ca_file"],
        verify_mode=verify_mode,
        min_version=min_version,
        max_version=max_version,
    )


def _users(path: Path, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError(path, "basic_auth_users", "must be a mapping of user: hash")
    users: dict[str, str] = {}
    for name, stored in raw.items():
        key = f"basic_auth_users.{name}"
        if not isinstance(name, str) or not name or ":" in name:
            raise WebConfigError(path, key, "a username must be a non-empty string without ':'")
        if not isinstance(stored, str):
            raise WebConfigError(path, key, "must be a bcrypt hash string")
        try:
            parse_password_hash(stored)
        except ValueError as exc:
            raise WebConfigError(path, key, str(exc)) from None
        users[name] = stored
    return users
