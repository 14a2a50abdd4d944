"""``vlmprobe eval``: classify a dataset with one method and write a run directory."""
from __future__ import annotations

from .common import (HelpFormatter, add_data_arguments, add_model_arguments, count, dataset_from_args,
                     group_pair, model_from_args, positive_int, report_api, finish_api)

METHOD_HELP = ("classifier (timm/torchvision: the network's logits) | zeroshot (CLIP: cosine to class-name text "
               "embeddings) | generate (VLM: ask, then match the answer to class names) | likelihood (VLM: log p(class name | image, prompt) for every class) | "
               "imagenet16 (any model: the 16 cue-conflict categories through ImageNet class probabilities)")


def register(subparsers) -> None:
    from ..classify.runner import METHODS
    from ..options import add_option_groups

    p = subparsers.add_parser(
        "eval", help="classify images with one method; writes config.json, samples.jsonl, scores.npy, results.json",
        description="Classify a dataset with a CLIP or VLM and write a run directory (DIR/config.json, "
                    "samples.jsonl, scores.npy [N x K], results.json). Re-running the same command resumes; "
                    "a different config into an existing DIR is refused.",
        formatter_class=HelpFormatter)
    add_model_arguments(p, api=True)
    add_data_arguments(p)
    g = p.add_argument_group("run")
    g.add_argument("--method", required=True, choices=sorted(METHODS), help=METHOD_HELP)
    g.add_argument("--out", required=True, metavar="DIR", help="run directory (created; resumed if it exists)")
    g.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    g.add_argument("--workers", type=count, default=2, help="DataLoader worker processes for image decoding")
    g.add_argument("--groups", default=None, metavar="FIELD",
                   help="manifest field whose values define groups for group-shift accuracy")
    g.add_argument("--group-drop", default=None, metavar="A,B",
                   help="with --groups: also report the drop 100*(acc_A - acc_B) between two of its values")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_option_groups(p, method_options())
    p.set_defaults(func=run)


def method_options() -> dict[str, type]:
    """``{"--method NAME": its Options class}`` for every method."""
    from ..classify.runner import METHODS, method_module

    return {f"--method {name}": method_module(name).Method.Options for name in sorted(METHODS)}


def run(args) -> int:
    from ..classify.runner import evaluate, method_module
    from ..errors import VlmprobeError
    from ..options import reject_foreign_options

    drop = None if args.group_drop is None else group_pair(args.group_drop)
    if drop and not args.groups:
        raise VlmprobeError(f"--group-drop {args.group_drop!r}: expected two group values A,B of --groups FIELD")
    reject_foreign_options(args, method_options(), f"--method {args.method}")
    method = method_module(args.method).from_args(args)
    dataset = dataset_from_args(args)
    model = model_from_args(args)
    results = evaluate(model, dataset, method, args.out, batch_size=args.batch_size, seed=args.seed,
                       workers=args.workers, progress=not args.no_progress, groups=args.groups,
                       group_drop=drop)
    if "dry_run" in results:
        report_api(model, results)
        return 0
    print(f"{args.method} {model.spec} on {dataset.name}: {top1_line(results)}")
    others = ["samples.jsonl", "config.json"] + (["scores.npy"] if method.num_scores(dataset) else [])
    print(f"results: {args.out}/results.json ({', '.join(others)} beside it)")
    finish_api(model, results)  # non-zero exit while samples are unanswered
    return 0


def top1_line(results: dict) -> str:
    """``top-1 A`` with the counts beside it: images scored, skipped (unreadable) and non-finite
    (no prediction, counted wrong); when some were skipped, also top-1 over all images
    (= correct / (scored + skipped)), the figure a reader comparing models needs."""
    top1, c = results.get("top1"), results.get("counts") or {}
    if not isinstance(top1, float):
        return "done"
    n, skipped, nonfinite = c.get("n", 0), c.get("skipped", 0), c.get("nonfinite_scores", 0)
    line = f"top-1 {top1:.4f} ({n} images scored, {skipped} skipped, {nonfinite} non-finite"
    if skipped:
        line += f"; top-1 over all {n + skipped} images {top1 * n / (n + skipped):.4f}"
    return line + ")"
