"""The ``mds`` command line.

Each subcommand lives in its own module under ``app/commands`` and exposes
``register(subparsers)``; ``app/commands/__init__.py`` lists them, one line each. This
module only assembles them, so adding a command never touches another one.

A command's module is imported only when the command line names it: ``mds --version``
and ``mds --help`` import neither SQLAlchemy nor numpy nor any command, and start in a
few tens of milliseconds instead of most of a second.

Exit status: 0 success, 1 failure at run time, 2 bad usage, configuration or input;
141 when the reader of standard output went away (``mds config show | head``), as a
program killed by SIGPIPE gives in a shell, without a traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from market_data_services._version import __version__
from market_data_services.app.commands import COMMANDS, EXIT_USAGE, Command

if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # argparse's class is generic only in typeshed
    _SubParsers = argparse._SubParsersAction


class _LazySubcommands(_SubParsers):
    """Subparsers whose commands are placeholders until the command line names one.

    The top-level help lists each command's summary from ``COMMANDS``; when argparse
    dispatches to a command, its module is imported and its ``register`` replaces the
    placeholder with the real parser, so the command's own options and ``--help`` are
    exactly those its module defines.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, Command] = {}  # owned by the parsing thread

    def add_placeholder(self, command: Command) -> None:
        self.add_parser(command.name, help=command.summary)
        self._pending[command.name] = command

    def load(self, name: str) -> None:
        """Replace the placeholder of ``name`` by the parser its module registers."""
        command = self._pending.pop(name, None)
        if command is None:
            return
        del self._name_parser_map[name]
        self._choices_actions = [a for a in self._choices_actions if a.dest != name]
        command.load()(self)
        if name not in self._name_parser_map:
            raise RuntimeError(f"{command.module_name}.register did not add the command {name!r}")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if isinstance(values, Sequence) and values and isinstance(values[0], str):
            self.load(values[0])
        super().__call__(parser, namespace, values, option_string)


def build_parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """The ``mds`` parser with every command built (what tests and docs walk), or with
    ``lazy=True`` each command imported only once the command line names it."""
    parser = argparse.ArgumentParser(
        prog="mds",
        description=(
            "market-data-services: turn raw market data in a SQL database into candles, "
            "book metrics and sentiment signals, observably."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mds {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", action=_LazySubcommands)
    assert isinstance(subparsers, _LazySubcommands)
    for command in COMMANDS:
        subparsers.add_placeholder(command)
        if not lazy:
            subparsers.load(command.name)
    return parser


#: Exit status when standard output's reader closed it early (128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    # Parsing imports the command's module, and with it most of what the process will
    # ever hold (modules, classes, SQLAlchemy's and numpy's tables): hundreds of thousands
    # of objects that live until exit. The collector walking them while they are imported,
    # and once more at exit, cost a small ``mds backfill`` a fifth of its time. So the
    # process of a command line (argv None) imports with the collector off, then freezes
    # what it holds out of the collector's reach (gc.freeze). A caller passing argv (a
    # test) keeps its collector as it was.
    own_process = argv is None
    if own_process:
        gc.disable()
    try:
        parser = build_parser(lazy=True)
        args = parser.parse_args(argv)
    finally:
        if own_process:
            gc.freeze()
            gc.enable()
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        result: int = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at /dev/null so that flush does
        # not raise a second time and print a traceback after all.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
