"""Start ``mds run`` as a real subprocess and talk to it over HTTP.

The server listens on port 0; the harness reads the bound URL from the JSON log line
``mds.running`` on standard error, so no port is guessed. Every log line is kept for
assertions and shown when a test fails.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.conftest import dies_with_parent

START_TIMEOUT_SECONDS = 30.0


def clean_environment() -> dict[str, str]:
    """This process's environment without MDS_* and OTEL_* variables of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MDS_", "OTEL_"))}


def run_command(args: Sequence[str]) -> list[str]:
    """``mds run`` on a free port with JSON logs, then ``args``."""
    return [
        sys.executable,
        "-m",
        "market_data_services",
        "run",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        *args,
    ]


class MdsProcess:
    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        wait_until_running: bool = True,
    ) -> None:
        environment = clean_environment()
        environment.update(env or {})
        self.proc = subprocess.Popen(
            dies_with_parent(run_command(args)),
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.logs: list[dict[str, Any]] = []  # appended by the reader thread only
        self.raw_stderr: list[str] = []
        self.stdout: list[str] = []
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.url = ""
        if wait_until_running:
            running = self.wait_for_log("mds.running", START_TIMEOUT_SECONDS)
            self.url = running["url"]

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.raw_stderr.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            self.logs.append(record)
            self._events.put(record)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)

    def wait_for_log(self, event: str, timeout: float) -> dict[str, Any]:
        for record in list(self.logs):
            if record.get("event") == event:
                return record
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self._events.empty()):
                raise AssertionError(
                    f"no {event!r} log line within {timeout}s "
                    f"(exit {self.proc.poll()}); stderr:\n{''.join(self.raw_stderr)[-4000:]}"
                )
            try:
                record = self._events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if record.get("event") == event:
                return record

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def health(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/api/health/aggregators")
        return status, json.loads(body)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for reader in self._readers:
            reader.join(5)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)
