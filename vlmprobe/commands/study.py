"""``vlmprobe study [STUDY.yaml] --out DIR``: run a declarative study (models x datasets x
measurements), reusing finished runs and resuming partial ones, then write the report."""
from __future__ import annotations

from .common import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "study", help="run a whole study from a YAML file (default: the miniature world) and write its report",
        description="Expand the study file's models x datasets x measurements into runs, skip combinations that "
                    "do not apply (with a line saying so), reuse every finished run whose config matches, resume "
                    "partial ones, continue past failures (non-zero exit at the end), then write DIR/report.html "
                    "and DIR/report.md. Without STUDY.yaml the built-in default study (vlmprobe/study/default.yaml) "
                    "runs on the embedded miniature world.",
        formatter_class=HelpFormatter)
    p.add_argument("study_file", nargs="?", default=None, metavar="STUDY.yaml",
                   help="the study file (default: the built-in miniature-world study)")
    p.add_argument("--out", required=True, metavar="DIR", help="study directory (one run directory per run)")
    p.add_argument("--dry-run", action="store_true", help="list the runs, their commands and which exist; run nothing")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--progress", action="store_true", help="show the world build's progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..study import load_study, run_study

    study = load_study(args.study_file)
    return run_study(study, args.out, dry_run=args.dry_run, report=not args.no_report, progress=args.progress)
