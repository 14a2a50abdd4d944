"""``vlmprobe report DIR``: (re)write DIR/report.html (self-contained) and DIR/report.md from a
study directory's run directories; no model is loaded."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write report.html + report.md of a study directory (no model needed)",
                              description=__doc__)
    p.add_argument("study_dir", metavar="DIR", help="a directory written by `vlmprobe study`")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..study.report import write_report

    paths = write_report(args.study_dir)
    print(f"report: {paths['html']}  (markdown: {paths['md']}; samples: {paths.get('browser', 'not written')})")
    return 0
