"""``vlmprobe wikiqa``: score a VLM on ImageWikiQA (four-option knowledge questions about
ImageNet images) and write a run directory."""
from __future__ import annotations


from .common import HelpFormatter, add_model_arguments, model_from_args, positive_int, report_api, finish_api


def register(subparsers) -> None:
    from ..options import add_option_groups
    from ..wikiqa import GenerateScorer, LikelihoodScorer

    p = subparsers.add_parser(
        "wikiqa", help="ImageWikiQA: knowledge questions that need the image's class; writes a run directory",
        description="Answer ImageWikiQA questions with a VLM (generate: greedy answer + deterministic parser, "
                    "unparseable = wrong; likelihood: log p(option | prompt, 'The answer is')). Writes "
                    "DIR/config.json, samples.jsonl, scores.npy (likelihood), results.json, timing.json. "
                    "Re-running the same command resumes. To write questions from your own articles with an LM "
                    "(the paper's filter): vlmprobe wikiqa build --help.",
        formatter_class=HelpFormatter)
    add_model_arguments(p, api=True)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, metavar="FILE.jsonl",
                   help="ImageWikiQA JSONL (fields image, text, label, classname[, wiki])")
    g.add_argument("--images", default=None, metavar="ROOT",
                   help="image root: ROOT/<image>, or any folder holding the images by file name "
                        "(e.g. an ImageNet val folder); not needed with --no-image")
    g.add_argument("--limit", type=positive_int, default=None, help="score a seeded random subset of N questions")
    g.add_argument("--seed", type=int, default=0, help="seed for --limit (scoring itself is deterministic)")
    g = p.add_argument_group("method")
    g.add_argument("--method", required=True, choices=["generate", "likelihood"],
                   help="generate: greedy answer, parsed; likelihood: option log-probabilities")
    add_option_groups(p, {"--method generate": GenerateScorer.Options, "--method likelihood": LikelihoodScorer.Options})
    g = p.add_argument_group("baselines")
    g.add_argument("--oracle-class", action="store_true",
                   help="state the true class name in the prompt (image kept; add --no-image to withhold it)")
    g.add_argument("--no-image", action="store_true", help="withhold the image (language prior only)")
    g = p.add_argument_group("run")
    g.add_argument("--classification-run", default=None, metavar="DIR",
                   help="an eval run of the same model on the same images: report QA accuracy split by "
                        "whether each image was classified correctly")
    g.add_argument("--out", required=True, metavar="DIR", help="run directory (created; resumed if it exists)")
    g.add_argument("--batch-size", type=positive_int, default=8, help="questions per forward pass")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def scorer_from_args(args):
    from .. import options
    from ..wikiqa import Condition, GenerateScorer, LikelihoodScorer

    condition = Condition(image=not args.no_image, oracle_class=args.oracle_class, cot=args.cot)
    if args.method == "generate":
        return GenerateScorer(condition, max_new_tokens=options.from_args(GenerateScorer.Options, args).max_new_tokens)
    return LikelihoodScorer(condition, **options.from_args(LikelihoodScorer.Options, args).as_dict())


def run(args) -> int:
    from ..errors import VlmprobeError
    from ..wikiqa import load_questions, run_wikiqa

    if not args.no_image and not args.images:
        raise VlmprobeError("--images ROOT is required (or pass --no-image to withhold the images)")
    scorer = scorer_from_args(args)
    qset = load_questions(args.data, None if args.no_image else args.images, limit=args.limit, seed=args.seed)
    if qset.missing:
        shown = ", ".join(q.image for q in qset.missing[:5])
        print(f"warning: {len(qset.missing)} of {len(qset)} images not found under {args.images} "
              f"(e.g. {shown}); they are skipped and counted (see results.json 'skipped')")
    model = model_from_args(args)
    results = run_wikiqa(model, qset, scorer, args.out, batch_size=args.batch_size, seed=args.seed,
                         progress=not args.no_progress, classification_run=args.classification_run)
    if "dry_run" in results:
        report_api(model, results)
        return 0
    head = f"wikiqa {args.method} [{results['condition']}] {model.spec}"
    if results["accuracy"] is None:
        print(f"{head}: no question scored ({results['num_skipped']} skipped)")
    else:
        print(f"{head}: accuracy {results['accuracy']:.4f} (chance {results['chance']:.2f}), unparseable "
              f"{results['unparseable_rate']:.4f}; {results['num_scored']} scored, {results['num_skipped']} skipped")
    split = results.get("split")
    if split:
        a, b = split["classified_correct"], split["classified_wrong"]
        fmt = lambda x: "n/a" if x["accuracy"] is None else f"{x['accuracy']:.4f}"  # noqa: E731
        other = split["classification_run"]["model"]
        print(f"split: classified correctly {fmt(a)} (n={a['n']}), wrongly {fmt(b)} (n={b['n']})"
              + ("" if split["same_model"] else f"; note: the classification run is of {other}"))
    print(f"results: {args.out}/results.json (samples.jsonl, config.json beside it)")
    finish_api(model, results)  # non-zero exit while samples are unanswered
    return 0
