"""Cache writes that cannot collide, resume and reuse that notice changed inputs, and study runs
that do what the study file says (issue 21, items 3-8): in-process, on the tiny models."""
import fcntl
import json
import shutil
import threading
import time

import numpy as np
import pytest
import torch

from vlmprobe.cache import atomic_write_json
from vlmprobe.cli import main
from vlmprobe.models.registry import load_model


def test_text_classifier_has_one_writer_and_private_temporary_files(tiny_models, tmp_path, monkeypatch):
    """A process that finds another one writing the same text-classifier entry waits for it and
    loads its file instead of computing and renaming over it; a temporary name another writer
    holds (here a directory at the old fixed ``<key>.tmp``) is never touched."""
    model = load_model(f"hfclip:{tiny_models['hfclip']}")
    names, templates = ["zero", "one"], ["a photo of a {}."]
    monkeypatch.setenv("VLMPROBE_HOME", str(tmp_path / "a"))
    real = model.text_classifier(names, templates)
    (entry,) = (tmp_path / "a" / "text_classifiers").glob("*.pt")
    monkeypatch.setenv("VLMPROBE_HOME", str(tmp_path / "b"))
    path = tmp_path / "b" / "text_classifiers" / entry.name
    path.parent.mkdir(parents=True)
    path.with_suffix(".tmp").mkdir()  # another writer's temporary name under the old scheme
    theirs = torch.full_like(real, 0.5)
    holding = threading.Event()

    def other_writer():  # holds the entry's lock (``<key>.pt.lock``, flock) while it writes
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            holding.set()
            time.sleep(1.0)
            torch.save(theirs, path)

    t = threading.Thread(target=other_writer)
    t.start()
    holding.wait()
    model._classifiers.clear()
    got = model.text_classifier(names, templates)
    t.join()
    torch.testing.assert_close(got, theirs)  # waited and loaded the other writer's entry
    monkeypatch.setenv("VLMPROBE_HOME", str(tmp_path / "c"))
    (tmp_path / "c" / "text_classifiers").mkdir(parents=True)
    (tmp_path / "c" / "text_classifiers" / entry.with_suffix(".tmp").name).mkdir()
    model._classifiers.clear()
    torch.testing.assert_close(model.text_classifier(names, templates), real)
    (tmp_path / "x.json.tmp").mkdir()
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}


def _folder(root, n=2):
    from PIL import Image

    for c, name in enumerate(["zero", "one"]):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (40 + 100 * c, 20 * i, 60)).save(root / name / f"{i}.png")
    return root


def _make_partial(run, keep=2):
    """What a run killed after ``keep`` samples leaves behind."""
    scores = np.load(run / "scores.npy")
    for name in ("results.json", "scores.npy", "timing.json"):
        (run / name).unlink()
    lines = (run / "samples.jsonl").read_text().splitlines(keepends=True)
    (run / "samples.jsonl").write_text("".join(lines[:keep]))
    scores[:keep].astype(np.float32).tofile(run / "scores.partial")


def test_resume_refuses_a_folder_edited_without_changing_its_size(tiny_models, tmp_path, capsys):
    """A single-process resume checks the ordered sample ids (config.json ``samples``): the same
    folder resumes to the uninterrupted files; a file renamed in place (same count) is refused
    in one line instead of mixing records of two sample lists."""
    data = _folder(tmp_path / "data")
    run = tmp_path / "run"
    args = ["eval", "--model", f"hfclip:{tiny_models['hfclip']}", "--data", str(data), "--method", "zeroshot",
            "--batch-size", "2", "--out", str(run), "--no-progress"]
    assert main(args) == 0
    full = (run / "samples.jsonl").read_text()
    _make_partial(run)
    assert main(args) == 0 and (run / "samples.jsonl").read_text() == full  # unchanged data: exact resume
    _make_partial(run)
    (data / "zero" / "1.png").rename(data / "zero" / "7.png")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "was started on other samples" in err and "the dataset changed; use a new --out" in err
    assert [line for line in err.splitlines() if "error" in line] == [err.strip().splitlines()[-1]]
    assert json.loads((run / "config.json").read_text())["samples"]["count"] == 4
