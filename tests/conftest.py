"""Shared test helpers.

External things (PostgreSQL, promtool, prometheus, alertmanager) are required in CI
(``CI=true``): a test that needs one fails there when it is missing. On a developer's
machine it is skipped with a reason that says how to enable it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

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


#: Small real samples kept in the repository, in the full data set's layout (their
#: sources and licences: tests/data/README.md). Tests read these unless they need it all.
SAMPLE_DATA = Path(__file__).resolve().parent / "data"

#: How to get the full data set, for skip and failure messages.
_FULL_DATA_HOW = (
    "set MDS_SHARED_DATA to the folder of the full market data set "
    "(see the README's first section; CI has it as ../shared/data)"
)


def shared_data() -> Path:
    """The full real data set: ``$MDS_SHARED_DATA``, else ``../shared/data`` beside the clone.

    Only a path: nothing is read, so a module may compute paths from it at import.
    """
    default = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return Path(os.environ.get("MDS_SHARED_DATA", default)).resolve()


def full_data(*parts: str) -> Path:
    """A folder or file of the full data set; skips (fails in CI) when it is missing."""
    path = shared_data().joinpath(*parts)
    if not path.exists():
        unavailable(f"the full market data set ({path})", _FULL_DATA_HOW)
    return path


# Database fixtures (database_url, engine, database_factory) and the market-data samples
# (ticks_dir, orderbook_dir, sentiment_dir, full_ticks_dir) for every test directory.
pytest_plugins = ("tests.databases", "tests.samples")


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
