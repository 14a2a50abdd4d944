"""Launches of 2 CPU processes where only rank 1 fails (``VLMPROBE_TEST_FAULT``: a fault inside
the real model on that rank): every process exits within a bounded time, the error names rank 1,
and a study goes on to its next run on every process (its CLIP run on a cold cache: one process
writes the text classifier, the other waits and loads it; its second fine-tuning run, whose images
are unreadable on one process only, takes every step on both)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
FAULTY = "vlmprobe.testing.fault"  # vlmprobe with VLMPROBE_TEST_FAULT's hook on its loader (tests only)
BOUND = 420  # seconds (a loaded 2-core machine): a launch that hangs is killed here and the test fails


def _run(cmd, **env):
    return subprocess.run(list(map(str, cmd)), env={**ENV, **env}, capture_output=True, text=True, timeout=BOUND,
                          cwd=REPO)


def _unreadable_on_rank_1(root):
    """Two images; the one every epoch gives rank 1 (seed 0: permutation [0, 1]) is unreadable."""
    assert np.random.default_rng([0, 0]).permutation(2).tolist() == [0, 1]
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(root / "a" / "0.png")
    (root / "b" / "0.png").write_bytes(b"not an image")
    return root


def test_eval_fails_on_every_rank_when_rank_1_fails(tiny_models, digits_folder, tmp_path):
    """`accelerate launch ... -m vlmprobe eval` where rank 1's model raises at its first call:
    rank 0 stops too (between batches or at a barrier) with `rank 1 failed: ...`; the run
    directory is left unlocked, so the same command without the fault then finishes."""
    out = tmp_path / "run"
    args = ["-m", FAULTY, "eval", "--model", f"hf:{tiny_models['llava']}", "--data", digits_folder,
            "--method", "likelihood", "--limit", 6, "--batch-size", 2, "--out", out, "--no-progress"]
    proc = _run([*LAUNCH, *args], VLMPROBE_TEST_FAULT="1")
    assert proc.returncode != 0
    assert "vlmprobe eval: error: rank 1 failed: RuntimeError: injected fault" in proc.stderr, proc.stderr[-3000:]
    assert not (out / "results.json").exists()


def test_study_run_failing_on_rank_1_fails_on_all_and_the_study_goes_on(tiny_models, digits_folder, tmp_path):
    """A 2-process study where the VLM raises on rank 1 only: its eval, probe and fine-tuning runs
    fail on both processes naming rank 1, the runs that need them are skipped, the CLIP run
    still runs on both processes, and the study ends with its report and exit status 1."""
    vlm2 = shutil.copytree(tiny_models["llava"], tmp_path / "vlm2")  # the same model, not hit by the fault
    pair = _unreadable_on_rank_1(tmp_path / "pair")
    study = tmp_path / "s.yaml"
    study.write_text(f"""\
models:
  vlm: {{spec: "hf:{tiny_models['llava']}"}}
  clip: {{spec: "hfclip:{tiny_models['hfclip']}"}}
  vlm-ft:
    finetune:
      from: vlm
      recipe: {{train: "{digits_folder}", train_split: null, max_steps: 1, per_device_batch_size: 2, save_every: 0,
               eval_every: 0}}
  vlm2: {{spec: "hf:{vlm2}"}}
  vlm2-ft:
    finetune:
      from: vlm2
      recipe: {{train: "{pair}", train_split: null, val: "{pair}", val_split: null, per_device_batch_size: 1,
               grad_accum: 1, max_steps: 2, log_every: 1, save_every: 0, eval_every: 0}}
datasets:
  digits: {{data: "{digits_folder}", limit: 4}}
  train: {{data: "{digits_folder}", limit: 6}}
measurements:
  - {{measure: likelihood, models: [vlm, vlm-ft, vlm2-ft], datasets: [digits], num_candidates: [2]}}
  - {{measure: probe, models: [vlm], datasets: [digits], train: train, layers: "-1", pool: last}}
  - {{measure: zeroshot, datasets: [digits]}}
""")
    out, home = tmp_path / "out", tmp_path / "home"  # a cold cache: both processes need the CLIP classifier
    proc = _run([*LAUNCH, "-m", FAULTY, "study", study, "--out", out, "--partial"], VLMPROBE_TEST_FAULT="1:/llava",
                VLMPROBE_HOME=home)
    assert proc.returncode == 1, proc.stderr[-3000:]
    printed = proc.stdout
    status = {r["id"]: r["status"] for r in json.loads((out / "study.json").read_text())["runs"]}
    failed = sorted(r for r, st in status.items() if st == "failed")
    assert [r.split("/")[-1].split("-")[0] for r in failed] == ["finetune", "likelihood", "probe"], (status, printed)
    for run in failed:
        assert f"{run}: FAILED (rank 1 failed: RuntimeError: injected fault" in printed, (run, printed[-3000:])
    assert status["vlm-ft/digits/likelihood-num_candidates=2"] == "blocked"
    assert status["clip/digits/zeroshot"] == "done"  # after the failures, on both processes
    assert json.loads((out / "clip" / "digits" / "zeroshot" / "timing.json").read_text())["world_size"] == 2
    assert "study: 4 of 7 runs did not finish" in printed and (out / "report.html").exists()
    # vlm2-ft: 2 DDP processes x batch 1 on two images, the one rank 1 gets every epoch unreadable (train
    # and validation): rank 1 runs the collator's placeholder with a zero loss, so both processes take
    # both steps (before, rank 1 skipped the micro-batch and DDP's all-reduce waited for it)
    assert status["vlm2-ft/finetune"] == status["vlm2-ft/digits/likelihood-num_candidates=2"] == "done"
    summary = json.loads((out / "vlm2-ft" / "finetune" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["num_processes"] == 2 and summary["val_examples"] == 1
    steps = [r for r in map(json.loads, (out / "vlm2-ft" / "finetune" / "log.jsonl").read_text().splitlines())
             if "loss" in r]
    assert [(r["step"], r["epoch"], r["examples"], r["skipped"]) for r in steps] == [(1, 0, 1, 1), (2, 1, 1, 1)]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in steps)
    cached = sorted(p.name for p in (home / "text_classifiers").iterdir())  # one entry, its lock, no temporary
    assert len(cached) == 2 and cached[0].endswith(".pt") and cached[1] == cached[0] + ".lock", cached

