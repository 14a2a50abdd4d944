"""``vlmprobe compare RUN_DIR...``: several runs side by side, from their files (no model).

``--shape-bias [PNG]``: cue-conflict runs (``--data cue-conflict:ROOT``, any method) -> one line
per run (overall shape bias, shape / texture / other decision counts) and the standard
per-category dot plot (default shape_bias.png). ``--out FILE.json`` also writes the rows.
"""
from __future__ import annotations

from .common import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="compare runs side by side (shape bias dot plot)",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `vlmprobe eval`")
    p.add_argument("--shape-bias", nargs="?", const="shape_bias.png", default=None, metavar="PNG",
                   help="shape bias of cue-conflict runs: table + per-category dot plot (default shape_bias.png)")
    p.add_argument("--labels", default=None, metavar="A,B,...", help="one label per run (default: model (method))")
    p.add_argument("--out", default=None, metavar="FILE.json", help="also write the table rows as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import VlmprobeError

    if not args.shape_bias:
        raise VlmprobeError("nothing to compare: give --shape-bias [PNG]")
    out = {}
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
