"""Study executors (local worker processes, SLURM through submitit against a fake sbatch/sacct) and zoos:
the same run files as a serial study, a killed worker's run resumed by the next study command,
dependency order, requeue on preemption, failed runs resubmitted (not the finished ones)."""
from __future__ import annotations

import filecmp
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlmprobe.cli import main
from vlmprobe.study import load_study

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("results.json", "samples.jsonl", "scores.npy")


ENV = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _env() -> dict:
    return {**os.environ, **ENV}


@pytest.fixture
def child_env(monkeypatch):
    """The environment of the processes an in-process study command starts (workers, jobs)."""
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def _study(cli) -> list[str]:
    return [sys.executable, "-m", "vlmprobe", "study", *cli]


def _run_files(out: Path) -> dict:
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*")) if p.name in RUN_FILES}


def _same_run_files(a: Path, b: Path) -> None:
    fa, fb = _run_files(a), _run_files(b)
    assert fa.keys() == fb.keys() and fa
    differ = [k for k in fa if not filecmp.cmp(fa[k], fb[k], shallow=False)]
    assert not differ, differ


def _wait_for(cond, timeout: float, proc=None) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def _models(tiny_models) -> str:
    """The study-file lines of a tiny CLIP and a tiny LLaVA."""
    return f"""\
models:
  clip: {{spec: "hfclip:{tiny_models['hfclip']}"}}
  vlm: {{spec: "hf:{tiny_models['llava']}"}}
"""


def _stamp(out: Path, rid: str) -> dict:
    try:
        return json.loads((out / rid / "study_run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _lines(path: Path) -> int:
    try:
        return sum(1 for _ in open(path))
    except OSError:
        return 0


@pytest.fixture(scope="module")
def exec_study(tiny_models, digits_folder, tmp_path_factory):
    """A small study (CLIP zero-shot, VLM generation and likelihood) and its serial run."""
    root = tmp_path_factory.mktemp("exec")
    path = root / "s.yaml"
    path.write_text(_models(tiny_models) + f"""\
datasets:
  digits: {{data: "{digits_folder}"}}
measurements:
  - {{measure: zeroshot}}
  - {{measure: likelihood, models: [vlm]}}
  - {{measure: generate, models: [vlm]}}
""")
    ref = root / "serial"
    assert main(["study", str(path), "--out", str(ref)]) == 0
    return path, ref


def test_local_executor_matches_serial_and_a_killed_worker_resumes(exec_study, tmp_path, capsys, child_env):
    """--executor local --jobs 2 writes the serial study's run files byte for byte; SIGKILL of
    the worker running the VLM generation half way fails that run only; the next study command
    resumes it (no sample twice) and the reports match."""
    path, ref = exec_study
    out = tmp_path / "two"
    rid = "vlm/digits/generate"
    proc = subprocess.Popen(_study([str(path), "--out", str(out), "--executor", "local", "--jobs", "2"]),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert _wait_for(lambda: _stamp(out, rid).get("status") == "running" and _lines(out / rid / "samples.jsonl") > 0,
                     300, proc), proc.communicate()[0][-3000:]
    os.kill(_stamp(out, rid)["pid"], signal.SIGKILL)
    printed = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, printed[-3000:]
    assert f"{rid}: FAILED (exit -9" in printed and "report: not written" in printed
    assert _stamp(out, rid)["status"] == "failed" and not (out / rid / "results.json").exists()
    partial_lines = _lines(out / rid / "samples.jsonl")
    assert 0 < partial_lines < 40
    capsys.readouterr()
    main(["study", "--status", str(out)])
    status = capsys.readouterr().out
    assert f"failed  {rid}" in status and "3 runs: 2 done, 1 failed" in status
    code = main(["study", str(path), "--out", str(out), "--executor", "local", "--jobs", "2"])
    again = capsys.readouterr()
    assert code == 0, again.out[-3000:] + again.err[-3000:]
    assert again.out.count("reused (finished, same config)") == 2 and f"{rid}: done" in again.out
    _same_run_files(ref, out)
    assert _lines(out / rid / "samples.jsonl") == 40
    # the serial study (one process): the same report apart from its own directory name
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
    assert stamp.sub("T", (ref / "report.md").read_text()) == \
        stamp.sub("T", (out / "report.md").read_text().replace(str(out), str(ref)))


def test_slurm_executor_through_sbatch_and_sacct(exec_study, tiny_models, digits_folder, tmp_path, capsys, child_env,
                                                fake_slurm):
    """submitit's real SLURM path against the fake sbatch/srun/sacct/scontrol on PATH (no
    ``cluster: local``): the two ready runs go out as one array with the study file's partition,
    GPUs, CPUs, memory, time limit and array parallelism; the frequency run is submitted only after
    its generation run finished; ``scancel --signal=USR2`` (what SLURM sends before preemption or
    the time limit) makes the generation job requeue itself (``scontrol requeue``: same job id, a
    second attempt) and resume its run directory, which ends byte for byte the serial study's;
    ``--status`` shows each run's SLURM job id; a failed run is resubmitted by the next study
    command and the finished ones are not."""
    from vlmprobe.testing.fakeslurm import jobs, submissions

    _, ref = exec_study
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps([{"id": "0", "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a seven"}]}]))
    templates = tmp_path / "templates.json"
    path = tmp_path / "s.yaml"
    path.write_text(_models(tiny_models) + f"""\
executor: {{slurm: {{partition: p, account: lab, qos: low, constraint: a100, gpus_per_node: 0, cpus_per_task: 1,
                    mem_gb: 1, timeout_min: 5, array_parallelism: 2, poll_s: 0.2}}}}
datasets:
  digits: {{data: "{digits_folder}"}}
measurements:
  - {{measure: zeroshot, models: [clip], templates: ["{templates}"]}}
  - {{measure: frequency, models: [vlm], corpus: "{corpus}"}}
""")
    out = tmp_path / "out"
    gen, freq, zs = "vlm/digits/generate", "vlm/digits/frequency", "clip/digits/zeroshot-templates=templates.json"
    proc = subprocess.Popen(_study([str(path), "--out", str(out), "--executor", "slurm"]), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert _wait_for(lambda: _stamp(out, gen).get("status") == "running" and _lines(out / gen / "samples.jsonl") > 0,
                     300, proc), proc.communicate()[0][-3000:]
    first = _stamp(out, gen)
    subprocess.run(["scancel", "--signal=USR2", first["job_id"]], check=True)
    printed = proc.communicate(timeout=600)[0]
    assert proc.returncode == 1, printed[-3000:]  # the zero-shot run failed: its templates file is missing
    done = _stamp(out, gen)
    assert done["status"] == "done" and done["pid"] != first["pid"] and done["job_id"] == first["job_id"]
    assert done["attempt"] == 2 and jobs(fake_slurm)[done["job_id"]]["restarts"] == 1  # requeued once, same job
    assert done["cluster"] == "slurm"
    assert _lines(out / gen / "samples.jsonl") == 40  # resumed: no sample twice
    _same_run_files(ref / gen, out / gen)
    assert _stamp(out, freq)["status"] == "done" and _stamp(out, zs)["status"] == "failed"
    array, single = submissions(fake_slurm)
    base = array["job_id"]
    assert {_stamp(out, r)["job_id"] for r in (gen, zs)} == {f"{base}_0", f"{base}_1"}
    assert _stamp(out, freq)["job_id"] == single["job_id"] and single["time"] >= done["finished"]
    for sub, tasks in ((array, "0-1%2"), (single, None)):
        opts = sub["options"]
        assert opts.get("array") == tasks and (opts["partition"], opts["gpus-per-node"], opts["cpus-per-task"],
                                               opts["mem"], opts["time"]) == ("p", "0", "1", "1GB", "5"), opts
        assert opts["signal"].startswith("USR2@") and opts["open-mode"] == "append"
        assert (opts["account"], opts["qos"], opts["constraint"]) == ("lab", "low", "a100"), opts
    capsys.readouterr()
    main(["study", "--status", str(out)])
    status = capsys.readouterr().out
    for rid, state in ((gen, "done"), (freq, "done"), (zs, "failed")):
        assert re.search(rf"{state}  {re.escape(rid)}  job {_stamp(out, rid)['job_id']}\b", status), status
    templates.write_text(json.dumps(["a photo of a {c}."]))
    code = main(["study", str(path), "--out", str(out), "--executor", "slurm"])
    again = capsys.readouterr()
    assert code == 0, again.out[-3000:] + again.err[-3000:]
    assert f"{zs}: started" in again.out and f"{gen}: started" not in again.out
    assert len(submissions(fake_slurm)) == 3 and _stamp(out, zs)["status"] == "done"
    assert _stamp(out, zs)["job_id"] == submissions(fake_slurm)[2]["job_id"]
    assert (out / "report.html").exists()


def test_zoo_expansion_against_the_installed_registries(tmp_path, capsys):
    """Names come from open_clip.list_pretrained() / timm.list_models(pretrained=True) with the
    globs; each model is ENTRY/ARCH@TAG with its metadata; a zoo's name in a measurement stands
    for all its models; --dry-run prints the expansion and the number of runs (nothing is loaded)."""
    import open_clip
    import timm

    path = tmp_path / "z.yaml"
    path.write_text("""\
models:
  clip-laion: {zoo: openclip, match: "ViT-B-32", pretrained: "laion2b*", group: clip-laion}
  imagenet: {zoo: timm, match: "test_*", pretrained: "*in1k", exclude: ["test_vit*"]}
datasets:
  d: {data: toy:digits}
measurements:
  - {measure: zeroshot, models: [clip-laion]}
  - {measure: classifier}
""")
    study = load_study(path)
    laion = [f"clip-laion/ViT-B-32@{t}" for a, t in open_clip.list_pretrained() if a == "ViT-B-32" and
             t.startswith("laion2b")]
    tests = [f"imagenet/{n.replace('.', '@')}" for n in timm.list_models(pretrained=True)
             if n.startswith("test_") and not n.startswith("test_vit")]
    assert laion and len(tests) >= 8
    assert study.zoos == {"clip-laion": laion, "imagenet": tests}
    meta = study.models[laion[0]].meta
    assert study.models[laion[0]].spec == f"openclip:{laion[0].split('/', 1)[1]}" and study.models[laion[0]].kind == "clip"
    assert meta["group"] == "clip-laion" and meta["architecture"] == "ViT-B-32" and meta["resolution"] == 224
    assert 1.4e8 < meta["parameters"] < 1.6e8  # ViT-B/32 CLIP: 151M
    tm = study.models[tests[0]]
    assert tm.kind == "classifier" and tm.spec == "timm:" + tests[0].split("/", 1)[1].replace("@", ".")
    assert tm.meta["group"] == "imagenet" and tm.meta["resolution"] == 160 and 0 < tm.meta["parameters"] < 2e6
    assert main(["study", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"zoo clip-laion: {len(laion)} models" in printed and f"{len(laion) + len(tests)} runs" in printed
    assert not (tmp_path / "o").exists()


def test_a_zoo_of_32_tiny_models_through_the_local_executor(tiny_models, digits_folder, tmp_path):
    """A zoo over a folder of 32 tiny random-weight CLIPs (each its own seed) runs through the
    local executor; every model gets a run and a row carrying its group and metadata."""
    from vlmprobe.testing import tiny_model_zoo

    zoo = tiny_model_zoo(tiny_models["hfclip"], tmp_path / "zoo", 32)
    path = tmp_path / "z.yaml"
    path.write_text(f"""\
models:
  tiny: {{zoo: dir, path: "{zoo}", match: "clip*", group: tiny-clips}}
datasets:
  digits: {{data: "{digits_folder}", limit: 4}}
measurements:
  - {{measure: zeroshot}}
""")
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out), "--executor", "local", "--jobs", "2"]) == 0
    plan = json.loads((out / "study.json").read_text())
    assert len(plan["runs"]) == 32 and all(r["status"] == "done" for r in plan["runs"])
    assert plan["models"]["tiny/clip007@local"]["group"] == "tiny-clips"
    tops = {json.loads((out / f"tiny/clip{i:03d}@local/digits/zeroshot/results.json").read_text())["top1"]
            for i in range(32)}
    assert len(tops) > 1  # different weights, different models


def test_image_embeddings_are_computed_once_and_equal_recomputing(tiny_models, digits_folder, tmp_path,
                                                                  monkeypatch):
    """Zero-shot with two template sets reads one content-keyed embedding entry (its key in both
    configs, computed by the first run only, in a fresh cache: no lock taken twice by one process);
    the scores equal the image-tower path (1e-6)."""
    import threading

    import numpy as np

    from vlmprobe.cache import home_dir

    monkeypatch.setenv("VLMPROBE_HOME", str(tmp_path / "home"))  # the entry is computed here, not found
    spec = f"openclip:{tiny_models['openclip']}"
    base = ["eval", "--model", spec, "--data", str(digits_folder), "--method", "zeroshot", "--no-progress"]
    keys, entries = [], None
    for t in ("single", "imagenet"):
        codes = []
        run = threading.Thread(target=lambda: codes.append(main(base + ["--templates", t, "--out",
                                                                       str(tmp_path / f"cached-{t}")])), daemon=True)
        run.start()
        run.join(120)  # a self-deadlock on the entry's lock would hang here
        assert codes == [0], "the cached zero-shot run did not finish (waiting on its own lock?)"
        assert main(base + ["--templates", t, "--out", str(tmp_path / f"plain-{t}"), "--no-embedding-cache"]) == 0
        a, b = (np.load(tmp_path / f"{k}-{t}" / "scores.npy") for k in ("cached", "plain"))
        assert a.shape == (40, 10) and np.abs(a - b).max() <= 1e-6
        cfg = json.loads((tmp_path / f"cached-{t}" / "config.json").read_text())["method"]
        keys.append(cfg["image_embeddings"])
        assert "image_embeddings" not in json.loads((tmp_path / f"plain-{t}" / "config.json").read_text())["method"]
        entry = home_dir() / "features" / keys[-1] / "features" / "embed.npy"
        stat = entry.stat().st_mtime_ns
        entries = stat if entries is None else entries
        assert stat == entries  # the second template set did not recompute it
    assert keys[0] == keys[1]


def test_collect_one_long_table_with_reference_results(exec_study, tmp_path, capsys):
    import csv

    _, ref = exec_study
    timm_csv = tmp_path / "results-imagenet.csv"
    timm_csv.write_text("model,top1,top5,param_count,img_size\ntest_vit.r160_in1k,12.5,30.0,0.37,160\n")
    oc_csv = tmp_path / "openclip_results.csv"
    oc_csv.write_text("name,pretrained,imagenet1k,cars\nViT-B-32,openai,0.632,0.597\n")
    out = tmp_path / "all.csv"
    run = ref / "clip" / "digits" / "zeroshot"
    assert main(["collect", str(ref), str(run), "--out", str(out), "--reference", str(timm_csv),
                 "--reference", str(oc_csv)]) == 0
    rows = list(csv.DictReader(open(out)))
    top1 = {(r["study"], r["model"], r["method"]): r for r in rows if r["metric"] == "top1"}
    res = json.loads((run / "results.json").read_text())
    study_row = next(r for (s, m, _), r in top1.items() if m == "clip" and s)
    assert float(study_row["value"]) == res["top1"] and study_row["run"] == str(run) and study_row["n"] == "40"
    assert any(m.startswith("hfclip:") and float(r["value"]) == res["top1"] for (s, m, _), r in top1.items() if not s)
    assert float(top1[("reference:results-imagenet.csv", "timm:test_vit.r160_in1k", "published")]["value"]) == 0.125
    oc = [r for r in rows if r["spec"] == "openclip:ViT-B-32@openai"]
    assert {(r["dataset"], float(r["value"])) for r in oc} == {("imagenet1k", 0.632), ("cars", 0.597)}
    assert {"likelihood", "generate"} <= {Path(r["run"]).name for r in rows}
    assert main(["collect", str(tmp_path), "--out", str(out)]) == 2
    assert "neither a study directory" in capsys.readouterr().err


@pytest.mark.parametrize("text,line,key,message", [
    ("executor: {slurm: {partiton: gpu}}\nmodels: {m: {spec: toy:clip}}\ndatasets: {d: {data: toy:digits}}\n"
     "measurements: []\n", 1, "executor.slurm.partiton", "did you mean 'partition'"),
    ("executor: {slurm: {timeout_min: soon}}\nmodels: {m: {spec: toy:clip}}\ndatasets: {d: {data: toy:digits}}\n"
     "measurements: []\n", 1, "executor.slurm.timeout_min", "timeout_min must be int"),
    ("models:\n  z: {zoo: timm, match: \"no-such-net*\"}\ndatasets: {d: {data: toy:digits}}\nmeasurements: []\n",
     2, "models.z", "matches no model of the timm registry"),
    ("models:\n  z: {zoo: openclip, match: \"RN50\", weight: random}\ndatasets: {d: {data: toy:digits}}\n"
     "measurements: []\n", 2, "models.z.weight", "did you mean 'weights'"),
    ("models:\n  z: {zoo: dir, path: /no/such/dir}\ndatasets: {d: {data: toy:digits}}\nmeasurements: []\n",
     2, "models.z", "is not a directory"),
])
def test_bad_executor_and_zoo_entries_name_file_key_and_line(tmp_path, text, line, key, message):
    from vlmprobe.study import StudyFileError

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(StudyFileError) as e:
        load_study(path)
    assert str(e.value).startswith(f"{path}:{line}: {key}: ") and message in str(e.value), str(e.value)


def test_jobs_needs_the_local_executor(tmp_path, capsys):
    assert main(["study", "--out", str(tmp_path / "o"), "--jobs", "2", "--dry-run"]) == 2
    assert "--jobs N (N >= 1) goes with --executor local" in capsys.readouterr().err
    assert main(["study", "--status", str(tmp_path)]) == 2
    assert "study.json is missing" in capsys.readouterr().err
