"""``python -m vlmprobe.testing [DIR] [--all] [--real-tokenizers DIR]``: write the tiny offline
test models (``vlmprobe.testing``) and the real-tokenizer ones (``vlmprobe.testing.real``).

``python -m vlmprobe.testing --families [DIR] [--only T1,T2] [--checks C1,C2] [--no-others]
[--readme docs/models.md]``:
build a tiny checkpoint of every registered family into ``DIR/<model_type>/`` (default
``.vlmprobe-families``), run the conformance checks, print the support matrix and write it as
``DIR/support_matrix.json`` and ``DIR/support_matrix.md`` (``vlmprobe.testing.conformance``)."""
from __future__ import annotations

import sys

from ..testing import FAMILY_NAMES, NAMES, SPECS, build_tiny_models
from .real import build_real_models


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vlmprobe.testing",
                                     description="Write tiny random-weight test models (offline) into DIR.")
    parser.add_argument("dir", nargs="?", help="output directory (DIR/openclip, DIR/hfclip, DIR/llava, DIR/llava-next)")
    parser.add_argument("--force", action="store_true", help="rebuild even when a complete build exists")
    parser.add_argument("--all", action="store_true", help=f"also build {', '.join(FAMILY_NAMES)}")
    parser.add_argument("--real-tokenizers", metavar="DIR",
                        help="also (or only) write the real LLaMA-2 / Qwen2 tokenizers and tiny VLMs built around "
                             "them into DIR (vlmprobe.testing.real)")
    parser.add_argument("--families", nargs="?", const=".vlmprobe-families", metavar="DIR",
                        help="build every family's tiny checkpoint into DIR/<model_type>, run the conformance "
                             "checks and write the support matrix (default DIR: .vlmprobe-families)")
    parser.add_argument("--only", help="--families: comma-separated model types (default: every registered one)")
    parser.add_argument("--checks", help="--families: comma-separated check names (default: all)")
    parser.add_argument("--no-others", action="store_true",
                        help="--families: do not probe the other image-text-to-text model types")
    parser.add_argument("--readme", metavar="PATH", help="--families: also rewrite the support-matrix section of "
                                                         "this Markdown file (between its support-matrix markers; "
                                                         "the project's table is in docs/models.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.families:
        return _families(parser, args)
    if args.real_tokenizers:
        for name, path in build_real_models(args.real_tokenizers, force=args.force).items():
            print(f"{name:16s} {path if name.startswith('tokenizers/') else 'hf:' + path}")
    if not args.dir:
        if not args.real_tokenizers:
            parser.error("give DIR and/or --real-tokenizers DIR")
        return 0
    names = NAMES + FAMILY_NAMES if args.all else NAMES
    for name, path in build_tiny_models(args.dir, force=args.force, names=names).items():
        print(f"{name:11s} {SPECS[name].format(path)}")
    return 0


def _families(parser, args) -> int:
    from .conformance import CHECKS, print_matrix, run_conformance, update_readme
    from .families import load_builders

    known, names = load_builders(), [n for n, _ in CHECKS]
    only = [t.strip() for t in args.only.split(",") if t.strip()] if args.only else None
    checks = [c.strip() for c in args.checks.split(",") if c.strip()] if args.checks else None
    bad = [t for t in only or [] if t not in known] + [c for c in checks or [] if c not in names]
    if bad:
        parser.error(f"unknown model type or check {', '.join(bad)}; model types: {', '.join(sorted(known))}; "
                     f"checks: {', '.join(names)}")
    matrix = run_conformance(args.families, model_types=only, checks=checks, others=not args.no_others,
                             force=args.force, progress=not args.no_progress)
    print_matrix(matrix)
    if args.readme:
        update_readme(args.readme, matrix)
        print(f"support matrix written into {args.readme}")
    print(f"support matrix written to {args.families}/support_matrix.json and support_matrix.md")
    return 0 if all(f["status"] == "pass" for f in matrix["families"]) else 1


if __name__ == "__main__":
    sys.exit(main())
