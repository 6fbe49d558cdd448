"""Showing the configuration: as plain values with secrets masked, and as TOML."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from market_data_services.app.config.model import Config

MASK = "***"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc[2]}"))


_SECRET_KEYS = ("basic_auth_password", "basic_auth_password_hash")


def to_tree(config: Config, *, masked: bool = True) -> dict[str, Any]:
    """The configuration as a nested dict of plain values, secrets masked."""

    def plain(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name == "options":
                if value is not None:
                    out.update(plain(value))
                continue
            if dataclasses.is_dataclass(value):
                out[f.name] = plain(value)
            elif isinstance(value, Mapping):
                out[f.name] = {k: plain(v) for k, v in value.items()}
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            elif masked and f.name in _SECRET_KEYS and value is not None:
                out[f.name] = MASK
            elif masked and f.name == "url" and isinstance(value, str):
                out[f.name] = mask_url(value)
            else:
                out[f.name] = value
        return out

    return plain(config)


def to_toml(tree: Mapping[str, Any]) -> str:
    """Write a nested dict of str/int/float/bool/list/None as TOML (None as a comment)."""
    lines: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'

    def table(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        leaves = [(k, v) for k, v in node.items() if not isinstance(v, Mapping)]
        if path and leaves:
            lines.append("")
            lines.append(f"[{'.'.join(path)}]")
        for key, value in leaves:
            if value is None:
                lines.append(f"# {key} = (not set)")
            else:
                lines.append(f"{key} = {scalar(value)}")
        for key, value in node.items():
            if isinstance(value, Mapping):
                table(value, (*path, key))

    table(tree, ())
    return "\n".join(lines).lstrip("\n") + "\n"


__all__ = ["MASK", "mask_url", "to_toml", "to_tree"]
