"""`vlmprobe eval --method zeroshot` end to end: both CLIP kinds, exact scores, resume after
SIGKILL, bad inputs (corrupt images counted, one-line errors)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import vlmprobe
from vlmprobe.errors import RunDirError


def vlmprobe_cli(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "vlmprobe", *map(str, args)], capture_output=True, text=True,
                          env=env, **kw)


@pytest.fixture(scope="module")
def openclip_model(tiny_models):
    return vlmprobe.load_model(f"openclip:local-dir:{tiny_models['openclip']}")


@pytest.mark.parametrize("kind", ["openclip", "hfclip"])
def test_zeroshot_writes_run_directory(kind, tiny_models, digits_folder, tmp_path):
    spec = f"openclip:local-dir:{tiny_models['openclip']}" if kind == "openclip" else f"hfclip:{tiny_models['hfclip']}"
    model = vlmprobe.load_model(spec)
    data = vlmprobe.load_dataset(str(digits_folder))
    results = vlmprobe.evaluate(model, data, "zeroshot", tmp_path / "run", batch_size=8, progress=False)
    records = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    scores = np.load(tmp_path / "run" / "scores.npy")
    assert len(records) == 40 and scores.shape == (40, 10) and scores.dtype == np.float32
    assert [r["id"] for r in records] == [s.id for s in data.samples]
    assert all(r["prediction"] == int(np.argmax(s)) for r, s in zip(records, scores))
    acc = np.mean([r["prediction"] == r["label"] for r in records])
    assert results["top1"] == pytest.approx(acc)
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["model"]["spec"] == spec and config["environment"]["versions"]["torch"]
    assert config["seed"] == 0 and config["method"]["templates"] == ["a photo of a {}."]


def test_zeroshot_scores_equal_direct_open_clip(openclip_model, tiny_models, digits_folder, tmp_path):
    """Our scores == a direct open_clip computation (encode_image/encode_text, normalise, scale)."""
    import open_clip

    data = vlmprobe.load_dataset(str(digits_folder), limit=12)
    vlmprobe.evaluate(openclip_model, data, "zeroshot", tmp_path / "run", batch_size=5, progress=False)
    ours = np.load(tmp_path / "run" / "scores.npy")
    name = f"local-dir:{tiny_models['openclip']}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    tok = open_clip.get_tokenizer(name)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(data.load_image(i)) for i in range(len(data))]))
        txt = model.encode_text(tok([f"a photo of a {c}." for c in data.classnames]))
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        direct = (model.logit_scale.exp() * img @ txt.T).numpy()
    np.testing.assert_allclose(ours, direct, atol=1e-4, rtol=1e-4)


def test_template_ensemble_and_text_classifier_cache(openclip_model, digits_folder):
    data = vlmprobe.load_dataset(str(digits_folder))
    from vlmprobe.data import load_templates

    templates = load_templates("imagenet")
    w1 = openclip_model.text_classifier(data.classnames, templates)
    w2 = openclip_model.text_classifier(data.classnames, templates)  # from the disk cache
    assert w1.shape == (10, openclip_model.encode_texts(["x"]).shape[1])
    torch.testing.assert_close(w1, w2)
    torch.testing.assert_close(w1.norm(dim=-1), torch.ones(10))
    w_single = openclip_model.text_classifier(data.classnames, ["a photo of a {}."])
    assert not torch.allclose(w1, w_single)


def test_corrupt_and_missing_images_are_counted(openclip_model, digits_folder, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(digits_folder, root)
    (root / "three" / "zz_corrupt.png").write_bytes(b"not an image at all")
    png = next((root / "one").glob("*.png"))
    (root / "one" / "zz_truncated.png").write_bytes(png.read_bytes()[:40])
    data = vlmprobe.load_dataset(str(root))
    results = vlmprobe.evaluate(openclip_model, data, "zeroshot", tmp_path / "run", batch_size=8, progress=False)
    records = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    skipped = [r for r in records if r.get("skipped")]
    assert len(records) == 42 and {os.path.basename(r["image"]) for r in skipped} == {"zz_corrupt.png",
                                                                                      "zz_truncated.png"}
    assert all(r["error"] and r["prediction"] is None for r in skipped)
    scores = np.load(tmp_path / "run" / "scores.npy")
    assert np.isnan(scores[[i for i, r in enumerate(records) if r.get("skipped")]]).all()
    assert results["counts"]["skipped"] == 2
    assert {os.path.basename(s["image"]) for s in results["skipped_images"]} == {"zz_corrupt.png", "zz_truncated.png"}
    from vlmprobe.commands.eval import top1_line  # what `vlmprobe eval` prints

    correct = round(results["top1"] * 40)
    assert top1_line(results) == (f"top-1 {results['top1']:.4f} (40 images scored, 2 skipped, 0 non-finite; "
                                  f"top-1 over all 42 images {correct / 42:.4f})")


def test_a_transform_bug_fails_the_run_instead_of_skipping(openclip_model, digits_folder, tmp_path, monkeypatch):
    """Only unreadable/undecodable images are skips: an exception from the transform is a bug and
    reaches the caller with its own type (the run is not turned into 40 "skipped images")."""
    def broken(image):
        raise TypeError("preprocess got an unexpected argument")

    monkeypatch.setattr(openclip_model, "preprocess", broken)
    data = vlmprobe.load_dataset(str(digits_folder), limit=4)
    with pytest.raises(TypeError, match="unexpected argument"):
        vlmprobe.evaluate(openclip_model, data, "zeroshot", tmp_path / "run", batch_size=2, progress=False)


def test_different_config_is_refused(openclip_model, digits_folder, tmp_path):
    data = vlmprobe.load_dataset(str(digits_folder), limit=4)
    vlmprobe.evaluate(openclip_model, data, "zeroshot", tmp_path / "run", progress=False)
    from vlmprobe.classify.zeroshot import Method

    with pytest.raises(RunDirError, match="different config.*method"):
        vlmprobe.evaluate(openclip_model, data, Method(templates="imagenet"), tmp_path / "run", progress=False)


def _run_files(path):
    return {name: open(path / name, "rb").read() for name in ("samples.jsonl", "results.json")}


def test_resume_after_sigkill_equals_uninterrupted(tiny_models, digits_folder, tmp_path):
    spec = f"openclip:local-dir:{tiny_models['openclip']}"
    common = ["eval", "--model", spec, "--data", digits_folder, "--method", "zeroshot", "--batch-size", "1",
              "--workers", "0", "--no-progress"]
    from vlmprobe.cli import main as cli_main  # the reference and the resume in-process (~5 s of start-up each)

    assert cli_main([*map(str, common), "--out", str(tmp_path / "full")]) == 0
    killed = tmp_path / "killed"
    for attempt, after in enumerate([3, 17]):  # kill twice, at different points
        proc = subprocess.Popen([sys.executable, "-m", "vlmprobe", *map(str, common), "--out", str(killed)],
                                env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        samples = killed / "samples.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if samples.exists() and samples.read_bytes().count(b"\n") >= after:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (killed / "results.json").exists()
    done = samples.read_bytes().count(b"\n")
    assert 0 < done < 40
    assert cli_main([*map(str, common), "--out", str(killed)]) == 0
    assert _run_files(killed) == _run_files(tmp_path / "full")
    np.testing.assert_array_equal(np.load(killed / "scores.npy"), np.load(tmp_path / "full" / "scores.npy"))
    assert not (killed / "scores.partial").exists()


def test_cli_errors_are_one_line(tmp_path, digits_folder, tiny_models, capsys):
    """The last case in a real process (everything the libraries print on stderr counts); the
    others through the same ``main`` in this process."""
    from vlmprobe.cli import main

    cases = [
        (["--model", "nosuch:thing"], "unknown model spec"),
        (["--model", f"hfclip:{tmp_path}/missing"], "does not exist"),
        (["--model", f"openclip:local-dir:{tiny_models['openclip']}", "--data", tmp_path / "nope"], "does not exist"),
        (["--model", f"hf:{tiny_models['llava']}"], "needs a CLIP model"),
    ]
    for i, (extra, message) in enumerate(cases):
        args = ["eval", "--data", digits_folder, "--method", "zeroshot", "--out", tmp_path / "o", *extra]
        if i == len(cases) - 1:
            r = vlmprobe_cli(*args)
            code, stderr = r.returncode, r.stderr
        else:
            code, stderr = main(list(map(str, args))), capsys.readouterr().err
        assert code == 2, (extra, stderr)
        lines = [line for line in stderr.strip().splitlines() if "error" in line]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in stderr, stderr


def test_help_explains_every_option():
    r = vlmprobe_cli("eval", "--help")
    assert r.returncode == 0
    for flag in ("--model", "--data", "--method", "--out", "--classes", "--templates", "--batch-size", "--limit",
                 "--seed", "--device", "--split"):
        assert flag in r.stdout
    assert vlmprobe_cli("--help").returncode == 0


def test_ood_flow_with_an_unlabeled_run(tiny_models, digits_folder, tmp_path):
    """ID run + an unlabeled OOD run (noise images scored against the ID classes), then
    `vlmprobe metrics ID --ood OOD`: AUROC/FPR95 for MSP and MCM, roc.png."""
    from PIL import Image

    from vlmprobe.cli import main

    rng = np.random.default_rng(0)
    (tmp_path / "noise").mkdir()
    for i in range(12):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "noise" / f"{i}.png")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(sorted(p.name for p in digits_folder.iterdir())))
    spec = f"openclip:local-dir:{tiny_models['openclip']}"
    common = ["eval", "--model", spec, "--method", "zeroshot", "--workers", "0", "--no-progress", "--classes", classes]
    cli = lambda *args: main(list(map(str, args)))  # noqa: E731  (in process: the same command, no re-import)
    assert cli(*common, "--data", digits_folder, "--out", tmp_path / "id") == 0
    assert cli(*common, "--data", tmp_path / "noise", "--unlabeled", "--out", tmp_path / "ood") == 0
    ood = json.load(open(tmp_path / "ood" / "results.json"))
    assert ood["unlabeled"] and ood["counts"]["n"] == 12 and sum(ood["prediction_counts"].values()) == 12
    records = [json.loads(line) for line in open(tmp_path / "ood" / "samples.jsonl")]
    assert all(rec["label"] is None and rec["label_name"] is None for rec in records)
    assert cli("metrics", tmp_path / "id", "--ood", tmp_path / "ood") == 0
    res = json.load(open(tmp_path / "id" / "results.json"))
    from scipy.special import softmax
    from sklearn.metrics import roc_auc_score

    id_scores, ood_scores = np.load(tmp_path / "id" / "scores.npy"), np.load(tmp_path / "ood" / "scores.npy")
    for score, temp in (("msp", 1.0), ("mcm", res["ood"]["mcm"].get("logit_scale", 1.0))):
        conf = [softmax(s.astype(np.float64) / temp, axis=1).max(1) for s in (id_scores, ood_scores)]
        expected = roc_auc_score([1] * len(conf[0]) + [0] * len(conf[1]), np.concatenate(conf))  # ID positive
        assert res["ood"][score]["auroc"] == pytest.approx(expected, abs=1e-6) and res["ood"][score]["n_ood"] == 12
    assert (tmp_path / "id" / "roc.png").exists()


@pytest.mark.parametrize("extra", [["--group-drop", "common,counter"], ["--groups", "group", "--group-drop", "common"]])
def test_group_drop_needs_groups_and_two_values(extra, capsys):
    """Refused in one line before any model or data is loaded."""
    from vlmprobe.cli import main

    assert main(["eval", "--model", "toy:clip", "--data", "/no/such/data", "--method", "zeroshot", "--out",
                 "/no/such/run", *extra]) == 2
    err = capsys.readouterr().err
    assert "expected two group values A,B of --groups FIELD" in err and len(err.splitlines()) == 1
