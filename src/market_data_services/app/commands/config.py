"""``mds config show`` and ``mds config hash-password``."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from market_data_services.app.auth import DEFAULT_BCRYPT_COST, hash_password_bcrypt
from market_data_services.app.auth import hash_password as make_hash
from market_data_services.app.commands._common import EXIT_OK, EXIT_USAGE
from market_data_services.app.commands._options import add_config_options, config_source
from market_data_services.app.config import ConfigError, to_toml, to_tree


def show(args: argparse.Namespace) -> int:
    """Print the effective configuration (secrets masked) and, with --origins, its sources."""
    try:
        source = config_source(args)
        config = source.load()
    except ConfigError as exc:
        print(f"mds: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    tree = to_tree(config, masked=True)
    if args.format == "json":
        print(json.dumps(tree, indent=2))
    else:
        sys.stdout.write(to_toml(tree))
    if args.origins:
        origins = source.origins()
        print("\n# where the values came from (everything else is a default):", file=sys.stderr)
        for key in sorted(origins):
            print(f"#   {key}: {origins[key]}", file=sys.stderr)
    return EXIT_OK


def hash_password(args: argparse.Namespace) -> int:
    """Read a password (prompt, or one line of standard input) and print its hash."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("mds: the passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("mds: empty password", file=sys.stderr)
        return EXIT_USAGE
    if args.bcrypt:
        try:
            print(hash_password_bcrypt(password, cost=args.cost))
        except ValueError as exc:
            print(f"mds: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    print(make_hash(password))
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("config", help="show the effective configuration")
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    show_parser = sub.add_parser(
        "show", help="print the effective configuration as TOML, secrets masked"
    )
    add_config_options(show_parser)
    show_parser.add_argument("--format", choices=("toml", "json"), default="toml")
    show_parser.add_argument(
        "--origins", action="store_true", help="also list where each set value came from"
    )
    show_parser.set_defaults(handler=show)
    hash_parser = sub.add_parser(
        "hash-password",
        help="hash a password for http.basic_auth_password_hash (reads standard input)",
    )
    hash_parser.add_argument(
        "--bcrypt",
        action="store_true",
        help="a bcrypt hash (as basic_auth_users of a --web.config.file take) "
        "instead of PBKDF2-SHA256",
    )
    hash_parser.add_argument(
        "--cost",
        type=int,
        choices=range(4, 32),
        default=DEFAULT_BCRYPT_COST,
        metavar="4..31",
        help=f"bcrypt cost (default {DEFAULT_BCRYPT_COST})",
    )
    hash_parser.set_defaults(handler=hash_password)

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    parser.set_defaults(handler=usage)
