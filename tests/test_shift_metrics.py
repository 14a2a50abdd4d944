"""OOD scores, corruption errors, effective robustness and line fits against independent
numpy / scipy / scikit-learn computations."""
import numpy as np
import pytest

from vlmprobe.metrics import corruption as cm
from vlmprobe.metrics import ood
from vlmprobe.metrics import robustness as rb

from test_per_model_figure import drawn  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(0)
    return rng.normal(size=(50, 7)) * 3, rng.normal(size=(40, 7)) * 2


def test_energy_max_logit_entropy_equal_numpy(logits):
    s, _ = logits
    m = s.max(1, keepdims=True)
    lse = (m + np.log(np.exp(s - m).sum(1, keepdims=True)))[:, 0]
    p = np.exp(s - lse[:, None])
    assert np.allclose(ood.energy(s), lse)
    assert np.allclose(ood.energy(s, temperature=2.0), 2.0 * np.log(np.exp(s / 2.0).sum(1)))
    assert np.allclose(ood.max_logit(s), s.max(1))
    assert np.allclose(ood.neg_entropy(s), (p * np.log(p)).sum(1))
    masked = s.copy()
    masked[:, 3:] = -np.inf  # a restricted label space: classes not offered get probability 0
    q = np.exp(s[:, :3]) / np.exp(s[:, :3]).sum(1, keepdims=True)
    assert np.allclose(ood.neg_entropy(masked), (q * np.log(q)).sum(1))


def test_auroc_fpr95_equal_sklearn_for_every_score(logits):
    from sklearn.metrics import roc_auc_score, roc_curve

    a, b = logits
    for name, fn in ood.SCORES.items():
        x, y = fn(a), fn(b)
        truth = np.r_[np.ones(len(x)), np.zeros(len(y))]
        assert ood.auroc(x, y) == pytest.approx(roc_auc_score(truth, np.r_[x, y])), name
        fpr, tpr, _ = roc_curve(truth, np.r_[x, y])
        assert ood.fpr_at_tpr(x, y) == pytest.approx(fpr[np.searchsorted(tpr, 0.95, side="left")]), name


def test_mean_over_ood_sets():
    per = {"inat": {"msp": {"auroc": 0.9, "fpr@95tpr": 0.4, "n_id": 3}, "ood_run": "x"},
           "sun": {"msp": {"auroc": 0.7, "fpr@95tpr": 0.6, "n_id": 3}, "energy": {"auroc": 0.5, "fpr@95tpr": 1.0}}}
    m = ood.mean_over_sets(per)
    assert m["msp"] == {"auroc": pytest.approx(0.8), "fpr@95tpr": pytest.approx(0.5), "n_sets": 2}
    assert m["energy"]["n_sets"] == 1


def test_mce_equals_hand_computation_with_alexnet_constants():
    rng = np.random.default_rng(1)
    errors = {c: {s: float(rng.uniform(0.2, 0.9)) for s in range(1, 6)} for c in cm.BENCHMARK}
    res = cm.corruption_errors(errors, clean_error=0.25)
    alex = [0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572,
            0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500]  # augmix imagenet.py
    ce = [sum(errors[c].values()) / (5 * a) for c, a in zip(cm.BENCHMARK, alex)]
    rel = [sum(e - 0.25 for e in errors[c].values()) / (5 * (a - 0.435)) for c, a in zip(cm.BENCHMARK, alex)]
    assert res["mce"] == pytest.approx(sum(ce) / 15)
    assert res["relative_mce"] == pytest.approx(sum(rel) / 15)
    assert res["per_corruption"]["fog"]["ce"] == pytest.approx(ce[9])
    partial = cm.corruption_errors({"fog": errors["fog"]})
    assert partial["mce"] is None and partial["mce_partial"] == pytest.approx(ce[9])
    assert len(partial["corruptions_missing"]) == 14
    correct = np.array([1, 0, 0, 1, 1, 1], bool)
    by = cm.errors_by_corruption(correct, ["fog"] * 3 + ["snow"] * 3, [1, 1, 2, 1, 2, 2])
    assert by == {"fog": {1: 0.5, 2: 1.0}, "snow": {1: 0.0, 2: 0.0}}


def test_effective_robustness_equals_scipy_linregress_on_logits():
    from scipy.stats import linregress

    base_id = np.array([0.55, 0.62, 0.70, 0.76, 0.81])
    base_shift = np.array([0.20, 0.27, 0.35, 0.44, 0.50])
    models_id, models_shift = np.array([0.60, 0.74]), np.array([0.45, 0.30])
    res = rb.effective_robustness(models_id, models_shift, base_id, base_shift)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    fit = linregress(logit(base_id), logit(base_shift))
    pred = 1 / (1 + np.exp(-(fit.slope * logit(models_id) + fit.intercept)))
    assert res["slope"] == pytest.approx(fit.slope) and res["intercept"] == pytest.approx(fit.intercept)
    np.testing.assert_allclose(res["er"], models_shift - pred)
    assert res["er"][0] > 0 > res["er"][1] and res["n_fit"] == 5
    # a baseline point at accuracy 0 (infinite logit) is left out of the fit, not clipped into a lever
    res0 = rb.effective_robustness(models_id, models_shift, np.r_[base_id, 0.9], np.r_[base_shift, 0.0])
    assert res0["n_fit"] == 5 and res0["slope"] == pytest.approx(fit.slope)
    pr = rb.effective_robustness(models_id, models_shift, base_id, base_shift, kind="probit")
    from scipy.stats import norm

    f2 = linregress(norm.ppf(base_id), norm.ppf(base_shift))
    np.testing.assert_allclose(pr["predicted"], norm.cdf(f2.slope * norm.ppf(models_id) + f2.intercept))


def test_huber_line_spearman_r2_equal_sklearn_scipy():
    from scipy.stats import norm, spearmanr
    from sklearn.linear_model import HuberRegressor

    x = np.array([0.5, 0.6, 0.65, 0.7, 0.8, 0.9])
    y = np.array([0.3, 0.42, 0.2, 0.5, 0.6, 0.75])
    res = rb.line_fit(x, y)
    ref = HuberRegressor(epsilon=1.35, alpha=0.0).fit(norm.ppf(x)[:, None], norm.ppf(y))
    assert res["huber"][0] == pytest.approx(ref.coef_[0]) and res["huber"][1] == pytest.approx(ref.intercept_)
    assert res["spearman"] == pytest.approx(spearmanr(x, y).statistic)
    assert res["r2"] == pytest.approx(np.corrcoef(norm.ppf(x), norm.ppf(y))[0, 1] ** 2)
    # a run at 100% (or 0%) has no finite probit: left out of the line like the baseline fit, not
    # clipped to probit(1 - 1e-4) = 3.7 where it tilts the Huber line; Spearman keeps every point
    edge = rb.line_fit(np.append(x, 1.0), np.append(y, 1.0))
    assert edge["huber"] == pytest.approx(res["huber"]) and edge["r2"] == pytest.approx(res["r2"])
    assert (edge["n"], edge["n_fit"]) == (7, 6)
    assert edge["spearman"] == pytest.approx(spearmanr(np.append(x, 1.0), np.append(y, 1.0)).statistic)


def test_clopper_pearson_equals_scipy_exact_interval():
    from scipy.stats import binomtest

    for k, n in [(0, 10), (3, 10), (10, 10), (57, 200)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert rb.clopper_pearson(k, n) == pytest.approx((ci.low, ci.high))


def test_reference_csv_imagenet_testbed_layout(tmp_path):
    """imagenet-testbed's robustness_top1s.csv (model + one column per eval setting, percent, blank =
    not evaluated): the columns follow the shift run's spec; the custom layout keeps working."""
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.metrics.shifts import read_reference_csv

    header = ("model,greyscale,imagenet-a,imagenet-r,imagenet-sketch,imagenetv2-matched-frequency-format-val,"
              "imagenetv2-threshold-0.7-format-val,objectnet-1.0-beta,val,val-on-imagenet-a-classes,"
              "val-on-imagenet-r-classes,val-on-objectnet-classes")
    rows = ["efficientnet-l2-noisystudent,86.5,84.85,74.67,47.64,80.15,,,88.32,98.55,97.79,92.70",
            "resnet50,70.1,0.04,36.17,24.09,63.14,72.4,,76.13,24.16,84.25,",
            "alexnet,30.0,1.76,21.07,10.0,43.5,50.1,14.1,56.52,3.4,61.4,40.5"]
    (tmp_path / "robustness_top1s.csv").write_text("\n".join([header, *rows]) + "\n")
    pts, skipped = read_reference_csv(tmp_path / "robustness_top1s.csv", "imagenet-r:/data/imagenet-r")
    assert skipped == 0 and [p["model"] for p in pts] == ["efficientnet-l2-noisystudent", "resnet50", "alexnet"]
    assert pts[1]["id"] == pytest.approx(0.8425) and pts[1]["shift"] == pytest.approx(0.3617)  # val on R's classes
    pts, skipped = read_reference_csv(tmp_path / "robustness_top1s.csv", "objectnet:/data/objectnet-1.0")
    assert skipped == 2 and pts == [{"model": "alexnet", "id": pytest.approx(0.405), "shift": pytest.approx(0.141)}]
    pts, _ = read_reference_csv(tmp_path / "robustness_top1s.csv", "imagenet-v2:/d/imagenetv2-threshold-0.7-format-val")
    assert [p["shift"] for p in pts] == pytest.approx([0.724, 0.501]) and pts[0]["id"] == pytest.approx(0.7613)
    with pytest.raises(VlmprobeError, match="known for shift sets"):
        read_reference_csv(tmp_path / "robustness_top1s.csv", "imagenet-c:/data/c")
    (tmp_path / "own.csv").write_text("model,id_accuracy,shift_accuracy\nA,0.6,0.2\nB,0.7,0.3\n")
    assert read_reference_csv(tmp_path / "own.csv", "imagenet-r:/x")[0][1] == {"model": "B", "id": 0.7, "shift": 0.3}


def _shift_run(path, spec, labels, preds, subset=None, split=None):
    """A hand-written run directory (ImageNet class indices; ``subset``: the R/A protocol's classes)."""
    import json

    from vlmprobe.data.imagenet_classes import imagenet_names

    path.mkdir(parents=True)
    data = {"spec": spec, "classnames": list(imagenet_names()), "split": split,
            **({"class_subset": subset} if subset else {})}
    (path / "config.json").write_text(json.dumps({"model": {"spec": path.parent.name}, "method": {"name": "zeroshot"},
                                                  "data": data}))
    (path / "samples.jsonl").write_text("".join(json.dumps({"id": str(i), "image": f"{i}.jpg", "label": int(y),
                                                            "prediction": int(p)}) + "\n"
                                                for i, (y, p) in enumerate(zip(labels, preds))))
    return path


def test_compare_shift_reference_columns_follow_each_shift_set(tmp_path, drawn):
    """`compare --shift` pairs on ImageNet-V2 (threshold-0.7, chosen with --split under the variants'
    parent) and on ImageNet-R with imagenet-testbed's table: each shift set is fitted on its own
    columns (V2: val / imagenetv2-threshold-0.7; R: val on R's classes / imagenet-r), ER equal to
    scipy's linregress per set; a one-column CSV refuses mixed sets."""
    import json
    from pathlib import Path

    from scipy.stats import linregress

    from test_per_model_figure import probit_shown
    from test_robust import cli
    from vlmprobe.data.imagenet_shifts import subset_synsets

    r_idx = sorted(subset_synsets("r")[1])
    labels = np.repeat(r_idx[:5], 2)  # 10 images of R's classes
    specs = {"v2": "imagenet-v2:/d --split threshold-0.7", "r": "imagenet-r:/d/imagenet-r"}  # shift sets
    pairs = []
    for m, (n_id, n_v2, n_r) in {"A": (6, 4, 2), "B": (8, 5, 4)}.items():
        # first k correct; a wrong prediction is another of R's classes (the runs have no scores.npy, so an ID
        # prediction outside R's classes would be in another label space than the R run's: refused)
        wrong = lambda k: [y if i < k else r_idx[r_idx.index(y) + 1] for i, y in enumerate(labels)]  # noqa: E731
        _shift_run(tmp_path / m / "id", "imagenet:/d/val", labels, wrong(n_id))
        _shift_run(tmp_path / m / "v2", "imagenet-v2:/d", labels, wrong(n_v2), split="threshold-0.7")
        _shift_run(tmp_path / m / "r", specs["r"], labels, wrong(n_r), subset=r_idx)
        pairs += [f"{tmp_path / m / 'id'}:{tmp_path / m / k}" for k in ("v2", "r")]
    (tmp_path / "robustness_top1s.csv").write_text(
        "model,val,imagenetv2-threshold-0.7-format-val,val-on-imagenet-r-classes,imagenet-r,"
        "imagenetv2-matched-frequency-format-val\n"  # the last column: a decoy (the default V2 variant)
        "m1,56.5,43.5,61.4,21.1,10\nm2,76.1,63.1,84.3,36.2,15\nm3,88.3,80.2,97.8,74.7,20\nm4,70.0,,80.0,30.0,30\n")
    r = cli("compare", *sum((["--shift", p] for p in pairs), []), "--reference", tmp_path / "robustness_top1s.csv",
            "--out", tmp_path / "cmp.json", "--plot", tmp_path / "shift.png")
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "cmp.json").read_text())["shift"]
    logit = lambda p: np.log(np.asarray(p) / (1 - np.asarray(p)))  # noqa: E731
    fits = {"v2": linregress(logit([0.565, 0.761, 0.883]), logit([0.435, 0.631, 0.802])),
            "r": linregress(logit([0.614, 0.843, 0.978, 0.80]), logit([0.211, 0.362, 0.747, 0.30]))}
    assert len(out["rows"]) == 4
    for row in out["rows"]:
        key = Path(row["shift_run"]).name  # v2 or r
        pred = 1 / (1 + np.exp(-(fits[key].slope * logit(row["id_accuracy"]) + fits[key].intercept)))
        assert row["effective_robustness"] == pytest.approx(row["shift_accuracy"] - pred), key
    assert set(out["sets"]) == set(specs.values())
    for key, spec in specs.items():
        f = out["sets"][spec]["fit"]
        assert f["slope"] == pytest.approx(fits[key].slope) and f["n_baseline"] == (3 if key == "v2" else 4)
    assert out["fit"] is None  # no single line for two shift sets
    assert [d["title"] for d in drawn] == list(out["sets"])  # one panel per shift set, its own points and line
    for d in drawn:
        rows = [x for x in out["rows"] if x["shift_set"] == d["title"]]
        np.testing.assert_allclose(d["xy"], probit_shown([[x["id_accuracy"], x["shift_accuracy"]] for x in rows]))
        assert "baseline fit (logit)" in d["legend"]
    # without a reference or baseline pairs: no line, no ER (a line through the compared runs is not Taori et al.'s)
    r = cli("compare", *sum((["--shift", p] for p in pairs), []), "--out", tmp_path / "own.json")
    own = json.loads((tmp_path / "own.json").read_text())["shift"]
    assert all(own["sets"][spec]["fit"] is None for spec in specs.values())
    assert all(row["effective_robustness"] is None for row in own["rows"])
    # --baseline pairs join the line of their own shift set only
    for m, (n_id, n_v2) in {"C": (5, 3), "D": (9, 7)}.items():
        _shift_run(tmp_path / m / "id", "imagenet:/d/val", labels, [y if i < n_id else y + 1 for i, y in enumerate(labels)])
        _shift_run(tmp_path / m / "v2", "imagenet-v2:/d", labels, [y if i < n_v2 else y + 1 for i, y in enumerate(labels)],
                   split="threshold-0.7")
    base = sum((["--baseline", f"{tmp_path / m / 'id'}:{tmp_path / m / 'v2'}"] for m in "CD"), [])
    r = cli("compare", *sum((["--shift", p] for p in pairs), []), *base, "--out", tmp_path / "base.json")
    got = json.loads((tmp_path / "base.json").read_text())["shift"]["sets"]
    assert got[specs["v2"]]["fit"]["fit_over"] == "baseline" and got[specs["r"]]["fit"] is None
    assert got[specs["r"]]["no_fit"] == "n/a: no baseline"
    assert got[specs["v2"]]["fit"]["slope"] == pytest.approx(linregress(logit([0.5, 0.9]), logit([0.3, 0.7])).slope)
    r = cli("compare", "--shift", pairs[1], *base)
    assert r.returncode == 2 and f"its shift set {specs['v2']} is none of the --shift runs' ({specs['r']})" in r.stderr
    # a CSV with one shift_accuracy column cannot serve two shift sets
    (tmp_path / "own.csv").write_text("model,id_accuracy,shift_accuracy\nA,0.6,0.2\nB,0.7,0.3\n")
    r = cli("compare", *sum((["--shift", p] for p in pairs), []), "--reference", tmp_path / "own.csv")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert specs["v2"] in r.stderr and specs["r"] in r.stderr and "own.csv" in r.stderr


def _scored_run(path, scores, labels, meta=None, data=None):
    """A hand-written run directory with scores.npy (row i = line i of samples.jsonl)."""
    import json

    path.mkdir(parents=True)
    k = scores.shape[1]
    (path / "config.json").write_text(json.dumps({"model": {"spec": "hand"}, "method": {"name": "zeroshot"},
                                                  "data": {"classnames": [f"c{j}" for j in range(k)], **(data or {})}}))
    preds = np.where(np.isfinite(scores), scores, -np.inf).argmax(1)
    (path / "samples.jsonl").write_text("".join(
        json.dumps({"id": str(i), "image": f"{i}.jpg", "label": int(y), "prediction": int(p),
                    **({"meta": meta[i]} if meta else {})}) + "\n" for i, (y, p) in enumerate(zip(labels, preds))))
    np.save(path / "scores.npy", scores.astype(np.float32))
    return path


def test_metrics_ood_scores_from_stored_scores_equal_numpy_and_sklearn(tmp_path):
    """`vlmprobe metrics ID --ood OOD --logit-scale 50`: MSP, MCM, energy, max-logit and entropy
    computed in numpy from the two stored scores.npy (with -inf columns, as a restricted label space
    stores them), their AUROC / FPR@95 from scikit-learn, equal to results.json."""
    import json

    from sklearn.metrics import roc_auc_score, roc_curve

    from test_robust import cli

    rng = np.random.default_rng(7)
    id_s, ood_s = rng.normal(size=(30, 6)) * 4, rng.normal(size=(25, 6)) * 2
    id_s[:, 4:] = ood_s[:, 4:] = -np.inf
    id_s[np.arange(30), rng.integers(0, 4, 30)] += 3
    _scored_run(tmp_path / "id", id_s, rng.integers(0, 4, 30))
    _scored_run(tmp_path / "ood", ood_s, [-1] * 25)
    r = cli("metrics", tmp_path / "id", "--ood", tmp_path / "ood", "--logit-scale", "50", "--no-plots")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "id" / "results.json").read_text())["ood"]

    def numpy_scores(s):
        s = s.astype(np.float32).astype(np.float64)  # as stored
        m = s.max(1, keepdims=True)
        e = np.exp(s - m)
        p = e / e.sum(1, keepdims=True)
        q = np.exp(s / 50 - m / 50)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(p), 0.0)
        return {"msp": p.max(1), "mcm": (q / q.sum(1, keepdims=True)).max(1),
                "energy": m[:, 0] + np.log(e.sum(1)), "max_logit": m[:, 0], "entropy": plogp.sum(1)}

    a, b = numpy_scores(id_s), numpy_scores(ood_s)
    assert set(res) >= set(a)
    truth = np.r_[np.ones(30), np.zeros(25)]
    for name in a:
        x = np.r_[a[name], b[name]]
        assert res[name]["auroc"] == pytest.approx(roc_auc_score(truth, x)), name
        fpr, tpr, _ = roc_curve(truth, x)
        assert res[name]["fpr@95tpr"] == pytest.approx(fpr[np.searchsorted(tpr, 0.95, side="left")]), name
    assert 0.5 < res["max_logit"]["auroc"] < 1  # the ID scores carry the +3 margin: a real separation


def test_mce_of_a_synthetic_imagenet_c_run_equals_hand_computation(tmp_path):
    """An ImageNet-C run with all 15 corruptions x 5 severities (records written by hand):
    results.json's CE per corruption and mCE equal sum_s err / sum_s err_AlexNet with AlexNet's
    published errors typed in here (augmix imagenet.py), and relative mCE with --clean-run."""
    import json

    from test_robust import cli

    alex = dict(zip(cm.BENCHMARK, [0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360,
                                   0.866816, 0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500]))
    rng = np.random.default_rng(3)
    meta, labels, scores = [], [], []
    for c in cm.BENCHMARK:
        for s in range(1, 6):
            for _ in range(4):
                y = int(rng.integers(0, 3))
                row = rng.normal(size=3)
                row[y] += rng.uniform(-1, 3)  # correct or not, varying by cell
                meta.append({"corruption": c, "severity": s})
                labels.append(y)
                scores.append(row)
    scores = np.array(scores)
    run = _scored_run(tmp_path / "c", scores, labels, meta, {"format": "imagenet-c", "spec": "imagenet-c:/d"})
    clean = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0], [2.0, 0, 0]])
    _scored_run(tmp_path / "clean", clean, [0, 1, 2, 1])  # clean error 1/4
    r = cli("metrics", run, "--clean-run", tmp_path / "clean", "--no-plots")
    assert r.returncode == 0, r.stderr
    got = json.loads((run / "results.json").read_text())["shift"]["corruption_error"]
    wrong = scores.argmax(1) != np.array(labels)
    err = {c: [wrong[i:i + 4].mean() for i in range(15 * 20)[k * 20:(k + 1) * 20:4]] for k, c in enumerate(cm.BENCHMARK)}
    ce = {c: sum(err[c]) / (5 * alex[c]) for c in cm.BENCHMARK}
    rel = {c: sum(e - 0.25 for e in err[c]) / (5 * (alex[c] - 0.435)) for c in cm.BENCHMARK}
    for c in cm.BENCHMARK:
        assert got["per_corruption"][c]["ce"] == pytest.approx(ce[c]), c
    assert got["mce"] == pytest.approx(np.mean(list(ce.values())))
    assert got["clean_error"] == 0.25 and got["relative_mce"] == pytest.approx(np.mean(list(rel.values())))
    assert 0 < np.mean(wrong) < 1
    r = cli("metrics", tmp_path / "clean", "--clean-run", tmp_path / "clean", "--no-plots")
    assert r.returncode == 2 and "is not an ImageNet-C run" in r.stderr
