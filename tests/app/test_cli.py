from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from market_data_services import __version__
from market_data_services.app import cli
from market_data_services.app.cli import build_parser, main
from market_data_services.app.commands import Command
from tests.conftest import SAMPLE_DATA


def run_mds(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "market_data_services", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )


def test_version_prints_the_package_version() -> None:
    result = run_mds("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mds {__version__}"


def test_help_describes_the_command() -> None:
    result = run_mds("--help")
    assert result.returncode == 0
    assert "usage: mds" in result.stdout


def test_no_command_prints_help_and_exits_2() -> None:
    result = run_mds()
    assert result.returncode == 2
    assert "usage: mds" in result.stdout


def commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """Every command line that has its own --help: (), ("run",), ("config", "show"), ..."""
    yield list(words)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*words, name))


#: reST that reads as noise in a terminal: ``literal``, :role:`x`, `link`_, directives.
REST = re.compile(r"``|:[a-z]+:`|`_|^\.\. ", re.MULTILINE)


def test_every_help_page_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    pages = {}
    for words in commands(build_parser()):
        with pytest.raises(SystemExit) as exited:
            main([*words, "--help"])
        assert exited.value.code == 0
        pages[" ".join(["mds", *words])] = capsys.readouterr().out
    assert {"mds", "mds run", "mds status", "mds config show", "mds ingest ticks"} <= set(pages)
    for command, page in pages.items():
        assert page.startswith(f"usage: {command}"), command
        assert not REST.search(page), f"{command} --help:\n{page}"
    assert "mds run: start the enabled services" in pages["mds run"]


#: what ``mds --version`` and ``mds --help`` must not import: each costs 50-160 ms of start
#: (issue 13), and neither command needs any of them.
HEAVY = ("sqlalchemy", "numpy", "alembic", "mako", "pygments", "opentelemetry", "pandas")
OUR_HEAVY = ("storage", "aggregators", "ingest", "runtime", "market")


#: runs ``mds ARGS`` as the console script does, then lists every module it imported
PROBE = """
import sys
from market_data_services.app.cli import main
try:
    main(sys.argv[1:])
finally:
    print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


def imported_modules(*args: str) -> set[str]:
    """The modules ``mds ARGS`` has imported by the time it exits."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return set(result.stderr.split())


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_no_database_or_numeric_library(flag: str) -> None:
    modules = imported_modules(flag)
    assert "market_data_services.app.cli" in modules  # the probe sees our imports
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not loaded, f"mds {flag} imports {loaded}"
    ours = sorted(
        m for m in modules if m.startswith("market_data_services.") and m.split(".")[1] in OUR_HEAVY
    )
    assert not ours, f"mds {flag} imports {ours}"


def test_a_command_imports_only_once_named() -> None:
    modules = imported_modules("status", "--help")
    assert "market_data_services.app.commands.status" in modules
    assert "market_data_services.app.commands.ingest" not in modules
    assert "market_data_services.app.commands.backfill" not in modules


#: What ``mds backfill --kind candles`` and ``mds ingest ticks`` on SQLite never use, each
#: 5-50 ms of their start (issue 13): the PostgreSQL driver, the other services, the demo
#: feed, the web configuration's YAML and bcrypt. (prometheus_client's package imports its
#: HTTP exposition whichever of its modules one imports.)
NOT_FOR_SQLITE_COMMANDS = (
    "psycopg",
    "market_data_services.storage._deadline",
    "market_data_services.aggregators.dom",
    "market_data_services.aggregators.sentiment.service",
    "market_data_services.aggregators.retention.service",
    "market_data_services.demo.feed",
    "market_data_services.demo.market",
    "market_data_services.app.webconfig",
    "market_data_services.app.auth",
    "yaml",
    "bcrypt",
)


def test_a_candles_backfill_and_a_tick_ingest_on_sqlite_import_only_what_they_use(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'mds.sqlite'}"
    sample = SAMPLE_DATA / "forex_ticks/lean_fxcm/eurusd/20140504_eurusd_tick_quote.csv.gz"
    assert main(["db", "upgrade", "--db", url]) == 0
    ingest = ["ingest", "ticks", str(sample), "--symbol", "EUR/USD", "--tz", "UTC-05:00"]
    backfill = ["backfill", "--kind", "candles"]
    # command -> a module it uses (it did its work), and what else it must not import
    commands = {
        "ingest": (
            ingest,
            "market_data_services.ingest.ticks",
            ("market_data_services.aggregators.candles",),
        ),
        "backfill": (
            backfill,
            "market_data_services.aggregators.candles.service",
            ("market_data_services.ingest", "market_data_services.market.book"),
        ),
    }
    for name, (args, used, also_unused) in commands.items():
        modules = imported_modules(*args, "--no-progress", "--db", url)
        assert used in modules, name
        unused = sorted(
            m for m in modules if m.startswith((*NOT_FOR_SQLITE_COMMANDS, *also_unused))
        )
        assert not unused, f"mds {name} imports {unused}"


def test_top_level_help_lists_what_each_command_registers() -> None:
    """The summaries of ``COMMANDS`` (shown without importing the commands) are the ones
    the commands' own modules register, so the cheap help does not drift from them."""
    assert build_parser(lazy=True).format_help() == build_parser().format_help()


def test_a_command_whose_module_does_not_register_it_fails_loudly() -> None:
    parser = argparse.ArgumentParser(prog="mds")
    subparsers = parser.add_subparsers(action=cli._LazySubcommands)
    assert isinstance(subparsers, cli._LazySubcommands)
    subparsers.add_placeholder(
        Command(name="nothing", summary="x", module="market_data_services.app.commands.status")
    )
    with pytest.raises(RuntimeError, match=r"commands\.status\.register did not add.*'nothing'"):
        parser.parse_args(["nothing"])


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback() -> None:
    # `mds config show | head -1` where head has exited: the output meets a closed
    # pipe. (Closed before mds writes: a reader closing after the first line races with
    # mds writing its few KB into the pipe's buffer.)
    mds = subprocess.Popen(
        [sys.executable, "-m", "market_data_services.app.cli", "config", "show", "--demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert mds.stdout is not None and mds.stderr is not None
    mds.stdout.close()
    stderr = mds.stderr.read().decode()
    assert mds.wait(timeout=60) == cli.EXIT_BROKEN_PIPE
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
