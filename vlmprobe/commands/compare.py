"""``vlmprobe compare RUN_DIR...``: several runs side by side, from their files (no model).

``--groups group`` prints model / method / common / counter / drop (CounterAnimal's table, any
field and pair of values with ``--group-drop A,B``); ``--factors imagenet-x|FILE`` prints
per-factor accuracy (ImageNet-X) and with ``--plot`` draws Tu et al.'s probit figure.
``--shape-bias [PNG]``: cue-conflict runs (``--data cue-conflict:ROOT``, any method) -> one line
per run (overall shape bias, shape / texture / other decision counts) and the standard
per-category dot plot (default shape_bias.png).
``--out FILE.json`` also writes the rows.
"""
from __future__ import annotations


from .common import HelpFormatter, group_pair


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="compare runs side by side (group drop table, ImageNet-X factors, shape bias)",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `vlmprobe eval`")
    p.add_argument("--groups", default=None, metavar="FIELD", help="sample field defining groups, e.g. group")
    p.add_argument("--group-drop", default="common,counter", metavar="A,B",
                   help="the two group values compared: drop = 100 * (acc_A - acc_B)")
    p.add_argument("--factors", default=None, metavar="imagenet-x|FILE.jsonl",
                   help="ImageNet-X factor accuracies of runs on ImageNet val")
    p.add_argument("--factor-variant", default=None, choices=["top", "multi", "file"],
                   help="which ImageNet-X annotation (default: top for imagenet-x)")
    p.add_argument("--plot", nargs="?", const="factors.png", default=None, metavar="PNG",
                   help="with --factors: draw factor vs overall accuracy on probit axes (default factors.png)")
    p.add_argument("--shape-bias", nargs="?", const="shape_bias.png", default=None, metavar="PNG",
                   help="shape bias of cue-conflict runs: table + per-category dot plot (default shape_bias.png)")
    p.add_argument("--labels", default=None, metavar="A,B,...",
                   help="with --shape-bias: one label per run (default: model (method))")
    p.add_argument("--out", default=None, metavar="FILE.json", help="also write the table rows as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import VlmprobeError
    from ..metrics.compare import factor_plot, factor_table, format_table, group_table
    from ..metrics.rundata import load_run

    if args.plot and not args.factors:
        raise VlmprobeError("--plot draws the ImageNet-X factor figure; it needs --factors")
    if not args.groups and not args.factors and not args.shape_bias:
        raise VlmprobeError("nothing to compare: give --groups FIELD, --factors imagenet-x|FILE and/or --shape-bias")
    runs = [load_run(d) for d in args.run_dirs]
    out = {}
    if args.groups:
        a, b = group_pair(args.group_drop)
        rows = group_table(runs, args.groups, a, b)
        print(format_table(["model", "method", f"{a} %", f"{b} %", "drop (points)", "n"],
                           [[r["model"], r["method"], 100 * r[a], 100 * r[b], r["drop"], r[f"n_{a}"] + r[f"n_{b}"]]
                            for r in rows]))
        out["groups"] = rows
    if args.factors:
        rows, variant = factor_table(runs, args.factors, args.factor_variant)
        factors = list(rows[0]["factors"])
        print(f"\nImageNet-X ({variant}-factor) error ratio = (1 - factor acc) / (1 - overall acc):")
        print(format_table(["model", "method", "acc %"] + factors,
                           [[r["model"], r["method"], 100 * r["accuracy"]] +
                            [r["factors"][f]["error_ratio"] for f in factors] for r in rows], digits=2))
        out["factors"] = {"variant": variant, "rows": rows}
        if args.plot:
            print(f"figure: {factor_plot(rows, args.plot, f'ImageNet-X {variant}-factor accuracy vs overall')}")
    if args.shape_bias:
        from ..metrics.shape_bias_plot import compare_shape_bias

        labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
        table = compare_shape_bias(args.run_dirs, args.shape_bias, labels)
        for label, res in table.items():
            o = res["overall"]
            sb = "-" if o["shape_bias"] is None else f"{o['shape_bias']:.3f}"
            print(f"{label}: shape bias {sb} (shape {o['shape']}, texture {o['texture']}, other {o['other']})")
        print(f"figure: {args.shape_bias}")
        out["shape_bias"] = table
    if args.out:
        from ..cache import atomic_write_json
        from ..metrics.report import jsonable

        atomic_write_json(args.out, jsonable(out))
        print(f"rows: {args.out}")
    return 0
