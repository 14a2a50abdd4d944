"""``vlmprobe`` command line: a thin layer over the library.

Each subcommand lives in ``vlmprobe/commands/<name>.py`` with ``register(subparsers)`` (adds
its parser, ``set_defaults(func=run)``) and ``run(args) -> int``. User errors
(``VlmprobeError``) are printed as one line, exit status 2 (``--debug``: with the traceback).
Under a multi-process launch a command is one ``distributed.all_or_none`` step: a failure on any
process fails it on every process with ``rank R failed: ...`` (no process left waiting).
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
            "retrieval", "compare", "collect", "browse", "audit", "wikiqa_build"]


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
    for command in _leaf_parsers(sub):
        command.add_argument("--debug", action="store_true",
                             help="on an error, print the full traceback (with its cause) instead of one line")
        if "--no-progress" not in command._option_string_actions:
            command.add_argument("--no-progress", action="store_true",
                                 help="hide every progress bar (builds, training, checkpoint loading, counting)")
    return parser


def _leaf_parsers(sub) -> list[argparse.ArgumentParser]:
    """The parsers that take a command's options (``vlmprobe toy build``'s, not ``toy``'s)."""
    out = []
    for parser in sub.choices.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        out += _leaf_parsers(nested[0]) if nested else [parser]
    return out


def main(argv: list[str] | None = None) -> int:
    from .distributed import all_or_none, world

    if not world().main:  # one report per launch: rank 0 prints, the others only report errors
        sys.stdout = open(os.devnull, "w")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["wikiqa", "build"]:  # `vlmprobe wikiqa build`: its own parser (commands/wikiqa_build.py)
        argv = ["wikiqa-build", *argv[2:]]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from .progress import progress_bars

    try:
        with progress_bars(not getattr(args, "no_progress", False)):
            if args.command == "study":  # the study settles each run itself (and goes on to the next)
                return int(args.func(args) or 0)
            # launched on N processes: a failure on any of them ends the command on all, naming it
            return int(all_or_none(world(), lambda: args.func(args)) or 0)
    except VlmprobeError as e:
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        print(f"vlmprobe {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vlmprobe {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
