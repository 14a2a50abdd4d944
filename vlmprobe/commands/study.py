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
    p.add_argument("--out", metavar="DIR", help="study directory (one run directory per run)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the zoo expansion, the runs, their commands and which exist, and the number of runs; "
                        "run nothing")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--partial", action="store_true",
                   help="write the report from what is done even when some runs did not finish")
    p.add_argument("--executor", default="serial", choices=("serial", "local", "slurm"),
                   help="serial: one run after another in this process; local: --jobs worker processes on this "
                        "machine (GPUs round-robin); slurm: one submitit job per run with the study file's "
                        "executor.slurm resources")
    p.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="worker processes of --executor local (default: the study file's executor.local.jobs, else 1)")
    p.add_argument("--status", metavar="DIR", help="print each run's state (and job id) in the study directory DIR; "
                                                   "run nothing")
    p.add_argument("--reference", action="append", default=[], metavar="CSV",
                   help="published results (timm's results-*.csv, open_clip's results table) drawn as extra points "
                        "in the report's one-point-per-model figures (with the study file's reference: ...); "
                        "repeatable")
    p.add_argument("--progress", action="store_true", help="show the world build's progress bars")
    p.add_argument("--cancel-stale", action="store_true",
                   help="a run whose study_run.json says running while its SLURM job or process (an earlier "
                        "study command's) is alive is refused by default (never two writers); with this flag that "
                        "job is cancelled (scancel; a local process: SIGTERM) and the run started afresh")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import VlmprobeError
    from ..study import load_study, run_study

    if args.status:
        from ..study.executors import print_status

        return print_status(args.status)
    if not args.out:
        raise VlmprobeError("--out DIR is required (or --status DIR)")
    if args.jobs < 0 or (args.jobs and args.executor != "local"):
        raise VlmprobeError("--jobs N (N >= 1) goes with --executor local")
    study = load_study(args.study_file)
    if args.reference:
        from ..study.reference import merge

        study.reference = merge(study.reference, args.reference)
    return run_study(study, args.out, dry_run=args.dry_run, report=not args.no_report, progress=args.progress,
                     executor=args.executor, jobs=args.jobs, partial=args.partial,
                     cancel_stale=args.cancel_stale)
