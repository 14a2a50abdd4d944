"""The 200-class protocol of ImageNet-R/-A through every scoring method, and the shift block of
results.json, on tiny random-weight models and a synthetic ImageNet-R tree."""
import json

import numpy as np
import pytest

from vlmprobe import load_dataset
from vlmprobe.classify.runner import evaluate, make_method
from vlmprobe.data.imagenet_shifts import subset_synsets


@pytest.fixture(scope="module")
def imagenet_r(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("inr") / "imagenet-r"
    wnids, _ = subset_synsets("r")
    rng = np.random.default_rng(0)
    for j in (0, 57, 199):
        (root / wnids[j]).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(root / wnids[j] / f"art_{j}.jpg")
    return root


def _run(model, ds, method, out, **opts):
    evaluate(model, ds, make_method(method, **opts), out, batch_size=2, progress=False)
    scores = np.load(out / "scores.npy")
    recs = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    return scores, recs, json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("kind", ["classifier", "zeroshot", "likelihood"])
def test_r200_restricted_scores_equal_the_masked_full_matrix(tmp_path, imagenet_r, tiny_models, kind):
    """Default = the 200 classes (others -inf); --label-space all = every class; the restricted
    matrix equals the full one masked to the subset, and results report both accuracies."""
    from vlmprobe.models import load_model

    if kind == "classifier":
        from test_robust import tiny_timm

        spec = f"timm:local-dir:{tiny_timm(tmp_path / 'timm')}"
    else:
        spec = (f"openclip:local-dir:{tiny_models['openclip']}" if kind == "zeroshot"
                else f"hf:{tiny_models['llava']}")
    model = load_model(spec)
    ds = load_dataset(f"imagenet-r:{imagenet_r}")
    subset = ds.info["class_subset"]
    assert len(subset) == 200
    sub, recs, res = _run(model, ds, kind, tmp_path / "r200")
    full, recs_all, res_all = _run(model, ds, kind, tmp_path / "all", label_space="all")
    masked = np.full_like(full, -np.inf)
    masked[:, subset] = full[:, subset]
    np.testing.assert_allclose(sub, masked, rtol=1e-5, atol=1e-5)
    assert np.isfinite(full).all() and np.isfinite(sub).sum(1).tolist() == [200] * len(ds)
    assert [r["prediction"] for r in recs] == masked.argmax(1).tolist()
    shift = res["shift"]
    assert shift["subset_classes"] == 200 and shift["subset_accuracy"]["accuracy"] == res["top1"]
    assert res_all["shift"]["subset_accuracy"]["accuracy"] == res["top1"]  # same number from the full run
    expected_all = float(np.mean(full.argmax(1) == np.array([r["label"] for r in recs_all])))
    assert res_all["shift"]["all_classes_accuracy"]["accuracy"] == pytest.approx(expected_all)
    assert res_all["top1"] == pytest.approx(expected_all)
    if kind == "likelihood":  # only the 200 candidates were scored: no 1000-way number to report
        assert shift["all_classes_accuracy"] is None and len(recs[0]["candidates"]) == 200
    else:  # CLIP / classifier keep the unmasked argmax per record
        assert shift["all_classes_accuracy"]["accuracy"] == pytest.approx(expected_all)
    lo, hi = shift["subset_accuracy"]["ci95"]
    assert 0 <= lo <= shift["subset_accuracy"]["accuracy"] <= hi <= 1


def test_metrics_ood_every_score_over_several_ood_sets(tmp_path, imagenet_r, tiny_models):
    """`vlmprobe metrics ID --ood A --ood B`: AUROC/FPR@95 of MSP, MCM, energy, max-logit and
    entropy per OOD set (ImageNet-O and iNaturalist layouts) and their mean."""
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    from test_robust import cli
    from vlmprobe.data.imagenet import synsets
    from vlmprobe.metrics import ood
    from vlmprobe.models import load_model

    rng = np.random.default_rng(5)
    for path in (tmp_path / "o" / "imagenet-o" / synsets()[9] / "a.jpg", tmp_path / "o" / "imagenet-o" / synsets()[9] / "b.jpg",
                 tmp_path / "nat" / "iNaturalist" / "images" / "x.jpg", tmp_path / "nat" / "iNaturalist" / "images" / "y.jpg"):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(path)
    model = load_model(f"openclip:local-dir:{tiny_models['openclip']}")
    runs = {}
    for name, spec in (("id", f"imagenet-r:{imagenet_r}"), ("o", f"imagenet-o:{tmp_path / 'o'}"),
                       ("nat", f"inaturalist:{tmp_path / 'nat'}")):
        runs[name] = tmp_path / name / "run"
        evaluate(model, load_dataset(spec), make_method("zeroshot", label_space="all"), runs[name], progress=False)
    r = cli("metrics", runs["id"], "--ood", runs["o"], "--ood", runs["nat"], "--no-plots")
    assert r.returncode == 0, r.stderr
    res = json.loads((runs["id"] / "results.json").read_text())["ood"]
    assert set(res["sets"]) == {str(runs["o"]), str(runs["nat"])}
    id_s = np.load(runs["id"] / "scores.npy")
    for name, fn in ood.SCORES.items():
        aucs = []
        for key in ("o", "nat"):
            o_s = np.load(runs[key] / "scores.npy")
            ref = roc_auc_score(np.r_[np.ones(len(id_s)), np.zeros(len(o_s))], np.r_[fn(id_s), fn(o_s)])
            assert res["sets"][str(runs[key])][name]["auroc"] == pytest.approx(ref)
            aucs.append(ref)
        assert res["mean"][name]["auroc"] == pytest.approx(np.mean(aucs)) and res["mean"][name]["n_sets"] == 2
    assert "mcm" in res["mean"]


def test_compare_shift_table_effective_robustness_and_figure(tmp_path, imagenet_r, tiny_models):
    """`vlmprobe compare --shift ID:SHIFT ... --baseline ... --plot --out`: ID accuracy on the shift
    set's 200 classes, shift accuracy, Clopper-Pearson intervals, ER against the baseline line."""
    from PIL import Image
    from scipy.stats import linregress

    from test_robust import cli, tiny_timm
    from vlmprobe.metrics.robustness import clopper_pearson
    from vlmprobe.models import load_model

    # an ImageNet val-like ID set (WordNet-id folders): two R classes and one class outside R's 200
    from vlmprobe.data.imagenet import synsets
    wn, rset = synsets(), set(subset_synsets("r")[0])
    outside = next(w for w in wn if w not in rset)
    rng = np.random.default_rng(3)
    for w in [*list(subset_synsets("r")[0][:2]), outside]:
        for j in range(2):
            (tmp_path / "val" / w).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(tmp_path / "val" / w / f"{j}.JPEG")
    models = {"clip": (f"openclip:local-dir:{tiny_models['openclip']}", "zeroshot"),
              "cnn": (f"timm:local-dir:{tiny_timm(tmp_path / 'timm')}", "classifier")}
    pairs = []
    for name, (spec, method) in models.items():
        model = load_model(spec)
        for data, key in ((f"imagenet:{tmp_path / 'val'}", "id"), (f"imagenet-r:{imagenet_r}", "r")):
            evaluate(model, load_dataset(data), make_method(method), tmp_path / name / key, progress=False)
        pairs.append(f"{tmp_path / name / 'id'}:{tmp_path / name / 'r'}")
    (tmp_path / "ref.csv").write_text("model,id_accuracy,shift_accuracy\nA,60.0,20.0\nB,70.0,30.0\nC,80.0,45.0\n")
    r = cli("compare", *sum((["--shift", p] for p in pairs), []), "--reference", tmp_path / "ref.csv",
            "--plot", tmp_path / "shift.png", "--out", tmp_path / "cmp.json")
    assert r.returncode == 0, r.stderr
    assert "ER (points)" in r.stdout and (tmp_path / "shift.png").stat().st_size > 5000
    out = json.loads((tmp_path / "cmp.json").read_text())["shift"]
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    fit = linregress(logit(np.array([0.6, 0.7, 0.8])), logit(np.array([0.2, 0.3, 0.45])))
    assert out["fit"]["slope"] == pytest.approx(fit.slope) and out["fit"]["fit_over"] == "baseline"
    for row, name in zip(out["rows"], models):
        scores = np.load(tmp_path / name / "id" / "scores.npy")
        labels = np.array([json.loads(x)["label"] for x in (tmp_path / name / "id" / "samples.jsonl").read_text().splitlines()])
        subset = load_dataset(f"imagenet-r:{imagenet_r}").info["class_subset"]
        keep = np.isin(labels, subset)  # ID accuracy on R's classes only: 4 of the 6 images
        acc = np.mean(np.asarray(subset)[scores[keep][:, subset].argmax(1)] == labels[keep])
        assert row["id_n"] == 4 and row["id_accuracy"] == pytest.approx(acc)
        assert row["id_ci95"] == pytest.approx(list(clopper_pearson(int(round(acc * 4)), 4)))
        assert row["shift_n"] == 3 and row["protocol"] == "subset"
        p = np.clip([row["id_accuracy"]], 1e-4, 1 - 1e-4)
        pred = 1 / (1 + np.exp(-(fit.slope * logit(p) + fit.intercept)))
        assert row["effective_robustness"] == pytest.approx(row["shift_accuracy"] - pred[0])
    r = cli("compare", "--shift", "nope:also-nope")
    assert r.returncode == 2 and "not a run directory" in r.stderr


def test_objectnet_label_sets_and_imagenet_c_errors_in_results(tmp_path):
    """ObjectNet's ImageNet protocol (correct = prediction in the mapped set, 125-class subset)
    and ImageNet-C's per-corruption / per-severity accuracy and CE, in results.json's shift block."""
    from test_robust import tiny_timm
    from test_shift_data import _img, _objectnet
    from vlmprobe.data.imagenet import synsets
    from vlmprobe.metrics.corruption import ALEXNET_ERR
    from vlmprobe.models import load_model

    model = load_model(f"timm:local-dir:{tiny_timm(tmp_path / 'timm')}")
    _objectnet(tmp_path / "on")
    scores, recs, res = _run(model, load_dataset(f"objectnet:{tmp_path / 'on'}"), "classifier", tmp_path / "on-run")
    ok = [r["prediction"] in r["meta"]["label_set"] for r in recs]
    assert res["shift"]["label_set_accuracy"]["accuracy"] == pytest.approx(np.mean(ok))
    assert all(r["prediction"] in (0, 1, 419, 954) for r in recs)  # candidates: the mapped classes only
    w = synsets()
    for c in ("fog", "snow"):
        for s in (1, 2):
            for j in range(2):
                _img(tmp_path / "c" / c / str(s) / w[j] / f"ILSVRC2012_val_0000000{j + 1}.JPEG", j + s)
    _, recs, res = _run(model, load_dataset(f"imagenet-c:{tmp_path / 'c'}"), "classifier", tmp_path / "c-run")
    sh = res["shift"]
    correct = {(r["meta"]["corruption"], r["meta"]["severity"]): [] for r in recs}
    for r in recs:
        correct[r["meta"]["corruption"], r["meta"]["severity"]].append(r["prediction"] == r["label"])
    assert sh["per_corruption_severity"]["fog/2"]["accuracy"] == pytest.approx(np.mean(correct["fog", 2]))
    assert sh["per_severity"]["1"]["n"] == 4
    fog_err = 1 - np.mean(correct["fog", 1] + correct["fog", 2])
    fog = sh["corruption_error"]["per_corruption"]["fog"]  # severities 1-2 only: no CE, the partial figure
    assert fog["ce"] is None and fog["ce_partial"] == pytest.approx(fog_err / ALEXNET_ERR["fog"])
    assert sh["corruption_error"]["mce"] is None and len(sh["corruption_error"]["corruptions_missing"]) == 13


def test_eval_corrupt_flag_records_the_protocol(tmp_path, digits_folder, tiny_models):
    """`vlmprobe eval --corrupt NAME:SEVERITY` on a plain image folder: the corruption protocol in
    config.json, its accuracy in results.json's shift block."""
    from test_robust import cli

    r = cli("eval", "--model", f"openclip:local-dir:{tiny_models['openclip']}", "--data", digits_folder,
            "--limit", "6", "--method", "zeroshot", "--corrupt", "contrast:4", "--workers", "0", "--no-progress",
            "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"]["corrupt"] == {"name": "contrast", "severity": 4, "resize": 256, "crop": 224, "seed": 0,
                                      "implementation": "imagecorruptions"}
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["shift"]["per_corruption"]["contrast"]["n"] == 6 and res["shift"]["top1"]["accuracy"] == res["top1"]
    r = cli("eval", "--model", "x", "--data", digits_folder, "--method", "zeroshot", "--corrupt", "fog",
            "--out", tmp_path / "bad")
    assert r.returncode == 2 and "expected NAME:SEVERITY" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_r200_generation_matches_answers_within_the_subset(tmp_path, imagenet_r, tiny_models):
    """Open-world generation on ImageNet-R: the question stays open, the answer is matched against
    the 200 classes (prediction) and against all classes (prediction_all); --num-candidates needs
    --label-space all."""
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.models import load_model

    model = load_model(f"hf:{tiny_models['llava']}")
    ds = load_dataset(f"imagenet-r:{imagenet_r}")
    evaluate(model, ds, make_method("generate", max_new_tokens=4), tmp_path / "gen", progress=False)
    recs = [json.loads(x) for x in (tmp_path / "gen" / "samples.jsonl").read_text().splitlines()]
    subset = set(ds.info["class_subset"])
    assert all(r["prediction"] is None or r["prediction"] in subset for r in recs)
    assert all("prediction_all" in r and "candidates" not in r and "Choose" not in r["prompt"] for r in recs)
    res = json.loads((tmp_path / "gen" / "results.json").read_text())
    assert res["shift"]["subset_accuracy"]["n"] == 3 and res["shift"]["all_classes_accuracy"]["n"] == 3
    with pytest.raises(VlmprobeError, match="200-class subset"):
        make_method("likelihood", num_candidates=5).setup(model, ds)
