"""``vlmprobe cpe``: build a CPE prompt ensemble (arXiv 2310.03324) for a CLIP on a dataset."""
from __future__ import annotations

from .common import (HelpFormatter, add_data_arguments, add_model_arguments, count, dataset_from_args,
                     model_from_args, positive_int)


def register(subparsers) -> None:
    from ..classify.cpe import DESCRIPTION_FORMAT, CpeOptions
    from ..classify.describe import DEFAULT_DESCRIBER_PROMPT

    d = CpeOptions()
    p = subparsers.add_parser(
        "cpe", help="weighted, description-enriched prompt ensemble for CLIP's worst classes (no labels used)",
        description="Rank a template pool by worst-k class-wise matching margin on pseudo-labelled images, weight "
                    "the top m by a softmax, enrich the k worst classes with descriptions, and write "
                    "DIR/ensemble.json, DIR/classifier.pt [K x D], DIR/report.json and DIR/ablation.md. "
                    "Labels, when the data has them, are read only for the report. Evaluate the result with "
                    "`vlmprobe eval --method zeroshot --ensemble DIR`.",
        formatter_class=HelpFormatter)
    add_model_arguments(p)
    add_data_arguments(p)
    g = p.add_argument_group("cpe")
    g.add_argument("--templates", default=d.templates,
                   help="template pool: imagenet (open_clip's 80 OpenAI templates), single, a text file (one '{}' "
                        "per line), a JSON list with '{}' or '{c}' (CLIP_benchmark), a per-class JSON "
                        "{class: [prompts]} (CuPL; one pool member), or toy:cpe-pool")
    g.add_argument("--k", type=positive_int, default=d.k, help="worst-k: classes scoring a template and classes enriched")
    g.add_argument("--top-m", type=positive_int, default=d.top_m, help="templates kept (highest worst-k CMM)")
    g.add_argument("--temperature", type=float, default=d.temperature,
                   help="softmax temperature over the kept templates' worst-k CMM (logit units)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--describer", default=None, metavar="hf:PATH|vlm:SPEC",
                     help="language model writing descriptions of the worst classes: hf:PATH_OR_ID (any "
                          "AutoModelForCausalLM) or vlm:SPEC (a VLM's language model, text-only, e.g. vlm:toy:vlm)")
    src.add_argument("--descriptions", default=None, metavar="FILE",
                     help="JSON {class: [description, ...]} (CuPL/DCLIP format) or toy:digit-facts")
    g.add_argument("--describer-prompt", action="append", default=None, metavar="TEXT",
                   help=f"prompt per class ('{{}}' = class name; repeat for several descriptions); default: "
                        f"{DEFAULT_DESCRIBER_PROMPT!r}")
    g.add_argument("--description-format", default=DESCRIPTION_FORMAT,
                   help="enriched prompt built from class {c} and description {d}")
    g.add_argument("--out", required=True, metavar="DIR", help="output directory")
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="images per forward pass")
    g.add_argument("--workers", type=count, default=d.workers, help="DataLoader worker processes")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..classify.cpe import CpeOptions, build
    from ..classify.describe import DEFAULT_DESCRIBER_PROMPT

    opts = CpeOptions(templates=args.templates, k=args.k, top_m=args.top_m, temperature=args.temperature,
                      describer=args.describer, descriptions=args.descriptions,
                      describer_prompts=args.describer_prompt or [DEFAULT_DESCRIBER_PROMPT],
                      description_format=args.description_format, batch_size=args.batch_size,
                      workers=args.workers, progress=not args.no_progress)
    dataset = dataset_from_args(args)
    opts.check(dataset.classnames)  # bad options fail before the model loads
    model = model_from_args(args)
    report = build(model, dataset, args.out, opts)
    from pathlib import Path

    print((Path(args.out) / "ablation.md").read_text(), end="")
    for name, r in report.get("worst_classes_before_after", {}).items():
        print(f"worst class {name!r} (base CMM {r['base_cmm']:.3f}): accuracy {100 * r['accuracy_uniform']:.1f}% "
              f"(uniform) -> {100 * r['accuracy_cpe']:.1f}% (CPE)")
    print(f"ensemble: {args.out}/ensemble.json, {args.out}/classifier.pt (report.json, ablation.md beside them)")
    print(f"evaluate: vlmprobe eval --method zeroshot --ensemble {args.out} --model {args.model} "
          "(same data options) --out RUN_DIR")
    return 0 if report else 1
