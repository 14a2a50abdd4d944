"""Zoo-scale studies: the report's per-run figures drawn fast (blitted reliability diagrams equal
a full draw), published reference points in the one-point-per-model figures, GPU assignment of
the local executor's workers."""
from __future__ import annotations

import io

import numpy as np
import pytest


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.int16)


def test_blitted_reliability_diagrams_equal_a_full_draw():
    """The report's reused, blitted reliability figure gives the pixels of a full draw of the same
    diagram (bars up to 1.0 touching the spines, an empty bin, a new title each time), and a
    fresh figure the same bytes as a reused one."""
    from vlmprobe.metrics.plots import ReliabilityFigure

    rng = np.random.default_rng(0)
    fig, fresh = ReliabilityFigure(compress_level=1), None
    try:
        for i in range(3):
            acc, conf = rng.random(15), rng.random(15)
            acc[[0, -1]], conf[4] = 1.0, np.nan
            bins = {"edges": np.linspace(0, 1, 16).tolist(), "accuracy": acc.tolist(), "confidence": conf.tolist()}
            blit = fig.png(bins, f"model {i}: zero-shot", 0.1 * i)
            assert np.array_equal(_pixels(blit), _pixels(fig.png(bins, f"model {i}: zero-shot", 0.1 * i, blit=False)))
            if i == 2:
                fresh = ReliabilityFigure(compress_level=1)
                assert fresh.png(bins, f"model {i}: zero-shot", 0.2) == blit
        other = {"edges": np.linspace(0, 1, 11).tolist(), "accuracy": [0.5] * 10, "confidence": [0.4] * 10}
        assert np.array_equal(_pixels(fig.png(other, "ten bins")), _pixels(fig.png(other, "ten bins", blit=False)))
    finally:
        fig.close()
        if fresh:
            fresh.close()


def _timm_csv(path, rows):
    path.write_text("model,top1,top5,param_count,img_size\n" + "".join(f"{m},{t},99.0,1.0,224\n" for m, t in rows))
    return path


def test_published_reference_points_in_the_report_and_in_collect_plots(tiny_models, digits_folder, tmp_path, capsys):
    """A study naming reference tables (study-file key, dataset name mapping, fit: true) draws the
    published models with both accuracies as reference points of the effective-robustness figure
    (report_files/effective_robustness.json), fits the baseline on them; `collect --plot X:Y`
    draws the study's models and the --reference rows the same way."""
    import csv
    import json

    from vlmprobe.cli import main
    from vlmprobe.metrics.robustness import baseline_fit

    shifted = tmp_path / "shifted"
    shifted.symlink_to(digits_folder, target_is_directory=True)
    ref_id = _timm_csv(tmp_path / "results-digits.csv", [("net_a.in1k", 80.0), ("net_b.in1k", 60.0),
                                                         ("net_c.in1k", 40.0), ("only_id.in1k", 50.0)])
    ref_shift = _timm_csv(tmp_path / "results-sketchy.csv", [("net_a.in1k", 50.0), ("net_b.in1k", 30.0),
                                                             ("net_c.in1k", 20.0)])
    study = tmp_path / "s.yaml"
    study.write_text(f"""\
reference: {{files: [results-digits.csv, results-sketchy.csv], datasets: {{shifted: sketchy}}, fit: true}}
models:
  clip: {{spec: "hfclip:{tiny_models['hfclip']}"}}
datasets:
  digits: {{data: "{digits_folder}", limit: 8}}
  shifted: {{data: "{shifted}", limit: 8}}
measurements:
  - {{measure: shift, shift: shifted, datasets: [digits]}}
""")
    out = tmp_path / "out"
    assert main(["study", str(study), "--out", str(out)]) == 0
    published = {"timm:net_a.in1k x": 0.8, "timm:net_a.in1k y": 0.5, "timm:net_b.in1k x": 0.6,
                 "timm:net_b.in1k y": 0.3, "timm:net_c.in1k x": 0.4, "timm:net_c.in1k y": 0.2}

    def plotted(points):
        return {f"{p['label']} {a}": p[a] for p in points for a in "xy"}

    [panel] = json.loads((out / "report_files" / "effective_robustness.json").read_text())
    assert plotted(panel["reference"]) == pytest.approx(published)
    assert [p["label"] for p in panel["points"]] == ["clip: CLIP zero-shot"]
    slope, icpt, _ = baseline_fit([0.8, 0.6, 0.4], [0.5, 0.3, 0.2])
    assert (panel["baseline"]["slope"], panel["baseline"]["intercept"]) == pytest.approx((slope, icpt))
    assert "3 points drawn as grey crosses" in (out / "report.md").read_text()
    # collect: the same study's rows and the tables as --reference, one --plot figure
    table = tmp_path / "all.csv"
    assert main(["collect", str(out), "--out", str(table), "--reference", str(ref_id), "--reference", str(ref_shift),
                 "--plot", "digits:shifted", "--reference-dataset", "shifted=sketchy"]) == 0
    side = json.loads((tmp_path / "all.digits-vs-shifted.json").read_text())
    assert (tmp_path / "all.digits-vs-shifted.png").read_bytes()[:4] == b"\x89PNG"
    assert plotted(side["reference"]) == pytest.approx(published)
    rows = list(csv.DictReader(open(table)))
    top1 = {r["dataset"]: float(r["value"]) for r in rows if r["metric"] == "top1" and r["model"] == "clip"
            and r["method"].startswith("CLIP zero-shot")}
    [pt] = side["points"]
    assert (pt["x"], pt["y"]) == (top1["digits"], top1["shifted"])
    assert "1 models + 3 published" in capsys.readouterr().out
    assert main(["collect", str(out), "--out", str(table), "--plot", "digits:nowhere"]) == 2
    assert "no model has top1 on both 'digits' and 'nowhere'" in capsys.readouterr().err
    # imagenet-testbed's table as the reference (`vlmprobe report` re-renders from study.json): the line is
    # fitted on its standard-training models, the study's run and each grey point get ER from it, the grey
    # points their mCE (metrics.testbed, as `compare --reference`)
    from test_reference_table import DATA
    from vlmprobe.metrics.testbed import evaluate_table, read_table

    plan = json.loads((out / "study.json").read_text())
    plan["reference"] = {"files": [str(DATA)], "datasets": {"digits": "val", "shifted": "imagenet-sketch"}, "fit": True}
    (out / "study.json").write_text(json.dumps(plan))
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    res = evaluate_table(read_table(DATA), models=["resnet50"])
    er = res["rows"][0]["shift"]["imagenet-sketch"]["effective_robustness"]
    mce = res["rows"][0]["corruption"]["on-disk"]["mce"]
    [row] = [ln for ln in md.splitlines() if ln.startswith("| resnet50 | shifted |")]
    assert f"{100 * er:+.1f}" in row and f"{100 * mce:.1f}" in row and "| yes |" in row
    [panel] = json.loads((out / "report_files" / "effective_robustness.json").read_text())
    fit = res["sets"]["imagenet-sketch"]["fit"]
    assert (panel["baseline"]["slope"], panel["baseline"]["intercept"]) == pytest.approx((fit["slope"], fit["intercept"]))
    [run_row] = [ln for ln in md.splitlines() if ln.startswith("| clip | CLIP zero-shot | digits | shifted |")]
    assert "n/a" not in run_row  # the run's ER is a number against the testbed's line


def test_a_reference_that_is_not_a_file_names_key_and_line(tmp_path):
    from vlmprobe.study import load_study
    from vlmprobe.study.schema import StudyFileError

    path = tmp_path / "s.yaml"
    path.write_text("models: {m: {spec: toy:clip}}\ndatasets: {d: {data: toy:digits}}\nmeasurements: []\n"
                    "reference: [missing.csv]\n")
    with pytest.raises(StudyFileError, match=r"s.yaml:4: reference: reference table 'missing.csv' is not a file"):
        load_study(path)


def test_local_workers_get_their_own_gpus(tmp_path, monkeypatch):
    """With four visible GPUs (faked: CUDA_VISIBLE_DEVICES=0,1,2,3 on a CPU machine) and two real
    worker processes: a gpus: 2 run gets two GPUs, the run beside it one GPU none of them (each
    run's stamp records the CUDA_VISIBLE_DEVICES its worker saw); then plain runs go back to GPU
    `slot mod G`, and a run asking for more GPUs than there are gets all of them, once each."""
    import json
    from pathlib import Path

    from vlmprobe.study.executors import STAMP, Job, LocalPool

    root = Path(__file__).resolve().parents[1]
    for k, v in {"PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                 "CUDA_VISIBLE_DEVICES": "0,1,2,3"}.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "study.json").write_text(json.dumps({"runs": []}))

    def job(name: str, gpus: int) -> Job:  # a real command that needs no model: --status of an empty study
        return Job(name, "zeroshot", ["study", "--status", str(tmp_path)], str(tmp_path / name), "k",
                   str(tmp_path / "logs" / f"{name}.log"), None, gpus)

    pool = LocalPool(2)
    try:
        assert pool.gpus == ["0", "1", "2", "3"]
        pool.submit(job("two", 2))
        pool.submit(job("one", 1))
        done = []
        while len(done) < 2:
            done += pool.wait()
        assert sorted((j.run_id, code) for j, code in done) == [("one", 0), ("two", 0)]
        seen = {n: json.loads((tmp_path / n / STAMP).read_text()) for n in ("two", "one")}
        assert all(s["status"] == "done" for s in seen.values())
        two, one = (seen[n]["gpus"].split(",") for n in ("two", "one"))
        assert len(set(two)) == 2 and len(one) == 1 and not set(one) & set(two), seen
        assert seen["two"]["pid"] != seen["one"]["pid"]
        # the allocation rule on its own (no process): plain runs round-robin, k > G clamped
        assert [pool.pick(s, 1) for s in (0, 1)] == ["0", "1"]
        assert pool.pick(0, 8) == "0,1,2,3"
    finally:
        pool.close()


def test_slurm_runs_still_queued_or_running_are_waited_for_not_resubmitted(tmp_path):
    """A run whose stamp says running under a job id that submitit (local cluster: real
    subprocess) reports alive is adopted by the next study command's scheduler and waited for, not
    resubmitted; once that job is gone (or the stamp is another config's), it is resubmitted."""
    import functools
    import json
    import subprocess
    from pathlib import Path
    from types import SimpleNamespace

    from vlmprobe.study.executors import STAMP, Job, SlurmPool, schedule

    run_dir = tmp_path / "out" / "m" / "d" / "zeroshot"
    run_dir.mkdir(parents=True)
    stamp = run_dir / STAMP
    pool = SlurmPool(tmp_path / "out" / ".submitit", {"cluster": "local", "poll_s": 0.1, "timeout_min": 5})
    done = json.dumps({"status": "done", "key": "k"})  # what the earlier command's job writes when it ends
    earlier = pool.executor.submit(functools.partial(subprocess.run, ["sh", "-c", f"sleep 2; echo '{done}' > {stamp}"]))
    stamp.write_text(json.dumps({"status": "running", "key": "k", "job_id": earlier.job_id}))
    assert pool.job_state(earlier.job_id) == "RUNNING"

    run = SimpleNamespace(id="m/d/zeroshot", deps={})
    job = Job(run.id, "zeroshot", ["eval"], str(run_dir), "k", str(tmp_path / "x.log"))
    submitted = []

    def resubmit(jobs):  # a resubmission lands here (and ends at once, without writing its run)
        submitted.extend(jobs)
        pool.active.update({f"new{i}": (j, SimpleNamespace(done=lambda: True)) for i, j in enumerate(jobs)})

    pool.submit_many = resubmit
    log: list = []
    runner = _one_run_runner(run, job)
    schedule(runner, pool, log.append)
    assert runner.status == {run.id: "done"} and not submitted
    assert f"still queued or running as job {earlier.job_id}: waiting for it, not resubmitted" in log[0]
    assert json.loads(stamp.read_text())["status"] == "done"
    # the job is gone: a stamp still saying running is not adopted (resubmitted), nor another config's
    stamp.write_text(json.dumps({"status": "running", "key": "k", "job_id": earlier.job_id}))
    assert pool.job_state(earlier.job_id) == "GONE" and not pool.adopt(job)
    runner.status = {}
    schedule(runner, pool, log.append)
    assert submitted == [job] and "started\n  $ vlmprobe eval ..." in log[-2] and runner.status[run.id] == "failed"
    assert not pool.adopt(Job(run.id, "zeroshot", [], str(run_dir), "other-key", "x.log"))
    assert Path(run_dir).is_dir()


def test_slurm_adopt_follows_sacct_states_of_array_tasks(tmp_path, fake_slurm):
    """The sacct branch of ``SlurmPool.adopt`` (the fake's sacct; job ids of array tasks,
    ``BASE_i``): a run whose stamp says running under a task that sacct reports PENDING (held) is
    waited for, not resubmitted (no new sbatch), and finishes once the job is released and writes
    its run; under a task sacct reports FAILED or CANCELLED it is resubmitted (``--status``: stale)."""
    import functools
    import json
    import os
    import subprocess
    from types import SimpleNamespace

    from vlmprobe.study.executors import STAMP, Job, SlurmPool, schedule, status_rows
    from vlmprobe.testing.fakeslurm import submissions

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "study.json").write_text(json.dumps({"runs": [{"id": "m/d/zeroshot"}]}))
    run_dir = tmp_path / "out" / "m" / "d" / "zeroshot"
    run_dir.mkdir(parents=True)
    stamp = run_dir / STAMP
    folder = tmp_path / "out" / ".submitit"
    earlier = SlurmPool(folder, {"poll_s": 0.1, "timeout_min": 5, "array_parallelism": 2})  # an earlier command's
    assert earlier.executor.cluster == "slurm"  # chosen by submitit: srun is on PATH
    earlier.executor.update_parameters(slurm_additional_parameters={"hold": True})
    done = json.dumps({"status": "done", "key": "k"})  # what the earlier command's job writes when it ends
    with earlier.executor.batch():
        held = [earlier.executor.submit(functools.partial(subprocess.run, ["true"])),
                earlier.executor.submit(functools.partial(subprocess.run, ["sh", "-c", f"echo '{done}' > {stamp}"]))]
    jid = held[1].job_id
    assert jid == f"{submissions(fake_slurm)[0]['job_id']}_1"
    running = {"status": "running", "key": "k", "cluster": "slurm"}
    stamp.write_text(json.dumps({**running, "job_id": jid}))  # e.g. requeued, pending again
    pool = SlurmPool(folder, {"poll_s": 0.1, "timeout_min": 5})
    assert pool.job_state(jid) == "PENDING" and status_rows(tmp_path / "out")[0]["state"] == "running"

    run = SimpleNamespace(id="m/d/zeroshot", deps={})
    job = Job(run.id, "zeroshot", ["eval", "--no-such-flag"], str(run_dir), "k", str(tmp_path / "x.log"))

    log: list = []

    def release_when_adopted(line):  # the job starts only once the scheduler waits for it
        log.append(line)
        if "waiting for it" in line:
            subprocess.run(["scontrol", "release", jid.split("_")[0]], check=True)

    runner = _one_run_runner(run, job)
    schedule(runner, pool, release_when_adopted)
    assert f"still queued or running as job {jid}: waiting for it, not resubmitted" in log[0]
    assert runner.status == {run.id: "done"} and len(submissions(fake_slurm)) == 1
    assert json.loads(stamp.read_text())["status"] == "done"
    assert _wait(lambda: pool.job_state(jid) == "COMPLETED", 10)  # its process ends after the result is written
    # a task that failed (exit 3, no result) or was cancelled under the stamp's job id: resubmitted
    earlier.executor.update_parameters(slurm_additional_parameters={})
    failed = earlier.executor.submit(functools.partial(os._exit, 3))
    cancelled = earlier.executor.submit(functools.partial(subprocess.run, ["sleep", "60"]))
    subprocess.run(["scancel", cancelled.job_id], check=True)
    for handle, state in ((failed, "FAILED"), (cancelled, "CANCELLED")):
        assert _wait(lambda: pool.job_state(handle.job_id) != "RUNNING" and handle.done(), 30)
        assert pool.job_state(handle.job_id).split()[0] == state
        stamp.write_text(json.dumps({**running, "job_id": handle.job_id}))
        assert not pool.adopt(job) and status_rows(tmp_path / "out")[0]["state"] == "stale"
    runner.status, log[:] = {}, []
    schedule(runner, pool, log.append)
    assert "started\n  $ vlmprobe eval ..." in log[0] and len(submissions(fake_slurm)) == 4
    new = submissions(fake_slurm)[3]["job_id"]
    assert runner.status[run.id] == "failed" and json.loads(stamp.read_text())["job_id"] == new  # its bad flag


def _one_run_runner(run, job):
    """The scheduler's view of a study runner: one run (``run.id``, ``run.deps``), not finished yet,
    executed as ``job``, made way for by the real ``StudyRunner._set_aside`` (refused under a live
    writer, moved aside on another key)."""
    from pathlib import Path
    from types import SimpleNamespace

    from vlmprobe.study.runner import StudyRunner

    class Runner:
        plan = SimpleNamespace(runs={run.id: run})
        status: dict = {}
        cancel_stale = False
        _set_aside = StudyRunner._set_aside

        def state(self, r):
            return "partial"

        def job(self, r):
            return job

        def run_dir(self, r):
            return Path(job.run_dir)

        def key(self, r):
            return job.key

        def log_path(self, r):
            return Path(job.log)

        def shell(self, r):
            return "vlmprobe eval ..."

    return Runner()


def _wait(cond, timeout: float) -> bool:
    import time

    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_slurm_jobs_request_the_gpus_of_their_model(tmp_path, fake_slurm, monkeypatch):
    """A model entry's ``gpus: k`` (k > 1) is the ``--gpus-per-node`` of its runs' SLURM jobs (an
    array of their own); the other runs ready with them keep the study file's ``gpus_per_node``."""
    from vlmprobe.study.executors import Job, SlurmPool
    from vlmprobe.testing.fakeslurm import submissions

    monkeypatch.setenv("SBATCH_HOLD", "1")  # submitted held: nothing runs (cancelled at teardown)
    pool = SlurmPool(tmp_path / ".submitit", {"partition": "p", "gpus_per_node": 1, "array_parallelism": 2})
    jobs = [Job(f"m{g}/d/zeroshot{i}", "zeroshot", ["eval"], str(tmp_path / f"r{i}"), "k", str(tmp_path / "x.log"),
                gpus=g) for i, g in enumerate((1, 4, 1, 4, 4))]
    handles = pool.submit_many(jobs)
    assert len(handles) == len(pool.active) == 5
    got = sorted((s["options"]["gpus-per-node"], s["options"]["array"], s["options"]["partition"])
                 for s in submissions(fake_slurm))
    assert got == [("1", "0-1%2", "p"), ("4", "0-2%2", "p")]
    by_job = {j.run_id: h.job_id.split("_")[0] for j, h in zip(jobs, handles)}
    assert by_job["m1/d/zeroshot0"] == by_job["m1/d/zeroshot2"] != by_job["m4/d/zeroshot1"] == by_job["m4/d/zeroshot4"]


def test_a_run_inside_a_slurm_allocation_is_not_that_allocations_job(tmp_path, fake_slurm, monkeypatch):
    """A run executed outside a submitit job (a local-executor worker in an salloc shell or an
    sbatch script) records no job id: the allocation's ``SLURM_JOB_ID`` is not the run's job, so a
    later ``--executor slurm`` command in that allocation resubmits the interrupted run instead of
    waiting for the allocation it runs in to end."""
    import json
    import subprocess

    from vlmprobe.study.executors import STAMP, Job, SlurmPool, execute_job

    script = tmp_path / "alloc.sh"
    script.write_text("#!/bin/bash\n#SBATCH --time=5\nsleep 60\n")
    alloc = subprocess.run(["sbatch", str(script)], check=True, capture_output=True, text=True,
                           cwd=tmp_path).stdout.split()[-1]  # its slurm-%j.out lands there, not in the checkout
    assert _wait(lambda: (tmp_path / f"slurm-{alloc}.out").exists(), 10)
    pool = SlurmPool(tmp_path / ".submitit", {"poll_s": 0.1})
    assert _wait(lambda: pool.job_state(alloc) == "RUNNING", 10)
    monkeypatch.setenv("SLURM_JOB_ID", alloc)  # this process runs inside the allocation
    run_dir = tmp_path / "m" / "d" / "zeroshot"
    job = Job("m/d/zeroshot", "zeroshot", ["eval", "--no-such-flag"], str(run_dir), "k", str(tmp_path / "x.log"))
    assert execute_job(job) == 2
    stamp = json.loads((run_dir / STAMP).read_text())
    assert stamp["status"] == "failed" and stamp["job_id"] is None
    (run_dir / STAMP).write_text(json.dumps({**stamp, "status": "running"}))  # as if killed mid-run
    assert not pool.adopt(job)


def test_fake_sbatch_rejects_what_sbatch_rejects_and_sacct_prints_arrays_as_slurm_does(tmp_path, fake_slurm):
    """The fake SLURM the executor tests rely on can fail: an option sbatch does not know or a
    malformed one exits 1 naming it; a held array is one ``BASE_[0-2%2]`` PENDING line in sacct's
    ``--parsable2`` output, its started tasks one line each (plus their steps), a cancelled one
    ``CANCELLED by UID``."""
    import os
    import subprocess

    def sbatch(*lines, hold=False):
        script = tmp_path / "job.sh"
        script.write_text("#!/bin/bash\n" + "".join(f"#SBATCH {x}\n" for x in lines) + "true\n")
        return subprocess.run(["sbatch", *(["--hold"] if hold else []), str(script)], capture_output=True, text=True,
                              cwd=tmp_path)  # slurm-%j.out (sbatch's default output) lands in the submit dir

    def sacct(jid):
        out = subprocess.run(["sacct", "-o", "JobID,State", "--parsable2", "-j", jid], capture_output=True,
                             text=True, check=True).stdout
        return out.splitlines()

    bad = sbatch("--partiton=p")
    assert bad.returncode == 1 and "unrecognized option '--partiton=p'" in bad.stderr
    bad = sbatch("--mem=lots")
    assert bad.returncode == 1 and "--mem" in bad.stderr
    ok = sbatch("--array=0-2%2", "--time=5", hold=True)
    assert ok.returncode == 0 and ok.stdout.startswith("Submitted batch job ")
    base = ok.stdout.split()[-1]
    assert sacct(base) == ["JobID|State", f"{base}_[0-2%2]|PENDING"]
    subprocess.run(["scancel", f"{base}_2"], check=True)
    subprocess.run(["scontrol", "release", base], check=True)
    final = [f"{base}_{i}{step}|COMPLETED" for i in (0, 1) for step in ("", ".batch", ".0")] + \
        [f"{base}_2|CANCELLED by {os.getuid()}"]
    _wait(lambda: sacct(base)[1:] == final, 30)  # 8 lines appear once the tasks start, still RUNNING
    assert sacct(base)[1:] == final
