from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from market_data_services import __version__
from market_data_services.app.cli import build_parser, main


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
