"""``vlmprobe compare RUN_DIR... --out DIR``: put several runs side by side.

``--shape-bias``: cue-conflict runs (``--data cue-conflict:ROOT``, any method) -> the standard
per-category shape-bias dot plot (DIR/shape_bias.png) and DIR/shape_bias.json, plus one line per
run: overall shape bias and the shape / texture / other decision counts.
"""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="compare runs side by side (--shape-bias: per-category dot plot)",
                              description=__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by vlmprobe eval")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the comparison files")
    p.add_argument("--labels", default=None, metavar="A,B,...", help="one label per run (default: model (method))")
    p.add_argument("--shape-bias", action="store_true", help="shape bias of cue-conflict runs (plot + table)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import VlmprobeError

    if not args.shape_bias:
        raise VlmprobeError("choose what to compare: --shape-bias")
    from ..metrics.shape_bias_plot import compare_shape_bias

    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    table = compare_shape_bias(args.runs, args.out, labels)
    for label, res in table.items():
        o = res["overall"]
        sb = "-" if o["shape_bias"] is None else f"{o['shape_bias']:.3f}"
        print(f"{label}: shape bias {sb} (shape {o['shape']}, texture {o['texture']}, other {o['other']})")
    print(f"plot: {args.out}/shape_bias.png (shape_bias.json beside it)")
    return 0
