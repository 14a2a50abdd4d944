"""``vlmprobe browse STUDY_OR_RUN_DIR [--out DIR]``: write the sample browser of a study or run
directory (``DIR/browse/index.html`` by default, linked from the study's report): one row per
sample with its thumbnail, true class and every run's prediction, answer or top-5 scores;
filters by class, by runs that disagree, all runs wrong, a class's confusions, unmatched /
skipped / api_error samples and text in the answers. It opens from the file system (no server,
no network); thumbnails are made once and reused."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("browse", help="write a static sample browser of a study or run directory",
                              description=__doc__)
    p.add_argument("src", metavar="STUDY_OR_RUN_DIR", help="a directory written by `vlmprobe study` or `vlmprobe eval`")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write the browser (default: STUDY_OR_RUN_DIR/browse)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="processes making thumbnails (default: the usable cores when at least 1,000 are "
                        "to be made, else 1 = in this process)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..browse import write_browser

    info = write_browser(args.src, args.out, workers=args.workers)
    t = info["thumbnails"]
    print(f"browser: {info['index']}  ({info['datasets']} datasets, {info['samples']} samples, {info['runs']} runs; "
          f"thumbnails: {t['made']} made, {t['reused']} reused, {t['failed']} without image)")
    return 0
