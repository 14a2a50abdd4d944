"""A study of ``--runs`` (default 200) runs of tiny models: what the study machinery costs per run
and how long the report takes.

The study is a ``zoo: dir`` over ``--models`` tiny random-weight CLIPs (``vlmprobe.testing``,
each with its own weights) x zero-shot with ``runs / models`` template sets (an axis) on
``--limit`` digits, run with ``--executor local --jobs N``. Printed:
- per-run scheduling overhead = (study wall time x jobs - sum of the runs' own seconds, from their
  stamps) / runs: planning, keys, stamps, dispatch and the report, per run;
- the report build time (``write_report`` over the finished study; target < 30 s for 200 runs);
- a second study command over the finished study (every run reused: planning + reuse checks).

    python benchmarks/study_scale.py                 # 200 runs, 2 jobs (minutes on 2 cores)
    python benchmarks/study_scale.py --runs 40 --jobs 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def make_zoo(root: Path, n: int) -> Path:
    from vlmprobe.testing import build_tiny_model, tiny_model_zoo

    return tiny_model_zoo(build_tiny_model(root / "tiny", "hfclip"), root / "zoo", n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--limit", type=int, default=4, help="images per run")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None,
                    help="work in this directory and keep it (the study is under KEEP/out) instead of a temporary one")
    args = ap.parse_args(argv)
    from vlmprobe.cli import main as cli
    from vlmprobe.study.report import write_report

    sets = max(1, args.runs // args.models)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("VLMPROBE_HOME", str(tmp / "home"))
        zoo = make_zoo(tmp, args.models)
        digits = Path(__file__).resolve().parent / "embeddings.py"
        sys.path.insert(0, str(digits.parent))
        from embeddings import digits_folder

        data = digits_folder(tmp / "digits", 40)
        files = []
        for i in range(sets):
            files.append(tmp / f"t{i}.json")
            files[-1].write_text(json.dumps([f"a photo of a {{}} ({i})."]))
        study = tmp / "study.yaml"
        study.write_text(f"""\
models:
  tiny: {{zoo: dir, path: "{zoo}", group: tiny}}
datasets:
  digits: {{data: "{data}", limit: {args.limit}}}
measurements:
  - {{measure: zeroshot, templates: {json.dumps([str(f) for f in files])}}}
""")
        out = tmp / "out"
        t0 = time.perf_counter()
        code = cli(["study", str(study), "--out", str(out), "--executor", "local", "--jobs", str(args.jobs),
                    "--no-report"])
        wall = time.perf_counter() - t0
        if code:
            sys.exit("the study failed")
        plan = json.loads((out / "study.json").read_text())
        runs = len(plan["runs"])
        run_s = sum(json.loads((out / r["id"] / "study_run.json").read_text())["seconds"] for r in plan["runs"])
        t0 = time.perf_counter()
        write_report(out)
        report = time.perf_counter() - t0
        t0 = time.perf_counter()
        cli(["study", str(study), "--out", str(out), "--executor", "local", "--jobs", str(args.jobs), "--no-report"])
        again = time.perf_counter() - t0
    print(f"{runs} runs ({args.models} tiny CLIPs x {sets} template sets, {args.limit} images each), "
          f"--executor local --jobs {args.jobs}")
    print(f"study wall time            {wall:8.1f} s   (runs' own time: {run_s:.1f} s)")
    print(f"scheduling overhead / run  {(wall * args.jobs - run_s) / runs:8.3f} s")
    print(f"report build               {report:8.1f} s   (target < 30 s for 200 runs)")
    print(f"re-run, everything reused  {again:8.1f} s   ({again / runs * 1000:.1f} ms per run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
