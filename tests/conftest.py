"""Shared test helpers.

External things (PostgreSQL, promtool, prometheus, alertmanager) are required in CI
(``CI=true``): a test that needs one fails there when it is missing. On a developer's
machine it is skipped with a reason that says how to enable it.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(what: str, how: str) -> None:
    """Fail in CI, skip elsewhere, naming what is missing and how to get it."""
    message = f"{what} is not available; {how}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: required, not skipped)")
    pytest.skip(message)


def require_executable(name: str, debian_package: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(
            f"`{name}`",
            f"install it with `apt-get update && apt-get install -y {debian_package}`",
        )
    assert path is not None
    return path


# Database fixtures (database_url, engine, database_factory) for every test directory.
pytest_plugins = ("tests.databases",)


def dies_with_parent(command: list[str]) -> list[str]:
    """``command`` wrapped so that the kernel kills it if the test process dies.

    Without it, a test run that is killed (a timeout, Ctrl-C twice) leaves ``mds run``,
    Prometheus or Alertmanager running with nobody reading their pipes. util-linux's
    ``setpriv --pdeathsig`` sets the parent-death signal and execs the command, which
    avoids ``preexec_fn`` (unsafe in a process with threads).
    """
    setpriv = shutil.which("setpriv")
    if sys.platform != "linux" or setpriv is None:
        return command
    return [setpriv, "--pdeathsig", "KILL", "--", *command]
