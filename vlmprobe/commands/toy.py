"""``vlmprobe toy``: build, export and locate the miniature world (digits, toy CLIP, toy VLM)."""
from __future__ import annotations

import json

from .common import HelpFormatter, count, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "toy", help="the embedded miniature world: build it, export its data, show where it is",
        description="A demonstration and test bed built offline from scikit-learn's handwritten digits: a toy "
                    "CLIP and a toy LLaVA-style VLM sharing its vision encoder, where the VLM saw some digit "
                    "names often and others almost never. Not evidence about real models.",
        formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="toy_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build (or reuse) the whole world: data, toy CLIP, toy VLM (about 2 CPU-minutes)",
                       formatter_class=HelpFormatter)
    b.add_argument("--out", default=None, help="world directory (default: $VLMPROBE_HOME/toy/seed<S>)")
    b.add_argument("--seed", type=int, default=0, help="seed of every random choice in the build")
    b.add_argument("--force", action="store_true", help="rebuild even when a valid build exists")
    e = sub.add_parser("export", help="write the data only (images, manifest, toy ImageWikiQA, corpora); no training",
                       formatter_class=HelpFormatter)
    e.add_argument("--out", required=True, help="directory to write (must be new, empty or a previous toy export)")
    e.add_argument("--seed", type=int, default=0, help="seed of the split, augmentation and corpora")
    i = sub.add_parser("info", help="print the world's metadata (building it if needed)",
                       formatter_class=HelpFormatter)
    i.add_argument("--out", default=None, help="world directory (default: $VLMPROBE_HOME/toy/seed<S>)")
    i.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("counteranimal", help="CounterAnimal on the world's spurious-background split: toy CLIPs, "
                       "toy VLM and toy CNN, common vs counter table", formatter_class=HelpFormatter)
    c.add_argument("--out", default="runs/toy-counteranimal", help="directory for the runs")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--limit", type=positive_int, default=None, help="evaluate a seeded subset of N images")
    c.add_argument("--skip", default="", metavar="RUN[,RUN]", help="runs to leave out (e.g. vlm-generate-1vs3)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..toy import build_world, ensure_data

    if args.toy_command == "counteranimal":
        from .counteranimal_demo import run_demo

        run_demo(args.out, args.seed, args.limit, {s.strip() for s in args.skip.split(",") if s.strip()})
        return 0
    if args.toy_command == "export":
        root = ensure_data(args.out, seed=args.seed)
        print(f"toy data written to {root}")
        print(f"  images:   {root / 'images'}/<train|val|test>/<class>/  (ImageFolder per split)")
        print(f"  manifest: {root / 'manifest.jsonl'}   (use --data {root / 'manifest.jsonl'} --split test)")
        print(f"  wikiqa:   {root / 'wikiqa.jsonl'}   (use --data {root / 'wikiqa.jsonl'} --images {root})")
        print(f"  finetune: {root / 'finetune' / 'train.json'};  corpus: {root / 'corpus'}")
        return 0
    meta = build_world(args.out, seed=args.seed, force=getattr(args, "force", False), progress=not args.no_progress)
    root = meta["dir"]
    if args.toy_command == "info":
        print(json.dumps({k: v for k, v in meta.items() if k != "files"}, indent=1))
        return 0
    m = meta["metrics"]
    how = "reused a valid build" if meta["reused"] else "built"
    print(f"toy world ready in {root} ({how}; building took {meta['seconds']['total']} s)")
    print(f"  models:   --model hfclip:{root}/clip  (or toy:clip),  --model hf:{root}/vlm  (or toy:vlm)")
    print(f"  data:     --data {root}/manifest.jsonl --split test  (or toy:digits:test)")
    print(f"  wikiqa:   --data {root}/wikiqa.jsonl --images {root}")
    print(f"  corpus:   {root}/corpus/conversations.json;  naming frequencies: {root}/world.json")
    if m:
        print(f"  test split: CLIP zero-shot {m['clip_zeroshot_accuracy']:.1%}, "
              f"VLM direct generation {m['vlm_generation_accuracy']:.1%}")
    return 0
