"""A real Prometheus and Alertmanager for the end-to-end tests, on loopback and free ports.

The shipped files are used as they are, except for what a test must shorten or point
elsewhere, which is done here, programmatically, on copies:

- ``scaled_rules``: the rule files with every ``for:`` and every range selector divided
  by a factor (``for: 1m`` and ``[2m]`` become ``2s`` and ``4s`` at 1/30), so alerts fire
  and resolve within seconds; the expressions are otherwise the shipped ones.
- ``alertmanager_config``: the shipped Alertmanager configuration with each webhook URL
  pointed at the test's receiver (``<url>/<receiver name>``) and the grouping waits
  shortened.
- ``prometheus_config``: deploy/prometheus.yml with its targets, rule files and
  Alertmanager replaced by the test's; scraping and evaluating at a given interval, or at
  the shipped ones when none is given.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import dies_with_parent

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_RANGE = re.compile(r"\[((?:\d+(?:ms|s|m|h|d|w|y))+)\]")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def seconds(duration: str) -> float:
    parts = _DURATION.findall(duration)
    if not parts or "".join(a + b for a, b in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(amount) * _UNITS[unit] for amount, unit in parts)


def scaled(duration: str, factor: float) -> str:
    """``duration`` times ``factor``, in whole milliseconds (at least 1 ms)."""
    return f"{max(1, round(seconds(duration) * factor * 1000))}ms"


def scaled_rules(files: list[Path], directory: Path, factor: float) -> list[Path]:
    """Copies of the rule ``files`` in ``directory``, every duration times ``factor``."""
    copies = []
    for path in files:
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = scaled(rule["for"], factor)
                rule["expr"] = _RANGE.sub(lambda m: f"[{scaled(m.group(1), factor)}]", rule["expr"])
        copy = directory / path.name
        copy.write_text(yaml.safe_dump(document, sort_keys=False))
        copies.append(copy)
    return copies


def alertmanager_config(shipped: Path, webhook_url: str) -> dict[str, Any]:
    """The shipped config, its webhooks sent to ``webhook_url``, its waits a second."""
    config: dict[str, Any] = yaml.safe_load(shipped.read_text())
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"{webhook_url}/{receiver['name']}"
    route = config["route"]
    route.update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    return config


class WebhookReceiver:
    """An HTTP server that keeps every JSON body posted to it, with the path it came to."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []  # guarded by _changed
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._changed:
                    receiver.posts.append((self.path, json.loads(body)))
                    receiver._changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(receiver path, alert) of every alert in every notification so far."""
        with self._changed:
            return [(path, alert) for path, post in self.posts for alert in post["alerts"]]

    def wait_for(
        self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float, what: str
    ) -> tuple[str, dict[str, Any]]:
        """The first alert for which ``predicate(path, alert)`` holds, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for path, post in self.posts:
                    for alert in post["alerts"]:
                        if predicate(path, alert):
                            return path, alert
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [
                        (p, a["labels"].get("alertname"), a["status"]) for p, a in self.alerts()
                    ]
                    raise AssertionError(f"{what}: not within {timeout}s; received {seen}")
                self._changed.wait(remaining)


class Server:
    """A server process (Prometheus, Alertmanager) with its output kept in a file."""

    def __init__(self, name: str, command: list[str], url: str, log: Path) -> None:
        self.name = name
        self.url = url
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            dies_with_parent(command), stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.output()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.output()}")
            time.sleep(0.2)

    def output(self) -> str:
        return self.log.read_text()[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()

    def get_json(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            return json.load(response)

    def post_json(self, path: str, body: Any) -> None:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


@contextlib.contextmanager
def alertmanager(executable: str, config: dict[str, Any], directory: Path) -> Iterator[Server]:
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    server = Server(
        "alertmanager",
        [
            executable,
            f"--config.file={config_file}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: a single instance
        ],
        f"http://127.0.0.1:{port}",
        directory / "alertmanager.log",
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


def prometheus_config(
    shipped: Path,
    *,
    rule_files: list[Path],
    targets: list[str],
    alertmanager_url: str,
    interval: str | None = None,
) -> dict[str, Any]:
    """The shipped Prometheus config, pointed at the test's servers and rule files.

    ``interval`` replaces the scrape and evaluation intervals; None keeps the shipped ones,
    for tests of how the rules behave at the intervals users run.
    """
    config: dict[str, Any] = yaml.safe_load(shipped.read_text())
    if interval is not None:
        config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(path) for path in rule_files]
    (manager,) = config["alerting"]["alertmanagers"]
    manager["static_configs"] = [{"targets": [alertmanager_url.removeprefix("http://")]}]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": targets}]
    return config


@contextlib.contextmanager
def prometheus(executable: str, config: dict[str, Any], directory: Path) -> Iterator[Server]:
    directory.mkdir(parents=True, exist_ok=True)
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    server = Server(
        "prometheus",
        [
            executable,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Firing alerts are re-sent every evaluation instead of every minute.
            "--rules.alert.resend-delay=1s",
        ],
        f"http://127.0.0.1:{port}",
        directory / "prometheus.log",
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()
