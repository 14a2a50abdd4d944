"""``vlmprobe probe``: linear probes on every layer x pooling of a VLM (or on a CLIP's image
embedding), C chosen on validation, test reported once; features cached on disk."""
from __future__ import annotations

import argparse

from .common import HelpFormatter, add_model_arguments, count, model_from_args, positive_int


def _floats(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return vals


def _layers(text: str):
    if text in ("all", "embed"):
        return text
    items = [x.strip() for x in text.split(",") if x.strip()]
    return [int(x) if x.lstrip("-").isdigit() else x for x in items]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "probe", help="linear probes per layer/pooling; writes layers.json, the best layer's samples/scores, a PNG",
        description="Extract hidden-state features (one forward per batch for all layers, cached under "
                    "$VLMPROBE_HOME/features by a hash of model, prompt, layers, pooling, data and preprocessing), "
                    "fit a multinomial logistic-regression probe per feature with the L2 strength chosen on "
                    "validation, and report test accuracy once per feature.",
        formatter_class=HelpFormatter)
    add_model_arguments(p)
    g = p.add_argument_group("data (specs as in `vlmprobe eval --data`; SPEC@SPLIT selects a split)")
    g.add_argument("--train", required=True, metavar="DATA", help="training images")
    g.add_argument("--val", default=None, metavar="DATA",
                   help="validation images (default: a seeded stratified --val-fraction of --train)")
    g.add_argument("--test", required=True, metavar="DATA", help="test images (scored once per feature)")
    g.add_argument("--limit", type=positive_int, default=None, help="seeded random subset of N images per split")
    g.add_argument("--seed", type=int, default=0, help="seed for --limit and the carved validation split")
    g.add_argument("--classes", default=None, metavar="FILE|imagenet", help="class names (as in eval)")
    g.add_argument("--image-root", default=None, help="resolve manifest image paths under this directory")
    for role in ROLES:  # one split's own value (a study's dataset entries each carry theirs)
        g.add_argument(f"--{role}-limit", type=int, default=None, help=f"--limit for --{role} only")
        g.add_argument(f"--{role}-image-root", default=None, help=f"--image-root for --{role} only")
    g = p.add_argument_group("features")
    g.add_argument("--layers", type=_layers, default="all",
                   help="all | comma list of LM hidden-state indices (negative from the end: write --layers=-1,...), "
                        "lm.I, vision, projector")
    g.add_argument("--pool", default="last,image-mean,mean",
                   help="VLM poolings: last (last prompt token), image-mean, mean (all attended tokens)")
    g.add_argument("--prompt", default=None, help="question rendered with the chat template "
                   "(default: 'What type of object is in this photo?')")
    g.add_argument("--batch-size", type=positive_int, default=16)
    g.add_argument("--workers", type=count, default=0, help="DataLoader worker processes for image decoding")
    g.add_argument("--storage", default="float16", choices=["float16", "float32"], help="cached feature dtype")
    g = p.add_argument_group("probe")
    g.add_argument("--Cs", type=_floats, default=None, metavar="C[,C...]",
                   help="inverse L2 strengths to try (scikit-learn's C; default 1e-4..1e2, 7 values)")
    g.add_argument("--backend", default="torch", choices=["torch", "sklearn"],
                   help="torch (L-BFGS, CPU or GPU) or sklearn (LogisticRegression, cross-check)")
    g.add_argument("--probe-device", default=None, help="device for probe fitting (default: --device)")
    g.add_argument("--probe-precision", default="auto", choices=["auto", "fp32", "fp16"],
                   help="torch probe matrix products: fp32, or fp16 operands with fp32 accumulation "
                        "(auto: fp16 on CUDA, fp32 on CPU)")
    g.add_argument("--val-fraction", type=float, default=0.2, help="share of train carved out when no --val")
    g.add_argument("--no-refit", action="store_true", help="keep the train-only probe (default: refit on train+val)")
    g.add_argument("--reference", default=None, metavar="CLIP_SPEC",
                   help="CLIP model whose probe and zero-shot accuracy are drawn as reference lines")
    g.add_argument("--out", required=True, metavar="DIR", help="output directory")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


ROLES = ("train", "val", "test")


def _dataset(args, role: str):
    """--ROLE's dataset, with --ROLE-limit / --ROLE-image-root over --limit / --image-root."""
    from ..data import load_dataset
    from ..probe import parse_data_spec

    spec, split = parse_data_spec(getattr(args, role))
    limit, root = getattr(args, f"{role}_limit"), getattr(args, f"{role}_image_root")
    return load_dataset(spec, split=split, limit=args.limit if limit is None else limit, seed=args.seed,
                        classes=args.classes, image_root=args.image_root if root is None else root)


def run(args) -> int:
    from ..errors import VlmprobeError
    from ..probe import DEFAULT_CS, run_probe

    if not 0 < args.val_fraction < 1:
        raise VlmprobeError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    train, test = _dataset(args, "train"), _dataset(args, "test")
    val = _dataset(args, "val") if args.val else None
    model = model_from_args(args)
    reference = model_from_args(args, spec=args.reference) if args.reference else None
    summary = run_probe(model, train, test, args.out, val=val, layers=args.layers, pooling=args.pool.split(","),
                        prompt=args.prompt, reference=reference, Cs=args.Cs or DEFAULT_CS, backend=args.backend,
                        probe_device=args.probe_device or args.device, precision=args.probe_precision,
                        seed=args.seed,
                        val_fraction=args.val_fraction, refit=not args.no_refit, batch_size=args.batch_size,
                        workers=args.workers, storage=args.storage, progress=not args.no_progress)
    print(f"probe {model.spec}: best {summary['best']} (val {summary['best_val_accuracy']:.4f}, "
          f"test {summary['best_test_accuracy']:.4f})")
    print(f"results: {args.out}/layers.json, results.json, samples.jsonl, scores.npy, accuracy_vs_layer.png")
    return 0
