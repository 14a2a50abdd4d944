"""Flags do what they say (issue 21, items 9, 13, 14): an option of another method, a batch size
of 0 or a misspelled ``--skip`` is a one-line error before any model loads; a model that fails to
load keeps its cause; ``metrics`` takes the run's lock and refuses a corrupt results.json."""
import json

import pytest
import torch

from vlmprobe.cli import main
from vlmprobe.errors import ModelLoadError

NO_MODEL = ["--model", "faulty:never-loaded", "--data", "/no/such/data", "--out"]


@pytest.mark.parametrize("flags, owner", [
    (["--method", "zeroshot", "--answer-prefix", "paper"], "--method likelihood"),
    (["--method", "zeroshot", "--cot"], "--method generate"),
    (["--method", "generate", "--reduction", "mean"], "--method likelihood"),
    (["--method", "classifier", "--templates", "x.json"], "--method zeroshot"),
])
def test_an_option_of_another_method_is_an_error(tmp_path, capsys, flags, owner):
    assert main(["eval", *flags, *NO_MODEL, str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and owner in err and flags[1] in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, flag", [
    (["eval", "--method", "zeroshot", "--batch-size", "0"], "--batch-size"),
    (["eval", "--method", "zeroshot", "--workers", "-1"], "--workers"),
    (["eval", "--method", "zeroshot", "--limit", "0"], "--limit"),
    (["retrieval", "--batch-size", "-3"], "--batch-size"),
    (["probe", "--workers", "-2"], "--workers"),
])
def test_bad_counts_are_rejected_before_the_model_loads(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        main([*argv, *NO_MODEL, str(tmp_path / "run")])
    assert e.value.code == 2
    assert f"argument {flag}: expected" in capsys.readouterr().err


@pytest.fixture
def faulty_models():
    """A ``faulty:`` model prefix whose loader raises what the spec names (a real table entry)."""
    from vlmprobe.specs import MODEL_SPECS

    def load(spec, options):
        kind = spec.split(":", 1)[1]
        if kind == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        raise RuntimeError("size mismatch for weight: copying a param with shape [3] from [4]")

    MODEL_SPECS.register("faulty:", load, "test loader")
    yield
    MODEL_SPECS._entries.pop("faulty:")


def test_load_model_keeps_the_cause(faulty_models, digits_folder, tmp_path, capsys):
    import vlmprobe

    with pytest.raises(torch.OutOfMemoryError):  # not turned into "cannot load model"
        vlmprobe.load_model("faulty:oom")
    with pytest.raises(ModelLoadError, match=r"RuntimeError: size mismatch") as e:
        vlmprobe.load_model("faulty:bad")
    assert isinstance(e.value.__cause__, RuntimeError)
    argv = ["eval", "--method", "zeroshot", "--model", "faulty:bad", "--data", str(digits_folder), "--limit", "2",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "size mismatch" in err and err.rstrip().splitlines()[-1].startswith("vlmprobe eval:")


def test_demo_skip_rejects_unknown_names(tmp_path, capsys):
    assert main(["demo", "--skip", "shape,probe", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "--skip shape: no such measurement" in err and "shape_bias" in err
    assert not (tmp_path / "demo").exists()


def _tiny_run(path):
    """A finished two-image run directory written through the run-directory code."""
    import numpy as np

    from vlmprobe.runs import RunDir

    run = RunDir(path, {"command": "eval", "method": {"name": "zeroshot"}, "data": {"classnames": ["a", "b"]}}, 2)
    run.lock()
    run.open()
    run.append([{"id": "0", "index": 0, "image": "0.png", "label": 0, "prediction": 0, "skipped": False},
                {"id": "1", "index": 1, "image": "1.png", "label": 1, "prediction": 0, "skipped": False}],
               np.array([[2.0, 1.0], [1.5, 0.5]], dtype=np.float32))
    run.finalize_scores()
    run.write_results({"top1": 0.5})
    run.unlock()
    return run


def test_metrics_takes_the_run_lock_and_refuses_a_corrupt_results_file(tmp_path, capsys):
    from vlmprobe.runs import RunDir

    path = tmp_path / "run"
    _tiny_run(path)
    assert main(["metrics", str(path), "--no-plots"]) == 0
    assert "calibration" in json.loads((path / "results.json").read_text())
    holder = RunDir(path, {})
    holder.lock()  # an eval still writing this directory
    try:
        assert main(["metrics", str(path), "--no-plots"]) == 2
        assert "in use by another vlmprobe process" in capsys.readouterr().err
    finally:
        holder.unlock()
    (path / "results.json").write_text('{"top1": 0.5,')
    assert main(["metrics", str(path), "--no-plots"]) == 2
    assert "results.json: not valid JSON" in capsys.readouterr().err
    assert (path / "results.json").read_text() == '{"top1": 0.5,'  # not silently replaced


def test_no_progress_silences_every_bar(tiny_models, digits_folder, tmp_path, capfd):
    """``--no-progress`` also silences bars the command does not draw itself (transformers'
    checkpoint loading); any command takes it (``frequency``, ``toy build``, ``study``)."""
    argv = ["eval", "--method", "likelihood", "--model", f"hf:{tiny_models['llava']}", "--data", str(digits_folder),
            "--limit", "2", "--workers", "0", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert "it/s]" not in err and "Loading weights" not in err, err[-500:]
    from vlmprobe.cli import build_parser

    parser = build_parser()
    for command in (["frequency", "--corpus", "c", "--out", "o"], ["toy", "build"], ["study", "--out", "o"], ["demo"]):
        assert parser.parse_args([*command, "--no-progress"]).no_progress is True
