"""The course's command line: `python -m utils <command> [--json]`.

Each command lives in the module that does the work, as a function
`add_cli(subparsers)` that adds its sub-parser and sets `func`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module that defines add_cli(subparsers)
COMMANDS = {
    "doctor": "utils.doctor",
    "classify": "utils.zeroshot",
    "search": "utils.retrieval",
    "generate": "utils.generate",
    "dalle": "utils.dalle",
    "quiz": "utils.quiz",
    "train": "utils.train",
}


def build_parser(commands: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m utils", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands or COMMANDS:
        module = importlib.import_module(COMMANDS[name])
        module.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the command asked for: `doctor` must start fast.
    wanted = [argv[0]] if argv and argv[0] in COMMANDS else None
    parser = build_parser(wanted)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
