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
    p.set_defaults(func=run)


def run(args) -> int:
    from ..study.longtable import collect_rows, reference_rows, write_csv

    rows = collect_rows(args.dirs)
    for ref in args.reference:
        rows += reference_rows(ref)
    write_csv(rows, args.out)
    print(f"{len(rows)} rows from {len(args.dirs)} directories"
          + (f" and {len(args.reference)} reference tables" if args.reference else "") + f": {args.out}")
    return 0
