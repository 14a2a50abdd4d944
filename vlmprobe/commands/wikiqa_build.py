"""``vlmprobe wikiqa build --classes C --articles A.jsonl --lm SPEC --out Q.jsonl``: write
four-option ImageWikiQA questions per class with an LM from the user's article texts and keep
those a text-only judge LM answers right with the class name and not without it (the paper's
filter; ``vlmprobe.wikiqa.build``). Seeded; Q.jsonl loads in ``vlmprobe wikiqa``."""
from __future__ import annotations

from .common import HelpFormatter, add_model_arguments, model_from_args, positive_int

NAME = "wikiqa-build"  # reached as `vlmprobe wikiqa build` (cli.main rewrites the two words)


def register(subparsers) -> None:
    p = subparsers.add_parser(NAME, prog="vlmprobe wikiqa build", description=__doc__, formatter_class=HelpFormatter)
    add_model_arguments(p, required=False, api=True)  # device/dtype/API flags (--model: the same as --lm)
    p.add_argument("--classes", required=True, metavar="FILE|imagenet",
                   help="class names: a JSON list or a text file (one per line), or imagenet")
    p.add_argument("--articles", required=True, metavar="A.jsonl", help="rows {\"classname\": C, \"text\": ARTICLE}")
    p.add_argument("--lm", default=None, metavar="SPEC", help="the LM that writes the questions (a model spec or "
                                                               "openai:MODEL[@URL])")
    p.add_argument("--judge", default=None, metavar="SPEC", help="the text-only LM of the filter (default: --lm)")
    p.add_argument("--per-class", type=positive_int, default=4, help="facts (sentences) used per class")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="a labeled image dataset of the same classes: each question gets a seeded image of its class")
    p.add_argument("--split", default=None, help="with --data: its split")
    p.add_argument("--seed", type=int, default=0, help="fact order, option order and image choice")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--work", default=None, metavar="DIR", help="the build's run directory (default OUT.build)")
    p.add_argument("--out", required=True, metavar="Q.jsonl", help="the kept questions (ImageWikiQA format)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from ..cache import atomic_write_text
    from ..data.classnames import read_classnames
    from ..engine import run_config, run_job
    from ..runs import read_run
    from ..wikiqa.build import BuildMethod, FactInputs, facts, kept_rows, read_articles, summarize_build

    from ..errors import VlmprobeError

    args.lm = args.lm or args.model
    if not args.lm:
        raise VlmprobeError("--lm SPEC is required (the LM that writes the questions)")
    classnames = read_classnames(args.classes)
    articles = read_articles(args.articles, classnames)
    images = None
    if args.data:
        from ..data import load_dataset

        ds = load_dataset(args.data, split=args.split)
        images = {}
        for s in ds.samples:
            if s.label >= 0 and ds.classnames[s.label] in articles:
                images.setdefault(ds.classnames[s.label], []).append(s.image)
    items = facts(articles, args.per_class, args.seed, images)
    lm = model_from_args(args, args.lm)
    judge = model_from_args(args, args.judge) if args.judge and args.judge != args.lm else None
    method = BuildMethod(judge, args.seed)
    work = Path(args.work) if args.work else Path(str(args.out) + ".build")
    data = {"classes": args.classes, "articles": str(args.articles), "per_class": args.per_class,
            "data": args.data, "split": args.split, "num_facts": len(items)}
    config = run_config("wikiqa build", lm, {**method.config(), "judge": (args.judge or args.lm)}, data, args.seed,
                        {"batch_size": args.batch_size})

    def summarize(path):
        return summarize_build(read_run(path)[1])

    res = run_job(lm, method, FactInputs(items), work, config, None, summarize, batch_size=args.batch_size,
                  seed=args.seed, progress=not args.no_progress, unit="fact")
    rows = kept_rows(read_run(work)[1])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    print(f"wikiqa build: {res['kept']} of {res['facts']} questions kept ("
          + ", ".join(f"{v} {k}" for k, v in res["dropped"].items()) + f") -> {args.out} (records: {work})")
    return 0
