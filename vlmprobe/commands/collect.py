"""``vlmprobe collect DIR... --out results.csv [--reference CSV]``: one long table (one number per
row) over any number of study and run directories, plus published results
(``vlmprobe/study/longtable.py``)."""
from __future__ import annotations

from .common import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "collect", help="one long CSV over studies and run directories (study, model, group, metadata, method, "
                        "dataset, metric, value, n, interval, run)",
        description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="study directories (study.json) or run directories")
    p.add_argument("--out", required=True, metavar="CSV", help="the table to write")
    p.add_argument("--reference", action="append", default=[], metavar="CSV",
                   help="published results to add (timm's results-*.csv or open_clip's results table); repeatable")
    p.add_argument("--plot", action="append", default=[], metavar="X:Y",
                   help="also draw top-1 on dataset Y vs on dataset X, one point per study model and method, the "
                        "--reference results as 'published' points (not in the fit): CSV_STEM.X-vs-Y.png beside the "
                        "table, with CSV_STEM.X-vs-Y.json listing the plotted points; repeatable")
    p.add_argument("--reference-dataset", action="append", default=[], metavar="STUDY=TABLE",
                   help="--plot: the reference tables' name of a study dataset (e.g. imagenet=imagenet1k); "
                        "default: the same name")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..study.longtable import collect_rows, reference_rows, write_csv

    rows = collect_rows(args.dirs)
    for ref in args.reference:
        rows += reference_rows(ref)
    write_csv(rows, args.out)
    print(f"{len(rows)} rows from {len(args.dirs)} directories"
          + (f" and {len(args.reference)} reference tables" if args.reference else "") + f": {args.out}")
    for spec in args.plot:
        plot(rows, spec, args)
    return 0


def plot(rows: list[dict], spec: str, args) -> None:
    """One ``--plot X:Y`` figure and its JSON sidecar beside ``--out``."""
    import json
    from pathlib import Path

    from ..cache import atomic_write_text
    from ..errors import VlmprobeError
    from ..metrics.model_scatter import model_scatter
    from ..study.longtable import scatter_panel

    x, sep, y = spec.partition(":")
    names = dict(m.split("=", 1) for m in args.reference_dataset if "=" in m)
    bad = [m for m in args.reference_dataset if "=" not in m]
    if not sep or not x or not y or bad:
        raise VlmprobeError(f"--plot {spec!r}: expected X_DATASET:Y_DATASET" if not bad else
                            f"--reference-dataset {bad[0]!r}: expected STUDY_DATASET=TABLE_DATASET")
    panel = scatter_panel(rows, x, y, names)
    if not panel["points"] and not panel["reference"]:
        raise VlmprobeError(f"--plot {spec}: no model has top1 on both {x!r} and {y!r} (datasets in the table: "
                            f"{', '.join(sorted({str(r['dataset']) for r in rows})) or 'none'})")
    out = Path(args.out)
    png, sidecar = (out.with_name(f"{out.stem}.{x}-vs-{y}.{ext}") for ext in ("png", "json"))
    model_scatter([panel], png)
    atomic_write_text(sidecar, json.dumps(panel, indent=1) + "\n")
    print(f"{len(panel['points'])} models + {len(panel['reference'])} published: {png}")
