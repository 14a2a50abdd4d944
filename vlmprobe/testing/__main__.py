"""``python -m vlmprobe.testing [DIR] [--all] [--real-tokenizers DIR]``: write the tiny offline
test models (``vlmprobe.testing``) and the real-tokenizer ones (``vlmprobe.testing.real``)."""
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
