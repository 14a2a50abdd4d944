"""Probing: VLM hidden-state features (masks, one forward per batch), the feature cache (keys,
kill-resume), linear probes (vs scikit-learn, selection blind to test), the CLI and the notebook."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vlmprobe
from vlmprobe.cli import main as cli_main
from vlmprobe.data import load_dataset
from vlmprobe.models.features import pool_hidden, resolve_layers, vlm_features
from vlmprobe.probe import extract_features, fit_probe, probe_features, select_probe
from vlmprobe.probe.linear import Standardizer, accuracy, carve_validation, objective

REPO = Path(__file__).resolve().parents[1]
POOLS = ["last", "image-mean", "mean"]
COLORS = {"blue": (40, 40, 200), "green": (40, 200, 40), "red": (200, 40, 40)}


def _noise_image(seed, size=(32, 32)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def colors_dir(tmp_path_factory):
    """ImageFolder with train/val/test splits of noisy colour squares (3 classes)."""
    root = tmp_path_factory.mktemp("colors")
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 4), ("test", 5)):
        for name, rgb in COLORS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                arr = np.clip(np.array(rgb) + rng.normal(0, 70, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(root / split / name / f"{i}.png")
    (root / "test" / "red" / "broken.png").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def llava(tiny_models):
    return vlmprobe.load_model(f"hf:{tiny_models['llava']}")


@pytest.fixture(scope="module")
def llava_next(tiny_models):
    return vlmprobe.load_model(f"hf:{tiny_models['llava-next']}")


def _count_forwards(module):
    calls = []
    handle = module.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


# ---------------------------------------------------------------- features


def test_pool_hidden_formulas():
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    img = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1]])
    torch.testing.assert_close(pool_hidden(h, mask, img, "last"), torch.stack([h[0, 2], h[1, 3]]))
    torch.testing.assert_close(pool_hidden(h, mask, img, "mean"), torch.stack([h[0, :3].mean(0), h[1].mean(0)]))
    torch.testing.assert_close(pool_hidden(h, mask, img, "image-mean"),
                               torch.stack([h[0, 1:3].mean(0), h[1, [0, 3]].mean(0)]))
    # padding on the left is handled too, and padded positions (huge values) never leak in
    h2 = h.clone()
    h2[0, 3] = 1e6
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    assert pool_hidden(h2, left, img, "mean")[0].tolist() == h2[0, 1:].mean(0).tolist()
    assert pool_hidden(h2, mask, img, "mean")[0].tolist() == h[0, :3].mean(0).tolist()
    assert resolve_layers([-1, "lm.0", "vision", 2], 2) == ["lm.2", "lm.0", "vision"]
    with pytest.raises(vlmprobe.VlmprobeError, match="out of range"):
        resolve_layers([5], 2)


@pytest.mark.parametrize("which", ["llava", "llava_next"])
def test_features_are_padding_invariant(which, request):
    """An image's features alone == its features in a batch where it is padded (a longer prompt
    beside it; for LLaVA-NeXT also an image with more AnyRes tiles)."""
    vlm = request.getfixturevalue(which)
    a, b = _noise_image(1), _noise_image(2, size=(90, 40) if which == "llava_next" else (32, 32))
    long_q = "What type of object is in this photo? Choose one from zero, one, two, three, four, five."
    alone = vlm_features(vlm, [a], layers="all", pooling=POOLS)
    batch = vlm_features(vlm, [a, b], layers="all", pooling=POOLS,
                         prompt=["What type of object is in this photo?", long_q])
    enc = vlm.encode([a, b], [vlm.render("What type of object is in this photo?"), vlm.render(long_q)],
                     padding_side="right")
    assert (enc["attention_mask"][0] == 0).sum() > 0  # the first row really is padded
    assert set(alone) == {f"lm.{i}:{p}" for i in range(3) for p in POOLS} | {"vision", "projector"}
    for key in alone:
        torch.testing.assert_close(batch[key][:1], alone[key], atol=2e-5, rtol=1e-4, msg=key)
    assert not torch.allclose(alone["lm.2:last"], batch["lm.2:last"][1:])  # features do depend on the input


def test_one_forward_per_batch_whatever_the_layers(llava):
    images = [_noise_image(i) for i in range(3)]
    counts = {}
    for layers in ([-1], "all"):
        calls, h = _count_forwards(llava.model)
        lm_calls, h2 = _count_forwards(llava.model.model.language_model)
        try:
            out = vlm_features(llava, images, layers=layers, pooling=POOLS)
        finally:
            h.remove()
            h2.remove()
        counts[str(layers)] = (len(calls), len(lm_calls), len(out))
    assert counts == {"[-1]": (1, 1, 3), "all": (1, 1, 11)}


# ---------------------------------------------------------------- cache


def _extract(model, ds, cache, **kw):
    opts = dict(layers=[0, -1, "vision"], pooling=["last", "mean"], batch_size=4, cache_dir=cache, progress=False)
    return extract_features(model, ds, **{**opts, **kw})


def test_cache_reuse_and_invalidation(llava, tiny_models, colors_dir, tmp_path):
    cache = tmp_path / "cache"
    train = load_dataset(str(colors_dir), split="train", limit=6, seed=0)
    base = _extract(llava, train, cache)
    assert base.computed == 6 and base.names == ["lm.0:last", "lm.0:mean", "lm.2:last", "lm.2:mean", "vision"]
    again = _extract(llava, train, cache)
    assert again.computed == 0 and again.key == base.key
    np.testing.assert_array_equal(again.get("lm.2:last"), base.get("lm.2:last"))
    # the same features under an equivalent layer spelling are the same entry
    assert _extract(llava, train, cache, layers=["lm.0", 2, "vision"]).computed == 0

    # a copy of the model directory whose weights file is rewritten: a different fingerprint
    copy = tmp_path / "llava-copy"
    shutil.copytree(tiny_models["llava"], copy)
    other = vlmprobe.load_model(f"hf:{copy}")
    first_copy = _extract(other, train, cache)
    os.utime(copy / "model.safetensors", ns=(time.time_ns(), time.time_ns() + 10**9))
    touched = _extract(vlmprobe.load_model(f"hf:{copy}"), train, cache)
    variants = {
        "model": first_copy,
        "weights touched": touched,
        "prompt": _extract(llava, train, cache, prompt="What digit is this?"),
        "layers": _extract(llava, train, cache, layers=[1]),
        "pooling": _extract(llava, train, cache, pooling=["image-mean"]),
        "split": _extract(llava, load_dataset(str(colors_dir), split="val", limit=6, seed=0), cache),
        "limit seed": _extract(llava, load_dataset(str(colors_dir), split="train", limit=6, seed=1), cache),
        "storage": _extract(llava, train, cache, storage="float32"),
    }
    keys = {name: fs.key for name, fs in variants.items()}
    assert len(set(keys.values()) | {base.key}) == len(keys) + 1, keys
    assert all(fs.computed == 6 for fs in variants.values())
    assert variants["storage"].get("lm.2:last").dtype == np.float32 and base.get("lm.2:last").dtype == np.float16
    np.testing.assert_allclose(variants["storage"].get("lm.2:last"), base.get("lm.2:last"), rtol=2e-3, atol=2e-3)


KILL_SCRIPT = """
import sys, time, vlmprobe
from vlmprobe.data import load_dataset
from vlmprobe.probe import extract_features
model = vlmprobe.load_model(sys.argv[1])
features = model.features
def slow(*a, **k):
    time.sleep(0.4)
    return features(*a, **k)
model.features = slow
ds = load_dataset(sys.argv[2], split="train")
extract_features(model, ds, layers="all", pooling="last,mean", batch_size=3, chunk_batches=1,
                 cache_dir=sys.argv[3], progress=False)
"""


def test_extraction_resumes_after_kill(llava, tiny_models, colors_dir, tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, f"hf:{tiny_models['llava']}", str(colors_dir),
                             str(cache)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list(cache.glob("*/chunks/*.safetensors"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    entry = next(p for p in cache.iterdir() if p.is_dir())  # beside it: the entry's <key>.lock
    done = len(list(entry.glob("chunks/*.safetensors")))
    assert not (entry / "COMPLETE").exists() and 2 <= done < 10

    ds = load_dataset(str(colors_dir), split="train")
    calls, h = _count_forwards(llava.model)
    try:
        resumed = extract_features(llava, ds, layers="all", pooling="last,mean", batch_size=3, chunk_batches=1,
                                   cache_dir=cache, progress=False)
    finally:
        h.remove()
    assert resumed.path == entry and resumed.computed == len(ds) - 3 * done
    assert len(calls) == 10 - done  # only the missing batches ran: one forward each
    fresh = extract_features(llava, ds, layers="all", pooling="last,mean", batch_size=3, chunk_batches=1,
                             cache_dir=tmp_path / "fresh", progress=False)
    assert fresh.key == resumed.key
    for name in fresh.names:
        np.testing.assert_allclose(resumed.get(name), fresh.get(name), atol=1e-3, rtol=0, err_msg=name)
    assert not (entry / "chunks").exists()


# ---------------------------------------------------------------- probes


def _clusters(n, d=24, k=4, seed=0, sep=1.2):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, sep, (k, d))
    y = rng.integers(0, k, n)
    x = (means[y] + rng.normal(0, 1, (n, d)) * rng.uniform(0.5, 3, d) + 5).astype(np.float32)
    return x, y


def test_torch_probe_matches_sklearn():
    x, y = _clusters(900)
    xtr, ytr, xte, yte = x[:600], y[:600], x[600:], y[600:]
    for C in (0.01, 1.0):
        ours = fit_probe(xtr, ytr, 4, C, backend="torch", tol=1e-6)  # tight: compare the minimisers
        ref = fit_probe(xtr, ytr, 4, C, backend="sklearn", tol=1e-6)
        z = ours.scaler(torch.from_numpy(xtr))
        j_ours = float(objective(z, torch.from_numpy(ytr), ours.weight, ours.bias, C))
        j_ref = float(objective(z, torch.from_numpy(ytr), ref.weight, ref.bias, C))
        assert j_ours <= j_ref + 1e-5  # same objective, at least as well minimised
        lo, lr = ours.logits(xte), ref.logits(xte)
        assert abs(accuracy(lo, yte) - accuracy(lr, yte)) <= 0.005
        assert (lo.argmax(1) == lr.argmax(1)).float().mean() >= 0.99
        # logits agree up to the softmax's free per-row constant
        torch.testing.assert_close(lo - lo.mean(1, keepdim=True), lr - lr.mean(1, keepdim=True), atol=0.02, rtol=0.02)
    sel_t = select_probe(xtr[:400], ytr[:400], xtr[400:], ytr[400:], 4, backend="torch")
    sel_s = select_probe(xtr[:400], ytr[:400], xtr[400:], ytr[400:], 4, backend="sklearn")
    assert sel_t.C == sel_s.C
    # at most two of 200 validation images differ (near-ties under the strongest L2)
    assert max(abs(sel_t.val_curve[c] - sel_s.val_curve[c]) for c in sel_t.val_curve) <= 0.0101


def test_fp16_products_match_the_fp32_reference_path():
    x, y = _clusters(900, d=64, k=5, seed=1)
    ref = fit_probe(x[:600], y[:600], 5, 0.1, precision="fp32", tol=1e-6)
    fast = fit_probe(x[:600], y[:600], 5, 0.1, precision="fp16", tol=1e-6)
    assert fast.info["precision"] == "fp16" and ref.info["precision"] == "fp32"
    assert abs(fast.info["objective"] - ref.info["objective"]) <= 1e-4 * ref.info["objective"]
    lf, lr = fast.logits(x[600:]), ref.logits(x[600:])
    assert (lf.argmax(1) == lr.argmax(1)).float().mean() >= 0.99
    assert abs(accuracy(lf, y[600:]) - accuracy(lr, y[600:])) <= 0.005
    with pytest.raises(vlmprobe.VlmprobeError, match="precision"):
        fit_probe(x, y, 5, 0.1, precision="int8")
    with pytest.raises(vlmprobe.VlmprobeError, match="labels must lie"):
        fit_probe(x, y, 3, 0.1)


def test_standardization_and_carved_validation():
    x, y = _clusters(200)
    sc = Standardizer.fit(torch.from_numpy(x))
    z = sc(torch.from_numpy(x))
    torch.testing.assert_close(z.mean(0), torch.zeros(24), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(24), atol=1e-4, rtol=0)
    tr, va = carve_validation(y, 0.25, seed=3)
    assert not set(tr) & set(va) and len(tr) + len(va) == 200
    assert set(y[va]) == set(y)  # stratified: every class in validation
    assert np.array_equal(va, carve_validation(y, 0.25, seed=3)[1])
    assert not np.array_equal(va, carve_validation(y, 0.25, seed=4)[1])


@pytest.fixture(scope="module")
def color_features(llava, colors_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("feature_cache")
    kw = dict(layers="all", pooling=POOLS, batch_size=8, cache_dir=cache, progress=False)
    return {s: extract_features(llava, load_dataset(str(colors_dir), split=s), **kw) for s in ("train", "val", "test")}


def test_selection_never_touches_test(color_features, colors_dir):
    classes = load_dataset(str(colors_dir), split="test").classnames
    train, val, test = color_features["train"], color_features["val"], color_features["test"]
    assert int((~test.valid).sum()) == 1  # the broken test image is a skipped row
    names = ["lm.0:image-mean", "lm.2:last", "lm.2:mean", "vision"]
    kw = dict(names=names, Cs=(1e-3, 1e-1, 10.0), progress=False)
    real = probe_features(train, test, classes, val=val, **kw)
    rng = np.random.default_rng(0)
    shuffled = dataclasses.replace(test, labels=rng.permutation(test.labels))
    fake = probe_features(train, shuffled, classes, val=val, **kw)
    assert [r["C"] for r in real.layers] == [r["C"] for r in fake.layers]
    assert [r["val_curve"] for r in real.layers] == [r["val_curve"] for r in fake.layers]
    assert real.best["name"] == fake.best["name"]
    np.testing.assert_array_equal(real.best_logits, fake.best_logits)
    assert [r["test_accuracy"] for r in real.layers] != [r["test_accuracy"] for r in fake.layers]
    assert np.isnan(real.best_logits[~test.valid]).all()
    # carving validation from train instead: still seeded, still blind to test
    carved = probe_features(train, test, classes, **kw)
    assert carved.splits["val"] == 6 and carved.splits["train"] == 24
    assert [r["C"] for r in carved.layers] == [r["C"] for r in probe_features(train, shuffled, classes, **kw).layers]


def test_probe_command_end_to_end(tiny_models, colors_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["probe", "--model", f"hf:{tiny_models['llava']}", "--train", f"{colors_dir}@train",
            "--val", f"{colors_dir}@val", "--test", f"{colors_dir}@test", "--layers", "0,-1,vision",
            "--pool", "last,mean", "--Cs", "0.01,1", "--out", str(out), "--batch-size", "8", "--no-progress",
            "--reference", f"openclip:local-dir:{tiny_models['openclip']}"]
    assert cli_main(args) == 0
    assert "best" in capsys.readouterr().out
    layers = json.loads((out / "layers.json").read_text())
    assert [r["name"] for r in layers["layers"]] == ["lm.0:last", "lm.0:mean", "lm.2:last", "lm.2:mean", "vision"]
    best = max(layers["layers"], key=lambda r: r["val_accuracy"])
    assert layers["best"] == best["name"]
    assert layers["reference"]["probe"]["name"] == "embed" and layers["reference"]["zeroshot"]["top1"] is not None
    results = json.loads((out / "results.json").read_text())
    assert results["probe"]["feature"] == best["name"] and results["top1"] == pytest.approx(best["test_accuracy"])
    assert results["counts"]["skipped"] == 1
    scores = np.load(out / "scores.npy")
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert scores.shape == (16, 3) and len(records) == 16 and sum(bool(r.get("skipped")) for r in records) == 1
    assert all(r["prediction"] == int(np.argmax(s)) for r, s in zip(records, scores) if not r.get("skipped"))
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0 and torch.__version__.startswith(config["environment"]["versions"]["torch"])
    assert (out / "accuracy_vs_layer.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "reference" / "zeroshot" / "results.json").exists()
    # features are cached: a second run computes nothing; a different config in the same OUT is refused
    assert cli_main(args) == 0
    assert all(f["computed"] == 0 for f in json.loads((out / "layers.json").read_text())["features"].values() if f)
    changed = list(args)
    changed[changed.index("--Cs") + 1] = "0.5"
    assert cli_main(changed) == 2
    assert "different config" in capsys.readouterr().err


# ---------------------------------------------------------------- notebook


def test_notebook_runs(tiny_models, colors_dir, tmp_path, python3_kernel):
    """notebooks/probing.ipynb (committed without outputs) executes top to bottom in a python3
    kernel of this interpreter, on the tiny models (its parameters cell is replaced)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(REPO / "notebooks" / "probing.ipynb", as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    params[0].source = (f"VLM = 'hf:{tiny_models['llava']}'\nCLIP = 'openclip:local-dir:{tiny_models['openclip']}'\n"
                        f"TRAIN, VAL, TEST = '{colors_dir}@train', '{colors_dir}@val', '{colors_dir}@test'\n"
                        f"OUT = '{tmp_path / 'nb-run'}'\n")
    client = nbclient.NotebookClient(nb, kernel_name=python3_kernel, timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('kernel python:', sys.executable)"))
    client.execute()
    assert (tmp_path / "nb-run" / "accuracy_vs_layer.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "nb-run" / "clip-zeroshot" / "results.json").exists()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stdout")
    assert "best (chosen on validation): lm." in text and "CLIP zero-shot" in text
    assert f"kernel python: {sys.executable}" in text
