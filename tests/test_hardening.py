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


def _data_keys(ns, role=None):
    """(data, split, limit, classes, image_root) as a command parsed them."""
    if role is None:
        return ns.data, ns.split, ns.limit, getattr(ns, "classes", None), ns.image_root
    spec, _, split = getattr(ns, role).partition("@")
    limit, root = getattr(ns, f"{role}_limit"), getattr(ns, f"{role}_image_root")
    return (spec, split or None, ns.limit if limit is None else limit, ns.classes,
            ns.image_root if root is None else root)


# measure -> how its parsed command shows the keys of the run's dataset entry (and of the probe's
# training entry); None: the measure reads no images of the entry (another run's files, its own data)
READS = {"zeroshot": _data_keys, "cpe": _data_keys, "generate": _data_keys, "likelihood": _data_keys,
         "classifier": _data_keys, "shape_bias": _data_keys, "retrieval": _data_keys,
         "probe": lambda ns: (_data_keys(ns, "test"), _data_keys(ns, "train")),
         "wikiqa": None, "frequency": None, "ood": None, "factors": None, "shift": None,
         "open_world": None,  # the generation run's stored answers
         "audit": None}  # re-runs the audited run from its own config.json (its dataset as recorded there)


def test_every_dataset_key_reaches_every_measure_command():
    """Table-driven: for each measure, a study dataset entry's data, split, limit, classes and
    image_root arrive in the command the study runs (parsed by the real CLI parser); the probe
    gets its training entry's own split, limit and image root too (a retrieval entry has no
    classes: the plan skips one that names them, with a line)."""
    from vlmprobe.cli import build_parser
    from vlmprobe.study.measures import MEASURES, Ctx
    from vlmprobe.study.schema import DatasetEntry

    assert set(READS) == set(MEASURES)  # a new measure must say how it reads its dataset
    test = DatasetEntry("test", data="/d/test", split="val", limit=7, classes="/d/classes.json", image_root="/d/t")
    train = DatasetEntry("train", data="/d/train", split="train", limit=9, classes="/d/classes.json",
                         image_root="/d/tr")
    want = lambda e: (e.data, e.split, e.limit, e.classes, e.image_root)  # noqa: E731
    extra = {"train": "train", "data": "/d/qa.jsonl", "images": "/d/im", "corpus": "/d/c.json", "ood": "ood",
             "source": "imagenet-x", "method": None}
    for name, m in MEASURES.items():
        if READS[name] is None:
            continue
        p = m.resolve({**{k: o.default for k, o in m.options.items()}, **{k: v for k, v in extra.items()
                                                                          if k in m.options}}, m.applies_to[0])
        entry = test if name != "retrieval" else DatasetEntry(**{**vars(test), "classes": None})  # captions
        ctx = Ctx(model="hf:/m", load_args=[], data_args=entry.args(), seed=0, out="/o",
                  deps={"run": "/r", "id": "/r", "ood": "/r", "ensemble": "/r", "classification": "/r"},
                  datasets={"test": test.args(), "train": train.args()}, models={})
        ns = build_parser().parse_args(m.argv(ctx, p))
        got = READS[name](ns)
        assert got == ((want(entry), want(train)) if name == "probe" else want(entry)), name


def test_study_reruns_a_run_whose_model_or_image_folder_changed_in_place(tiny_models, tmp_path, capsys):
    """The reuse key holds the names, sizes and mtimes of every local model directory and image
    folder a run reads: a model retrained in place and an image replaced in place each rerun the
    run (the old directory moved aside); an untouched study is reused."""
    data = _folder(tmp_path / "data")
    model = tmp_path / "clip"
    shutil.copytree(tiny_models["hfclip"], model)
    path = tmp_path / "s.yaml"
    path.write_text(f"models:\n  clip: {{spec: \"hfclip:{model}\"}}\ndatasets:\n  d: {{data: \"{data}\"}}\n"
                    "measurements:\n  - {measure: zeroshot}\n")
    out = tmp_path / "out"
    args = ["study", str(path), "--out", str(out)]
    assert main(args) == 0 and main(args) == 0
    assert "clip/d/zeroshot: reused" in capsys.readouterr().out
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())  # retrained in place (same names, new files)
    assert main(args) == 0
    assert "clip/d/zeroshot: its config changed" in capsys.readouterr().out
    Image = pytest.importorskip("PIL.Image")
    Image.new("RGB", (32, 32), (0, 0, 0)).save(data / "one" / "0.png")  # an image replaced in place
    assert main(args) == 0
    assert "clip/d/zeroshot: its config changed" in capsys.readouterr().out
    assert main(args) == 0
    assert "clip/d/zeroshot: reused" in capsys.readouterr().out


def test_feature_cache_is_not_reused_after_an_image_is_replaced(tiny_models, tmp_path):
    """The probe feature cache key holds the image files' sizes and mtimes: replacing an image in
    place (same name, same sample list) computes a new entry instead of serving stale features."""
    from PIL import Image

    from vlmprobe.data import load_dataset
    from vlmprobe.probe.extract import extract_features

    data = _folder(tmp_path / "data")
    model = load_model(f"hfclip:{tiny_models['hfclip']}")
    kw = dict(layers=None, pooling=None, cache_dir=tmp_path / "features", progress=False)
    assert extract_features(model, load_dataset(str(data)), **kw).computed == 4
    assert extract_features(model, load_dataset(str(data)), **kw).computed == 0  # reused
    Image.new("RGB", (32, 32), (255, 255, 255)).save(data / "zero" / "0.png")
    again = extract_features(model, load_dataset(str(data)), **kw)
    assert again.computed == 4


def test_study_rejects_a_load_value_the_command_refuses_and_a_run_that_exits_is_its_failure(tiny_models, tmp_path,
                                                                                            capsys):
    """`dtype: fp16` is refused by the schema (the choices of `--dtype`, one table) before any run,
    naming file, line and key; a run whose command exits through argparse anyway is that run's
    failure (reported, exit status kept), not the end of the study."""
    from vlmprobe.study import StudyFileError, load_study
    from vlmprobe.study.plan import Run
    from vlmprobe.study.runner import StudyRunner

    data = _folder(tmp_path / "data")
    path = tmp_path / "s.yaml"
    text = (f"models:\n  clip: {{spec: \"hfclip:{tiny_models['hfclip']}\", dtype: fp16}}\n"
            f"datasets:\n  d: {{data: \"{data}\"}}\nmeasurements:\n  - {{measure: zeroshot}}\n")
    path.write_text(text)
    with pytest.raises(StudyFileError) as e:
        load_study(path)
    assert str(e.value).startswith(f"{path}:2: models.clip.dtype: dtype must be one of default, float32")
    assert main(["study", str(path), "--out", str(tmp_path / "out")]) == 2 and not (tmp_path / "out").exists()
    path.write_text(text.replace("fp16", "float16"))
    runner = StudyRunner(load_study(path), tmp_path / "out")
    run = next(iter(runner.plan.runs.values()))
    assert isinstance(run, Run)
    capsys.readouterr()
    assert runner._run(run, ["eval", "--dtype", "fp16"], {}) == 2  # argparse's SystemExit(2), caught
    assert f"{run.id}: FAILED (its command exited with status 2)" in capsys.readouterr().out
