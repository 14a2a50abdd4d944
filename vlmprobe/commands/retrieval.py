"""``vlmprobe retrieval``: zero-shot image-text retrieval (Recall@1/5/10 both ways) of a CLIP or a
VLM on a caption file; writes a run directory (config.json, samples.jsonl, scores.npy [images x
captions], results.json) plus images.jsonl / captions.jsonl with every query's rank."""
from __future__ import annotations

from .common import HelpFormatter, add_model_arguments, count, model_from_args, positive_int


def register(subparsers) -> None:
    from ..classify import retrieval

    p = subparsers.add_parser(
        "retrieval", help="zero-shot image<->text retrieval: Recall@K, per-image and per-caption ranks",
        description=__doc__ + " Ties count against the correct answer (see docs/methods.md). Re-running resumes.",
        formatter_class=HelpFormatter)
    add_model_arguments(p)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, metavar="CAPTIONS",
                   help="JSONL {\"image\": path, \"captions\": [...]} | Karpathy-split JSON (COCO/Flickr30k) | "
                        "toy:captions")
    g.add_argument("--split", default=None, help="Karpathy split (default: test)")
    g.add_argument("--image-root", default=None, help="resolve image paths under this directory")
    g.add_argument("--limit", type=positive_int, default=None, help="a seeded random subset of N images (with their captions)")
    g.add_argument("--seed", type=int, default=0, help="seed for --limit and --max-candidates")
    r = p.add_argument_group("run")
    r.add_argument("--out", required=True, metavar="DIR", help="run directory (created; resumed if it exists)")
    r.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    r.add_argument("--workers", type=count, default=0, help="DataLoader worker processes for image decoding")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    retrieval.add_arguments(p.add_argument_group("scoring"))
    p.set_defaults(func=run)


def _write_jsonl(path, rows) -> None:
    import json

    from ..cache import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_ranks(out, captions: list[str]) -> dict:
    """Ranks recomputed from the run directory -> DIR/images.jsonl (image -> text rank per image)
    and DIR/captions.jsonl (caption text, its image, text -> image rank); returns the summary."""
    from pathlib import Path

    from ..metrics.retrieval import retrieval_from_records
    from ..metrics.rundata import load_run

    run = load_run(out)
    summary, i2t, t2i = retrieval_from_records(run.records, run.scores, run.skipped)
    rank = lambda v: None if v != v else int(v)  # noqa: E731  (NaN: not ranked)
    _write_jsonl(Path(out) / "images.jsonl", [{"id": r["id"], "image": r["image"], "captions": r["meta"]["captions"],
                                                "rank_image_to_text": rank(v)} for r, v in zip(run.records, i2t)])
    owner = {j: r["id"] for r in run.records for j in r["meta"]["captions"]}
    _write_jsonl(Path(out) / "captions.jsonl", [{"caption": j, "text": text, "image_id": owner.get(j),
                                                  "rank_text_to_image": rank(v)}
                                                 for j, (text, v) in enumerate(zip(captions, t2i))])
    return summary


def run(args) -> int:
    from ..classify.runner import evaluate
    from ..data.captions import load_captions
    from ..classify.retrieval import from_args

    method = from_args(args)
    dataset = load_captions(args.data, split=args.split, image_root=args.image_root, limit=args.limit, seed=args.seed)
    model = model_from_args(args)
    evaluate(model, dataset, method, args.out, batch_size=args.batch_size, seed=args.seed,
             workers=args.workers, progress=not args.no_progress, command="retrieval")
    from ..distributed import on_main, world

    rec = on_main(world(), lambda: write_ranks(args.out, dataset.captions))  # one writer under a launch
    fmt = lambda d: " ".join(f"R@{k} {v:.3f}" for k, v in d["recall"].items() if v is not None)  # noqa: E731
    print(f"retrieval {model.spec} on {dataset.name}: image->text {fmt(rec['image_to_text'])}; "
          f"text->image {fmt(rec['text_to_image'])}")
    print(f"results: {args.out}/results.json (images.jsonl, captions.jsonl, scores.npy beside it)")
    return 0
