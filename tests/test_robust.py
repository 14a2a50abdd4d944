"""Supervised classifiers (timm / torchvision), CounterAnimal layout and protocols, ImageNet-X
factors, ImageNet-ReaL and `vlmprobe compare`, on tiny random-weight models and files built here
(plus the imagenet-x package's real annotation files when it is installed)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlmprobe.errors import ModelLoadError, VlmprobeError

from test_per_model_figure import drawn  # noqa: F401  (fixture)


def cli(*args):
    """``vlmprobe ARGS`` in this process (the console script's entry point; imports paid once)."""
    import contextlib
    import io

    from vlmprobe.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def tiny_timm(path: Path, num_classes: int = 1000, label_names=None) -> Path:
    """A shrunk timm ResNet (random weights, 32x32 input) saved in timm's hub layout."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    args = dict(num_classes=num_classes, layers=[1, 1, 1, 1], channels=[8, 8, 16, 16], stem_width=8)
    net = timm.create_model("resnet18", pretrained=False, pretrained_cfg_overlay=dict(
        input_size=(3, 32, 32), crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3), **args)
    save_for_hf(net.eval(), path, model_config={"label_names": label_names} if label_names else None, model_args=args)
    return path


@pytest.fixture(scope="module")
def timm_dir(tmp_path_factory):
    return tiny_timm(tmp_path_factory.mktemp("timm") / "in1k")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(4)]


# ---------------------------------------------------------------- the classifier model kind
def test_timm_local_dir_scores_are_its_logits_by_index_or_name(timm_dir, images):
    import timm

    from vlmprobe.models import load_model

    model = load_model(f"timm:local-dir:{timm_dir}")
    assert model.kind == "classifier" and model.num_outputs == 1000 and model.label_names is None
    ref = timm.create_model(f"local-dir:{timm_dir}", pretrained=True).eval()
    with torch.no_grad():
        logits = ref(torch.stack([model.preprocess(im) for im in images]))
    # polar bear = ice bear (WordNet lemma) = n02134084 = 296; "sunglasses" is two ImageNet classes -> max
    s = model.score(images, ["polar bear", "ice bear", "n02134084", 296, "tench", "sunglasses"])
    assert torch.allclose(s[:, 0], logits[:, 296], atol=1e-5)
    assert torch.equal(s[:, 0], s[:, 1]) and torch.equal(s[:, 0], s[:, 2]) and torch.equal(s[:, 0], s[:, 3])
    assert torch.allclose(s[:, 4], logits[:, 0], atol=1e-5)
    assert torch.allclose(s[:, 5], logits[:, [836, 837]].amax(1), atol=1e-5)
    with pytest.raises(VlmprobeError, match="'dragon' is not an ImageNet class"):
        model.score(images, ["dragon"])
    feats = model.features(images)
    assert set(feats) == {"pre_logits", *model.blocks} and feats["pre_logits"].shape == (4, 16)
    with torch.no_grad():
        pre = ref.forward_head(ref.forward_features(torch.stack([model.preprocess(im) for im in images])),
                               pre_logits=True)
    assert torch.allclose(feats["pre_logits"], pre, atol=1e-5)
    assert set(model.features(images, layers="pre_logits")) == {"pre_logits"}
    with pytest.raises(VlmprobeError, match="no module 'nope'"):
        model.features(images, layers=["nope"])


def test_own_label_names_and_torchvision_file_weights(tmp_path, images):
    import torchvision

    from vlmprobe.models import load_model
    from vlmprobe.models.classifier import save_label_names

    own = load_model(f"timm:local-dir:{tiny_timm(tmp_path / 'own', 3, ['cat', 'dog', 'cow'])}")
    assert own.label_names == ["cat", "dog", "cow"]
    assert torch.equal(own.score(images, ["cow", "Cat"]), own.logits(images)[:, [2, 0]])
    with pytest.raises(VlmprobeError, match="'tench' is not one of"):
        own.score(images, ["tench"])
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "tv.pth")
    save_label_names(tmp_path, ["a", "b", "c"])
    tv = load_model(f"torchvision:mobilenet_v3_small@{tmp_path / 'tv.pth'}")
    with torch.no_grad():
        ref = net(torch.stack([tv.preprocess(im) for im in images]))
    assert torch.allclose(tv.score(images, ["c", "a"]), ref[:, [2, 0]], atol=1e-5)
    assert tv.blocks[0] == "features.0" and "features.3" in tv.features(images, layers=["features.3"])
    assert tv.describe()["weights"] == str(tmp_path / "tv.pth")
    rnd = load_model("torchvision:mobilenet_v3_small@random", dtype="auto")  # random only when asked
    assert rnd.describe()["weights"] == "random" and rnd.describe()["dtype"] == "float32"  # what auto chose
    with pytest.raises(ModelLoadError, match="has no weights 'NOPE'"):
        load_model("torchvision:mobilenet_v3_small@NOPE")
    with pytest.raises(ModelLoadError, match="timm has no model"):
        load_model("timm:not_a_model")


# ---------------------------------------------------------------- CounterAnimal layout
def write_counteranimal(root: Path, classes=("296 ice bear", "1 goldfish"), n: int = 3) -> Path:
    rng = np.random.default_rng(1)
    for folder in classes:
        for sub in ("common-snow", "counter-grass"):
            d = root / folder / sub
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_counteranimal_layout_labels_groups_backgrounds(tmp_path):
    from vlmprobe.data import load_dataset

    ds = load_dataset(f"counteranimal:{write_counteranimal(tmp_path / 'ca')}")
    assert len(ds) == 12 and len(ds.classnames) == 998  # 1-vs-1000 label space (duplicate names merged)
    bear = [s for s in ds.samples if s.meta["class_folder"] == "296 ice bear"]
    assert {ds.classnames[s.label] for s in bear} == {"polar bear"} and bear[0].label == 296
    assert sorted({(s.meta["group"], s.meta["background"]) for s in ds.samples}) == [("common", "snow"),
                                                                                    ("counter", "grass")]


@pytest.mark.parametrize("folders,message", [
    (["296 ice bear/common-snow"], "no counter-<background> subfolder"),
    (["296 ice bear/snow", "296 ice bear/counter-grass"], "no common-<background> subfolder"),
    (["5 dragon/common-a", "5 dragon/counter-b"], "'dragon' is not ImageNet class 5"),
    (["1 ice bear/common-a", "1 ice bear/counter-b"], "it names ImageNet class 296"),
    (["icebear/common-a"], "must be '<ImageNet index> <class name>'"),
])
def test_counteranimal_bad_layouts_are_one_line_errors(tmp_path, folders, message):
    for f in folders:
        (tmp_path / "ca" / f).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "ca" / f / "x.png")
    r = cli("eval", "--model", "timm:x", "--data", f"counteranimal:{tmp_path / 'ca'}", "--method", "classifier",
            "--out", tmp_path / "run")
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_classifier_on_counteranimal_1vs1000_and_1vs20_and_compare(tmp_path, timm_dir):
    data = write_counteranimal(tmp_path / "ca", ("296 ice bear", "1 goldfish", "0 tench"), n=2)
    base = ["--model", f"timm:local-dir:{timm_dir}", "--data", f"counteranimal:{data}", "--method", "classifier",
            "--workers", "0", "--no-progress", "--groups", "group"]
    r = cli("eval", *base, "--out", tmp_path / "all")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "all" / "results.json").read_text())
    ca = res["counteranimal"]
    assert ca["n"] == {"common": 6, "counter": 6} and set(ca["per_class"]) == {"polar bear", "goldfish", "tench"}
    assert ca["drop"] == pytest.approx(100 * (ca["common"] - ca["counter"]))
    assert set(ca["per_background"]) == {"common-snow", "counter-grass"}
    # 1-vs-k: confusers computed from the 1-vs-1000 run; classes outside score -inf; stored in config
    r = cli("eval", *base, "--label-space", f"{tmp_path / 'all'}@20", "--out", tmp_path / "k20")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "k20" / "config.json").read_text())
    table = cfg["method"]["label_space"]["confusers"]
    assert set(table) == {"polar bear", "goldfish", "tench"} and all(len(v) == 20 for v in table.values())
    scores = np.load(tmp_path / "k20" / "scores.npy")
    recs = [json.loads(x) for x in (tmp_path / "k20" / "samples.jsonl").read_text().splitlines()]
    names = cfg["data"]["classnames"]
    for rec, row in zip(recs, scores):
        allowed = {rec["label"], *(names.index(n) for n in table[rec["label_name"]])}
        assert set(np.flatnonzero(np.isfinite(row))) == allowed and rec["prediction"] in allowed
    # a JSON table of confusers (names), as released with the paper
    (tmp_path / "conf.json").write_text(json.dumps({"polar bear": ["brown bear"], "goldfish": [0], "tench": [1]}))
    r = cli("eval", *base, "--label-space", tmp_path / "conf.json", "--out", tmp_path / "k1")
    assert r.returncode == 0, r.stderr
    assert all(np.isfinite(np.load(tmp_path / "k1" / "scores.npy")).sum(1) == 2)
    r = cli("compare", tmp_path / "all", tmp_path / "k20", "--groups", "group", "--out", tmp_path / "cmp.json")
    assert r.returncode == 0, r.stderr
    assert "| model" in r.stdout and "1-vs-k" in r.stdout and "drop (points)" in r.stdout
    rows = json.loads((tmp_path / "cmp.json").read_text())["groups"]
    assert rows[0]["common"] == pytest.approx(ca["common"]) and rows[0]["drop"] == pytest.approx(ca["drop"])


def test_confusers_from_run_rank_by_mean_probability(tmp_path):
    from vlmprobe.classify.candidates import confusers_from_run

    names = ["a", "b", "c", "d"]
    (tmp_path / "config.json").write_text(json.dumps({"data": {"classnames": names}}))
    recs = [{"id": str(i), "image": f"{i}.png", "label": y, "prediction": y} for i, y in enumerate([0, 0, 1])]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    np.save(tmp_path / "scores.npy", np.array([[5, 1, 3, 0], [5, 0, 4, 1], [0, 5, 0, 0]], dtype=np.float32))
    table = confusers_from_run(tmp_path, names, 2)
    assert table[0] == [2, 1]  # c is a's most probable other class, then b
    assert table[1] == [0, 2]  # ties (a, c, d equal) go to the lower index
    with pytest.raises(VlmprobeError, match="differs from the dataset"):
        confusers_from_run(tmp_path, names[:3], 2)


# ---------------------------------------------------------------- ImageNet-X and ReaL
def _factor_row(i: int, **on) -> dict:
    from vlmprobe.data.imagenet_x import FACTORS, val_file_name

    return {"file_name": val_file_name(i), "class": 0, **{f: int(f in on) for f in FACTORS}}


def write_imagenet_run(path: Path, labels, preds) -> Path:
    """A run directory on ImageNet val file names (image i = ILSVRC2012_val_{i+1})."""
    from vlmprobe.data.imagenet_classes import imagenet_names
    from vlmprobe.data.imagenet_x import val_file_name

    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": {"spec": path.name}, "method": {"name": "zeroshot"},
                                                  "data": {"classnames": list(imagenet_names())}}))
    rows = [{"id": str(i), "image": f"/val/{val_file_name(i)}", "label": int(y), "prediction": p}
            for i, (y, p) in enumerate(zip(labels, preds))]
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_factor_accuracy_and_error_ratio_by_hand(tmp_path):
    from vlmprobe.metrics.factors import factor_accuracy

    rows = [_factor_row(0, pose=1), _factor_row(1, pose=1, color=1), _factor_row(2), _factor_row(3, color=1),
            _factor_row(99, pose=1)]  # image 99 is not in the run: unmatched rows are ignored
    ann = tmp_path / "factors.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # correct: 0 yes, 1 no, 2 yes, 3 yes, 4 (no annotation) no -> joined overall 3/4
    run = write_imagenet_run(tmp_path / "run", [1, 2, 3, 4, 5], [1, 7, 3, 4, None])
    r = cli("metrics", run, "--factors", ann, "--no-plots")
    assert r.returncode == 0, r.stderr
    res = json.loads((run / "results.json").read_text())["factors"]["variants"]["file"]
    assert res["n"] == 4 and res["accuracy"] == 0.75 and res["n_unmatched"] == 1
    assert res["factors"]["pose"] == {"n": 2, "accuracy": 0.5, "error_ratio": pytest.approx(2.0)}
    assert res["factors"]["color"]["accuracy"] == 0.5 and res["factors"]["style"]["n"] == 0
    assert factor_accuracy([True, False], [[1], [0]], ["x"])["factors"]["x"]["error_ratio"] == 0.0
    # a run that is not on ImageNet val: one clear line
    other = tmp_path / "other"
    other.mkdir()
    (other / "samples.jsonl").write_text(json.dumps({"id": "a", "image": "digits/a.png", "label": 0,
                                                     "label_name": "zero", "prediction": 0}) + "\n")
    r = cli("metrics", other, "--factors", ann, "--no-plots")
    assert r.returncode == 2 and "none of the 1 image file names" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_real_accuracy_excludes_empty_sets_and_maps_merged_names(tmp_path):
    from vlmprobe.data.imagenet_classes import imagenet_names

    names = list(imagenet_names())
    real = [[1], [2, 3], [], [836], [5]]
    (tmp_path / "real.json").write_text(json.dumps(real))
    run = write_imagenet_run(tmp_path / "run", [1, 2, 9, 836, 5], [1, 3, 9, 837, 6])
    r = cli("metrics", run, "--real-labels", tmp_path / "real.json", "--no-plots")
    assert r.returncode == 0, r.stderr
    res = json.loads((run / "results.json").read_text())["real"]
    assert res == {"accuracy": 0.5, "n": 4, "n_excluded_no_label": 1, "source": str(tmp_path / "real.json"),
                   "n_unmatched": 0}
    # 837 ("sunglasses" #2) is not the ReaL label 836 above; with merged duplicate names the one
    # "sunglasses" class stands for 836 and 837 (either is a hit)
    merged = [n for i, n in enumerate(names) if i not in (837, 744)]  # 998 unique names
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["classnames"] = merged
    (run / "config.json").write_text(json.dumps(cfg))
    sung = merged.index("sunglasses")
    rows = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    rows[3].update(label=sung, prediction=sung)
    (run / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    from vlmprobe.metrics.factors import run_real_results
    from vlmprobe.metrics.rundata import load_run

    assert run_real_results(load_run(run), str(tmp_path / "real.json"))["accuracy"] == 0.75


def test_compare_factor_table_and_probit_plot(tmp_path, drawn):
    """`compare RUN... --factors FILE --plot`: the table, and one probit panel per factor with one
    point per run at (overall accuracy, factor accuracy) as the --out rows say (Tu et al.'s figure,
    drawn by model_scatter: y = x, Huber line, Spearman and R²)."""
    from test_per_model_figure import probit_shown

    rng = np.random.default_rng(0)
    rows = [_factor_row(i, **({"pose": 1} if i % 2 else {"texture": 1})) for i in range(40)]
    ann = tmp_path / "f.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = []
    for k, p in enumerate([0.5, 0.7, 0.9]):
        labels = np.zeros(40, dtype=int)
        runs.append(write_imagenet_run(tmp_path / f"m{k}", labels, [0 if rng.random() < p else 1 for _ in labels]))
    r = cli("compare", *runs, "--factors", ann, "--plot", tmp_path / "fig.png", "--out", tmp_path / "f.json")
    assert r.returncode == 0, r.stderr
    assert "error ratio" in r.stdout and "pose" in r.stdout
    assert Image.open(tmp_path / "fig.png").size[0] > 500
    rows = json.loads((tmp_path / "f.json").read_text())["factors"]["rows"]
    assert [d["title"] for d in drawn] == ["pose", "texture"]  # the factors with images
    for d in drawn:
        want = [(x["accuracy"], x["factors"][d["title"]]["accuracy"]) for x in rows]
        assert len({w[0] for w in want}) == 3
        np.testing.assert_allclose(d["xy"], probit_shown(want))
        assert [t for t in d["legend"] if "(zeroshot)" in t] == [f"m{k} (zeroshot)" for k in range(3)]
        assert any(t.startswith("Huber fit (Spearman ") for t in d["legend"]) and "y = x" in d["legend"]
    r = cli("compare", *runs, "--plot")
    assert r.returncode == 2 and "needs --factors" in r.stderr


def test_imagenet_x_package_files_join_all_val_names():
    """With the real imagenet-x annotations: every ReaL entry and every factor row is one of the
    50,000 val file names, and a 50,000-image run joins completely."""
    from vlmprobe.data.imagenet_x import (VAL_IMAGES, factor_sources, package_annotations, read_real_labels,
                                          val_file_name)
    from vlmprobe.metrics.factors import run_factor_results, run_real_results
    from vlmprobe.metrics.rundata import RunData

    if package_annotations() is None:
        pytest.skip("imagenet-x is not installed")
    stems = {Path(val_file_name(i)).stem for i in range(VAL_IMAGES)}
    real = read_real_labels(None)
    assert set(real) == stems
    sources = factor_sources("imagenet-x")
    for rows in sources.values():
        assert set(rows) <= stems and len(rows) > 45_000
    from vlmprobe.data.imagenet_classes import imagenet_names

    labels = np.array([(real[Path(val_file_name(i)).stem] or [0])[0] for i in range(VAL_IMAGES)])
    records = [{"image": val_file_name(i)} for i in range(VAL_IMAGES)]
    run = RunData(Path("val-run"), {}, list(imagenet_names()), records, labels, labels.copy(), None)
    res = run_real_results(run)
    assert res["n_unmatched"] == 0 and res["accuracy"] == 1.0
    assert res["n"] + res["n_excluded_no_label"] == VAL_IMAGES
    fx = run_factor_results(run)["variants"]
    assert fx["top"]["n"] == len(sources["top"]) and fx["top"]["n_unmatched"] == VAL_IMAGES - len(sources["top"])


# ---------------------------------------------------------------- the miniature world's split
def test_toy_spurious_split_cnn_and_demo(tmp_path):
    """toy:spurious in CounterAnimal layout; toy:cnn (timm:local-dir with its own label names)
    falls from common to counter; the one command prints the common/counter table."""
    from vlmprobe.data import load_dataset
    from vlmprobe.models import load_model
    from vlmprobe.toy.spurious import counter_background

    ds = load_dataset("toy:spurious")
    assert ds.classnames[:2] == ["zero", "one"] and len(ds) == 900
    s = next(x for x in ds.samples if x.meta["group"] == "counter" and x.label == 3)
    assert s.meta["background"] == counter_background(3)
    cnn = load_model("toy:cnn")
    assert cnn.kind == "classifier" and cnn.label_names[3] == "three"
    r = cli("toy", "counteranimal", "--out", tmp_path / "demo", "--limit", "80",
            "--skip", "vlm-generate,vlm-likelihood,vlm-generate-1vs3,clip-zeroshot")
    assert r.returncode == 0, r.stderr
    rows = {x["model"]: x for x in json.loads((tmp_path / "demo" / "compare.json").read_text())["groups"]}
    assert set(rows) == {"toy:clip-spurious", "toy:cnn"}
    assert rows["toy:cnn"]["common"] > 0.9 and rows["toy:cnn"]["drop"] > 10
    assert rows["toy:clip-spurious"]["drop"] > 10


def test_label_space_for_clip_zeroshot_vlm_likelihood_and_generation(tmp_path, toy_world):
    """--label-space restricts every method to each image's class + its confusers."""
    from vlmprobe.classify.runner import evaluate, make_method
    from vlmprobe.data import load_dataset
    from vlmprobe.models import load_model
    from vlmprobe.toy import CLASSNAMES

    table = {c: [CLASSNAMES[(i + 1) % 10], CLASSNAMES[(i + 2) % 10]] for i, c in enumerate(CLASSNAMES)}
    (tmp_path / "conf.json").write_text(json.dumps(table))
    ds = load_dataset("toy:digits:test", limit=6)
    allowed = {s.id: {s.label, (s.label + 1) % 10, (s.label + 2) % 10} for s in ds.samples}
    clip, vlm = load_model("toy:clip"), load_model("toy:vlm")
    runs = {"zeroshot": (clip, {}), "likelihood": (vlm, {}), "generate": (vlm, {"closed_world": True})}
    for name, (model, opts) in runs.items():
        method = make_method(name, label_space=str(tmp_path / "conf.json"), **opts)
        evaluate(model, ds, method, tmp_path / name, batch_size=4, progress=False)
        recs = [json.loads(x) for x in (tmp_path / name / "samples.jsonl").read_text().splitlines()]
        cfg = json.loads((tmp_path / name / "config.json").read_text())
        assert cfg["method"]["label_space"]["confusers"] == table
        for i, rec in enumerate(recs):
            if name == "generate":
                assert set(rec["candidates"]) == allowed[rec["id"]]
                assert all(CLASSNAMES[c] in rec["prompt"] for c in rec["candidates"])
            else:
                row = np.load(tmp_path / name / "scores.npy")[i]
                assert set(np.flatnonzero(np.isfinite(row))) == allowed[rec["id"]]
                assert rec["prediction"] in allowed[rec["id"]]
    with pytest.raises(VlmprobeError, match="needs --closed-world"):
        make_method("generate", label_space=str(tmp_path / "conf.json"))
    with pytest.raises(VlmprobeError, match="give one"):
        make_method("likelihood", label_space=str(tmp_path / "conf.json"), num_candidates=3)
