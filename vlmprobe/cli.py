"""``vlmprobe`` command line: a thin layer over the library.

Each subcommand lives in ``vlmprobe/commands/<name>.py`` with ``register(subparsers)`` (adds
its parser, ``set_defaults(func=run)``) and ``run(args) -> int``. User errors
(``VlmprobeError``) are printed as one line, exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from . import __version__
from .errors import VlmprobeError

COMMANDS = ["demo", "study", "report", "eval", "metrics", "frequency", "probe", "wikiqa", "toy", "merge", "cpe",
            "retrieval", "compare", "collect"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlmprobe",
        description="Evaluate, probe and fine-tune vision-language models beside CLIP on image classification.",
        epilog="Run 'vlmprobe COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"vlmprobe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if importlib.util.find_spec(f"vlmprobe.commands.{name}") is not None:
            importlib.import_module(f"vlmprobe.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .distributed import world

    if not world().main:  # one report per launch: rank 0 prints, the others only report errors
        sys.stdout = open(os.devnull, "w")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except VlmprobeError as e:
        print(f"vlmprobe {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vlmprobe {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
