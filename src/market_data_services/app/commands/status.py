"""``mds status [URL]``: a running instance's services as a table, from its health endpoint.

Without a URL it asks the instance the configuration describes, as ``mds run`` reads it
(``--config``/``$MDS_CONFIG``, ``MDS_HTTP_*``): ``http.listen`` (a wildcard address is
asked on loopback), over https when TLS is configured, trusting the configured
certificate besides the system's.

Exit status: 0 when every service is healthy, 1 when one is degraded or the instance
cannot be reached, 2 for bad usage or configuration.
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from market_data_services.app.commands._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    help_text,
)
from market_data_services.app.commands._options import add_config_file_option, load_config
from market_data_services.app.config import DEFAULT_LISTEN, HttpConfig, mask_url
from market_data_services.app.server import HEALTH_PATH

#: Where a server listening on every address is asked.
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}

COLUMNS = (
    "SERVICE",
    "STATUS",
    "RUNNING",
    "BREAKER",
    "SYMBOLS",
    "ITERATIONS",
    "ERRORS",
    "ERROR RATE",
    "RECENT",
    "LAST SUCCESS",
)


def health_url(url: str | None) -> str:
    """The health endpoint of ``url`` (a base URL, ``host:port``, or the endpoint itself)."""
    text = url or f"http://{DEFAULT_LISTEN}"
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    path = parts.path.rstrip("/")
    if not path.endswith(HEALTH_PATH):
        path = path + HEALTH_PATH
    return urlunsplit(parts._replace(path=path))


def instance_url(http: HttpConfig) -> str:
    """The base URL of the instance ``http`` configures: https when TLS is set."""
    host = _LOOPBACK.get(http.host, http.host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if http.tls else 'http'}://{host}:{http.port}"


def fetch(
    url: str,
    *,
    timeout: float,
    insecure: bool,
    cafile: str | None,
    also_trust: str | None = None,
) -> tuple[int, Any]:
    parts = urlsplit(url)
    headers = {"Accept": "application/json"}
    if parts.username is not None:
        # A URL carries its user and password percent-encoded (a ':' or '@' in them must be).
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        netloc = parts.netloc.rpartition("@")[2]
        url = urlunsplit(parts._replace(netloc=netloc))
    context = None
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=cafile)
        if also_trust is not None:
            context.load_verify_locations(cafile=also_trust)
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 503:  # degraded: the body is the report
            return exc.code, json.load(exc)
        raise


def render(report: dict[str, Any]) -> str:
    rows = [COLUMNS]
    for name, svc in report.get("services", {}).items():
        rows.append(
            (
                name,
                str(svc.get("status", "?")),
                "yes" if svc.get("running") else "no",
                str(svc.get("circuit_breaker", "?")),
                _symbols_cell(svc),
                str(svc.get("iterations", "?")),
                str(svc.get("errors", "?")),
                str(svc.get("error_rate", "?")),
                str(svc.get("recent_error_rate", "-")),
                str(svc.get("last_success") or "never"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append("")
    lines.append(f"overall: {report.get('overall_status', '?')}")
    for name, svc in report.get("services", {}).items():
        for reason in svc.get("reasons", []):
            lines.append(f"  {name}: {reason}")
    lines.extend(_ownership_lines(report))
    return "\n".join(lines) + "\n"


def _symbols_cell(svc: dict[str, Any]) -> str:
    """Owned/configured symbols ("10/30"), or "-" from an instance that does not say."""
    owned = svc.get("owned_symbols")
    if owned is None:
        return "-"
    return f"{len(owned)}/{len(svc.get('symbols', []))}"


def _instances(count: Any) -> str:
    return "alone" if count == 1 else f"shared by {count} instances"


def _ownership_lines(report: dict[str, Any]) -> list[str]:
    """Which symbols this instance works, for services shared with other instances."""
    lines: list[str] = []
    for name, svc in report.get("services", {}).items():
        ownership = svc.get("ownership") or {}
        if not ownership.get("shared"):
            continue
        owned = svc.get("owned_symbols", [])
        lines.append(
            f"{name}: owns {len(owned)} of {len(svc.get('symbols', []))} symbols, "
            f"{_instances(ownership.get('instances'))}: {', '.join(owned) or '(none)'}"
        )
        unowned = ownership.get("unowned_symbols") or []
        if unowned:
            lines.append(f"  {name}: without an owner at the last claim: {', '.join(unowned)}")
    if lines:
        lines.insert(0, "")
    return lines


def status(args: argparse.Namespace) -> int:
    own_certificate = None
    if args.url is None:
        config = load_config("mds status", args)
        if config is None:
            return EXIT_USAGE
        url = health_url(instance_url(config.http))
        own_certificate = config.http.tls_cert_file
    else:
        url = health_url(args.url)
    try:
        code, report = fetch(
            url,
            timeout=args.timeout,
            insecure=args.insecure,
            cafile=args.cacert,
            also_trust=own_certificate,
        )
    except urllib.error.HTTPError as exc:
        print(f"mds: {mask_url(url)}: HTTP {exc.code} {exc.reason}", file=sys.stderr)
        return EXIT_FAILURE
    except (OSError, ValueError) as exc:
        print(f"mds: cannot read {mask_url(url)}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        sys.stdout.write(render(report))
    return EXIT_OK if code == 200 else EXIT_FAILURE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a running instance's services from its health endpoint",
        description=help_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url",
        nargs="?",
        help="base URL or HOST:PORT of the instance (default: http.listen of the "
        f"configuration, http://{DEFAULT_LISTEN}, https when TLS is configured); "
        "https://user:password@host:port for basic auth",
    )
    add_config_file_option(parser)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--cacert", metavar="FILE", help="CA certificate to trust for https")
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify the server's TLS certificate"
    )
    parser.set_defaults(handler=status)
