"""Metrics: cross-checks against scikit-learn / torchmetrics, hand-computed cases, edge cases,
and the `metrics` / `frequency` commands on a run directory written here."""
from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pytest

from vlmprobe.errors import VlmprobeError
from vlmprobe.metrics import accuracy as A
from vlmprobe.metrics import calibration as C
from vlmprobe.metrics import frequency as F
from vlmprobe.metrics import groups as G
from vlmprobe.metrics import margin as M
from vlmprobe.metrics import ood as O
from vlmprobe.metrics.correlation import pearson, spearman
from vlmprobe.metrics.report import results_from_run, summarize


@pytest.fixture(scope="module")
def rand():
    """Tie-free random problem: N=400 samples, K=12 classes, logits correlated with labels."""
    rng = np.random.default_rng(0)
    n, k = 400, 12
    labels = rng.integers(0, k, n)
    scores = rng.normal(size=(n, k)) * 2.0
    scores[np.arange(n), labels] += rng.normal(1.5, 1.0, n)
    preds = scores.argmax(1)
    preds[rng.random(n) < 0.1] = -1  # some "no prediction"
    return labels, preds, scores, k


# ---------------------------------------------------------------- cross-checks
def test_accuracy_family_matches_sklearn(rand):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, top_k_accuracy_score

    labels, preds, scores, k = rand
    assert A.top1_accuracy(labels, preds) == pytest.approx(accuracy_score(labels, preds))
    per_class, _ = A.per_class_accuracy(labels, preds, k)
    with warnings.catch_warnings():  # sklearn may warn about the -1 "class" in y_pred
        warnings.simplefilter("ignore")
        ref = balanced_accuracy_score(labels, preds)
    assert A.mean_per_class_recall(per_class) == pytest.approx(ref)
    for kk in (1, 3, 5):
        assert A.topk_accuracy(scores, labels, kk) == pytest.approx(
            top_k_accuracy_score(labels, scores, k=kk, labels=np.arange(k)))
    assert A.topk_accuracy(scores, labels, 1) == pytest.approx((scores.argmax(1) == labels).mean())


def test_auroc_and_roc_match_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 200)
    y = np.r_[np.ones(a.size), np.zeros(b.size)]
    assert O.auroc(a, b) == pytest.approx(roc_auc_score(y, np.r_[a, b]))
    fpr, tpr = O.roc_curve(a, b)
    assert np.trapezoid(tpr, fpr) == pytest.approx(O.auroc(a, b))
    # ties count one half, like sklearn
    a2, b2 = np.array([1.0, 1.0, 2.0]), np.array([1.0, 0.0])
    assert O.auroc(a2, b2) == pytest.approx(roc_auc_score([1, 1, 1, 0, 0], np.r_[a2, b2]))


@pytest.mark.parametrize("edges", ["right", "left"])
def test_ece_matches_torchmetrics(rand, edges):
    import torch
    from torchmetrics.classification import MulticlassCalibrationError

    labels, _, scores, k = rand
    probs = C.softmax(scores)
    ref = MulticlassCalibrationError(num_classes=k, n_bins=15, norm="l1")(torch.tensor(probs), torch.tensor(labels))
    assert C.expected_calibration_error(probs, labels, 15, edges) == pytest.approx(float(ref), abs=1e-6)


def test_nll_brier_against_torch(rand):
    import torch

    labels, _, scores, k = rand
    ref = torch.nn.functional.cross_entropy(torch.tensor(scores / 1.7), torch.tensor(labels))
    assert C.negative_log_likelihood(scores, labels, 1.7) == pytest.approx(float(ref))
    probs = C.softmax(scores)
    onehot = np.eye(k)[labels]
    assert C.brier_score(probs, labels) == pytest.approx(((probs - onehot) ** 2).sum(1).mean())


def test_correlations_match_scipy():
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=50), rng.normal(size=50)
    y[:10] = y[0]  # ties in y
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert pearson(x, y) == pytest.approx(pearsonr(x, y).statistic)
    assert spearman([1, 2, 3], [5, 5, 5]) is None  # constant side: undefined -> None
    assert spearman([1, np.nan, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)  # NaN pairs dropped


# ---------------------------------------------------------------- hand-computed
def test_cmm_hand_computed():
    scores = np.array([[3.0, 1.0, 0.0],    # y=0: 3-1 = 2
                       [0.0, 2.0, 2.5],    # y=0: 0-2.5 = -2.5
                       [1.0, 4.0, 2.0],    # y=1: 4-2 = 2
                       [0.0, 0.0, 1.0]])   # y=2: 1-0 = 1
    labels = np.array([0, 0, 1, 2])
    assert M.matching_margins(scores, labels) == pytest.approx([2.0, -2.5, 2.0, 1.0])
    cmm = M.class_matching_margin(scores, labels, 4)
    assert cmm[:3] == pytest.approx([-0.25, 2.0, 1.0]) and np.isnan(cmm[3])
    mean, chosen, used = A.worst_k(cmm, 2)
    assert (mean, list(chosen), used) == (pytest.approx(0.375), [0, 2], 2)
    assert list(M.pseudo_labels_from_scores(scores)) == [0, 2, 1, 2]


def test_worst_k_hand_computed_and_capped():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, -1, 0, 2])
    acc, cnt = A.per_class_accuracy(labels, preds, 4)   # class 3 absent
    assert acc[:3] == pytest.approx([0.5, 1.0, 0.5]) and np.isnan(acc[3])
    assert list(cnt) == [2, 2, 4, 0]
    assert A.worst_k(acc, 1)[:1] == (0.5,) and list(A.worst_k(acc, 2)[1]) == [0, 2]  # tie -> lower index
    mean, chosen, used = A.worst_k(acc, 10)  # k > classes present: capped at 3
    assert used == 3 and mean == pytest.approx(2 / 3)
    cm = A.confusion_matrix(labels, preds, 4)
    assert cm.shape == (4, 5) and cm[2, 4] == 1 and cm[0, 1] == 1 and cm.sum() == 8
    assert A.top_confusions(labels, preds, 4) == [(0, 1, 1), (2, 0, 1)]


def test_fpr95_hand_computed():
    id_s = np.arange(1, 21, dtype=float)        # 20 ID scores 1..20; 95% TPR -> threshold 2
    ood_s = np.array([0.5, 1.5, 2.0, 3.0, 25.0])  # >= 2: three of five
    assert O.fpr_at_tpr(id_s, ood_s) == pytest.approx(0.6)
    assert O.fpr_at_tpr(id_s, ood_s, tpr=1.0) == pytest.approx(0.8)
    assert O.ood_summary(id_s, ood_s)["fpr@95tpr"] == pytest.approx(0.6)


def test_msp_mcm():
    logits = np.array([[100.0 * 0.3, 100.0 * 0.1], [0.0, 0.0]])
    assert O.msp(logits)[1] == pytest.approx(0.5)
    e = np.exp(0.3 - 0.1)  # MCM: softmax(cos / 1) with cos = logits / 100
    assert O.mcm(logits, 100.0, 1.0)[0] == pytest.approx(e / (1 + e))


def test_group_accuracy_and_drop():
    correct = [1, 1, 1, 0, 1, 0, 0, 0, 1]
    values = ["common"] * 4 + ["counter"] * 4 + [None]
    rep = G.group_accuracy(correct, values, "background")
    assert rep["n_missing"] == 1
    assert rep["groups"]["common"] == {"n": 4, "accuracy": 0.75, "error_ratio": pytest.approx(0.25 / 0.5)}  # overall error 4/8
    assert rep["groups"]["counter"]["accuracy"] == 0.25
    assert G.group_drop(rep, "common", "counter")["points"] == pytest.approx(50.0)
    with pytest.raises(VlmprobeError, match="'rare' has no samples in field 'background'"):
        G.group_drop(rep, "common", "rare")
    with pytest.raises(VlmprobeError, match="missing from every sample"):
        G.group_accuracy([1, 0], [None, []], "background")
    multi = G.group_accuracy([1, 0, 0], [["pose", "dark"], ["dark"], []], "factors")  # list: in each group
    assert multi["n_missing"] == 1 and multi["groups"]["dark"] == {"n": 2, "accuracy": 0.5, "error_ratio": 1.0}
    assert multi["groups"]["pose"]["error_ratio"] == 0.0


# ---------------------------------------------------------------- calibration
def test_bin_edge_conventions():
    conf = np.array([0.0, 1 / 15, 0.5, 1.0])
    assert list(C.bin_index(conf, 15, "right")) == [0, 0, 7, 14]
    assert list(C.bin_index(conf, 15, "left")) == [0, 1, 7, 14]
    with pytest.raises(VlmprobeError):
        C.bin_index(conf, 15, "middle")


def test_temperature_scaling_reduces_nll():
    rng = np.random.default_rng(3)
    n, k = 2000, 10
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += 1.0
    over = logits * 6.0                             # overconfident by a factor of 6
    fit = np.arange(n) < n // 2
    res = C.temperature_scaling(over, labels, fit)
    assert 3.0 < res["temperature"] < 12.0 and not res["temperature_at_bound"]
    assert res["after"]["nll"] < res["before"]["nll"] - 0.5
    assert res["after"]["ece"] < res["before"]["ece"]
    assert res["after"]["accuracy"] == res["before"]["accuracy"]  # T > 0 keeps the argmax
    with pytest.raises(VlmprobeError, match="both sides"):
        C.temperature_scaling(over, labels, np.ones(n, bool))


# ---------------------------------------------------------------- summarize
def test_summarize_contents_and_json(rand):
    labels, preds, scores, k = rand
    names = [f"c{i}" for i in range(k)]
    out = summarize(labels, preds, scores, names, skipped=3, worst_k=(1, 5, 50))
    json.dumps(out, allow_nan=False)
    assert out == summarize(labels, preds, scores, names, skipped=3, worst_k=(1, 5, 50))  # deterministic
    assert out["counts"] == {"n": 400, "n_scored": 400, "skipped": 3, "no_prediction": int((preds < 0).sum()),
                             "num_classes": k, "classes_present": k, "duplicate_classnames": []}
    assert out["top1"] == pytest.approx(A.top1_accuracy(labels, preds))
    assert out["worst_k_accuracy"]["50"]["k_used"] == k
    assert out["worst_k_accuracy"]["50"]["value"] == pytest.approx(out["mean_per_class_recall"])
    wk = out["worst_k_accuracy"]["1"]
    assert wk["value"] == min(out["per_class_accuracy"].values()) and len(wk["classes"]) == 1
    assert set(out["cmm"]) >= {"mean", "per_class", "worst_k", "spearman_vs_accuracy"}
    assert out["cmm"]["spearman_vs_accuracy"] > 0.3  # larger margins, higher accuracy
    assert out["calibration"]["bins"] == 15 and out["calibration"]["bin_edges"] == "(l, u]"
    assert out["confusions"][0]["count"] >= out["confusions"][-1]["count"]


def test_summarize_without_scores_and_edge_cases():
    names = ["cat", "dog", "fox"]
    out = summarize([0, 0, 1], [0, -1, 2], None, names)
    assert out["top5"] is None and "cmm" not in out and "calibration" not in out
    assert out["per_class_accuracy"] == {"cat": 0.5, "dog": 0.0, "fox": None}  # fox: no samples
    assert out["counts"]["classes_present"] == 2 and out["counts"]["no_prediction"] == 1
    assert out["worst_k_accuracy"]["5"]["k_used"] == 2
    with pytest.raises(VlmprobeError, match="outside the class list"):
        summarize([0, 3], [0, 1], None, names)
    with pytest.raises(VlmprobeError, match="predictions"):
        summarize([0, 1], [0, 7], None, names)
    bad = np.zeros((2, 3))
    bad[1, 2] = np.nan
    with pytest.raises(VlmprobeError, match="NaN/\\+inf"):
        summarize([0, 1], [0, 1], bad, names)
    bad[1, 2] = np.inf
    with pytest.raises(VlmprobeError, match="NaN/\\+inf"):
        summarize([0, 1], [0, 1], bad, names)
    bad[1] = -np.inf
    with pytest.raises(VlmprobeError, match="row 1 has no finite score"):
        summarize([0, 1], [0, 1], bad, names)
    with pytest.raises(VlmprobeError, match="2 columns for 3 classes"):
        summarize([0, 1], [0, 1], np.zeros((2, 2)), names)
    with pytest.raises(VlmprobeError, match="worst-k"):
        summarize([0, 1], [0, 1], None, names, worst_k=(0,))
    with pytest.raises(VlmprobeError, match="'counter' has no samples"):
        summarize([0, 1], [0, 1], None, names, groups={"bg": ["common", "common"]}, group_drop=("common", "counter"))
    empty = summarize([], [], np.zeros((0, 3)), names)
    assert empty["top1"] is None and empty["worst_k_accuracy"]["1"]["value"] is None
    # top-5 with K < 5 is capped: every sample is within the top K
    assert summarize([0, 1], [1, 0], np.array([[0.0, 1, 2], [2.0, 1, 0]]), names)["top5"] == 1.0


def test_duplicate_names_stay_separate(reference_dir):
    names = json.loads((reference_dir / "imagenet_classes.json").read_text())
    rng = np.random.default_rng(4)
    labels = rng.integers(0, len(names), 3000)
    out = summarize(labels, labels, None, names)
    assert out["counts"]["duplicate_classnames"] == ["missile", "sunglasses"]
    assert len(out["per_class_accuracy"]) == 1000
    assert any(key.startswith("missile #") for key in out["per_class_accuracy"])


def test_pseudo_label_cmm():
    scores = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    out = summarize([0, 1, 1], [0, 1, 0], scores, ["a", "b"], pseudo_labels=[0, 1, 0])
    assert out["cmm"]["per_class"] == {"a": 2.0, "b": pytest.approx(0.0)}  # (1 + -1) / 2
    assert out["cmm_pseudo"]["per_class"] == {"a": 1.5, "b": 1.0}
    assert out["cmm_pseudo"]["agreement_with_labels"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------- frequency
def test_frequency_trie_equals_naive_and_rules():
    names = ["shark", "great white shark", "tiger shark", "missile", "missile", "cat", "jack-o'-lantern",
             "hot_dog", "a.b."]
    terms = F.build_terms(names, {"cat": ["kitty", "cats"]})
    texts = ["A Great  White\nShark, a shark; sharks. MISSILE cat kitty cats",
             "great white sharky tiger shark jack-o'-lantern hot dog xa.b. a.b.", "", "nothing here"]
    fast = F.count_mentions(texts, terms, len(names))
    assert all((a == b).all() for a, b in zip(fast, F.count_mentions_naive(texts, terms, len(names))))
    assert list(fast[0]) == [1, 1, 1, 1, 1, 3, 1, 1, 1]   # nested names counted once, duplicates both
    assert list(fast[1]) == [1, 1, 1, 1, 1, 1, 1, 1, 1]   # texts with a mention
    rng = np.random.default_rng(5)  # random texts drawn from the terms' words: still equal
    words = "great white shark tiger cat kitty missile a b the".split() + [",", ".", "\n"]
    texts = [" ".join(rng.choice(words, 40)) for _ in range(50)]
    fast, naive = F.count_mentions(texts, terms, len(names)), F.count_mentions_naive(texts, terms, len(names))
    assert (fast[0] == naive[0]).all() and (fast[1] == naive[1]).all() and fast[0].sum() > 50
    with pytest.raises(VlmprobeError, match="not one of the class names"):
        F.build_terms(names, {"dog": ["puppy"]})


def test_frequency_imagenet_names_trie_equals_naive(reference_dir):
    names = json.loads((reference_dir / "imagenet_classes.json").read_text())
    terms = F.build_terms(names)
    rng = np.random.default_rng(7)
    words = sorted({w for n in names for w in n.lower().split()})
    texts = [" ".join(rng.choice(words, 30)) + ". " + " and ".join(rng.choice(names, 3)) for _ in range(20)]
    fast, naive = F.count_mentions(texts, terms, len(names)), F.count_mentions_naive(texts, terms, len(names))
    assert (fast[0] == naive[0]).all() and (fast[1] == naive[1]).all() and fast[0].sum() >= 60


def test_read_corpus_jsonl_roles_and_text_records(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"conversations": [{"from": "human", "value": "<image>\ncat?"},
                                               {"from": "gpt", "value": "a dog"}]}) + "\n\n"
                 + json.dumps({"text": "plain cat"}) + "\n")
    assert list(F.read_corpus_texts(f, roles={"gpt"})) == ["a dog", "plain cat"]
    assert "cat?" in list(F.read_corpus_texts(f))[0] and "<image>" not in list(F.read_corpus_texts(f))[0]
    f.write_text(json.dumps({"id": 1}) + "\n")
    with pytest.raises(VlmprobeError, match="record 0 has neither"):
        list(F.read_corpus_texts(f))


def test_frequency_vs_accuracy():
    r = F.frequency_vs_accuracy([0, 9, 99, 999, 5], [0.1, 0.4, 0.6, 0.9, np.nan])
    assert r["n_classes"] == 4 and r["spearman"] == pytest.approx(1.0) and r["pearson_log"] > 0.99


# ---------------------------------------------------------------- run directories + commands
def _write_run(path, labels, preds, scores, names, method="zeroshot", meta=None, skip_rows=()):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"method": {"name": method}, "dataset": {"classnames": names}}))
    rows = []
    sc = np.array(scores, dtype=np.float32) if scores is not None else None
    with open(path / "samples.jsonl", "w") as f:
        for i, (y, p) in enumerate(zip(labels, preds)):
            rec = {"id": f"s{i}", "image": f"img{i}.png", "label": int(y), "label_name": names[y],
                   "prediction": None if p < 0 else int(p), "meta": {"bg": (meta or {}).get(i, "common")}}
            if i in skip_rows:
                rec.update(skipped=True, error="cannot read", prediction=None)
                if sc is not None:
                    sc[i] = np.nan
            f.write(json.dumps(rec) + "\n")
            rows.append(rec)
    if sc is not None:
        np.save(path / "scores.npy", sc)
    return path


def _cli(module, argv):
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_metrics_command_writes_results_and_plots(tmp_path, rand):
    from vlmprobe.commands import metrics as cmd

    labels, preds, scores, k = rand
    names = [f"class {i}" for i in range(k)]
    meta = {i: ("counter" if i % 3 == 0 else "common") for i in range(len(labels))}
    run = _write_run(tmp_path / "id", labels, preds, scores, names, meta=meta, skip_rows=(5, 7))
    (run / "results.json").write_text(json.dumps({"top1": 0.0, "runtime_s": 12.5}))
    rng = np.random.default_rng(6)
    ood_scores = rng.normal(size=(80, k))
    ood = _write_run(tmp_path / "ood", rng.integers(0, k, 80), np.zeros(80, int), ood_scores, names)
    assert _cli(cmd, ["metrics", str(run), "--worst-k", "1,3", "--groups", "bg", "--group-drop", "common,counter",
                      "--calibration-split", "0.5", "--ood", str(ood), "--pseudo-labels", str(run)]) == 0
    res = json.loads((run / "results.json").read_text())
    keep = np.ones(len(labels), bool)
    keep[[5, 7]] = False
    assert res["runtime_s"] == 12.5 and res["method"] == "zeroshot"       # runner's extra key kept
    assert res["counts"]["skipped"] == 2 and res["counts"]["n"] == len(labels) - 2
    assert res["top1"] == pytest.approx(A.top1_accuracy(labels[keep], preds[keep]))
    assert set(res["worst_k_accuracy"]) == {"1", "3"}
    assert res["groups"]["bg"]["drop"]["from"] == "common"
    ts = res["calibration"]["temperature_scaling"]
    assert ts["n_fit"] + ts["before"]["n"] == len(labels) - 2
    assert res["ood"]["msp"]["auroc"] > 0.5 and res["ood"]["mcm"]["logit_scale_source"].startswith("assumed")
    has = keep & (preds >= 0)  # pseudo labels = this run's own predictions; -1 left out
    assert res["cmm_pseudo"]["agreement_with_labels"] == pytest.approx((preds[has] == labels[has]).mean())
    assert res["cmm_pseudo"]["n_unassigned"] == int((keep & (preds < 0)).sum())
    assert (run / "reliability.png").stat().st_size > 1000 and (run / "roc.png").stat().st_size > 1000
    assert {k: v for k, v in res.items() if k != "runtime_s"} == results_from_run(run, worst_k=(1, 3), groups=["bg"], group_drop=("common", "counter"),
                                   calibration_split="0.5", ood=ood, pseudo=run)
    with pytest.raises(VlmprobeError, match="missing from every sample"):
        results_from_run(run, groups=["nope"])


def test_results_from_generation_and_wikiqa_runs(tmp_path):
    gen = _write_run(tmp_path / "gen", [0, 1, 1], [0, -1, 1], None, ["a", "b"], method="generate")
    out = results_from_run(gen)
    assert out["top1"] == pytest.approx(2 / 3) and out["top5"] is None and out["counts"]["no_prediction"] == 1
    wq = tmp_path / "wikiqa"
    wq.mkdir()
    recs = [{"id": "q1", "correct": True, "classname": "tench", "prediction": "A"},
            {"id": "q2", "correct": False, "classname": "goldfish", "prediction": None},
            {"id": "q3", "skipped": True, "error": "missing image"}]
    (wq / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = results_from_run(wq, groups=["classname"])
    assert out["accuracy"] == 0.5 and out["counts"] == {"n": 2, "skipped": 1, "no_prediction": 1, "nonfinite_scores": 0}
    assert out["groups"]["classname"]["groups"]["tench"]["accuracy"] == 1.0
    bad = tmp_path / "bad"
    _write_run(bad, [0, 1], [0, 1], np.zeros((2, 2)), ["a", "b"])
    np.save(bad / "scores.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(VlmprobeError, match="does not match 2 records"):
        results_from_run(bad)
    with pytest.raises(VlmprobeError, match="not found"):
        results_from_run(tmp_path / "missing")
    (bad / "scores.npy").rename(bad / "scores.partial")
    with pytest.raises(VlmprobeError, match="unfinished run"):
        results_from_run(bad)


def test_frequency_command(tmp_path):
    from vlmprobe.commands import frequency as cmd

    names = ["cat", "dog", "sea lion", "fox"]
    corpus = [{"id": str(i), "image": "x.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"},
        {"from": "gpt", "value": text}]} for i, text in enumerate(
        ["A cat.", "A cat and a dog.", "Cats! a cat", "a Sea  lion", "the dog", "cat cat cat", "hotdog"])]
    (tmp_path / "corpus.json").write_text(json.dumps(corpus))
    (tmp_path / "syn.json").write_text(json.dumps({"cat": ["cats"]}))
    run = _write_run(tmp_path / "run", [0, 0, 1, 1, 2, 3], [0, 0, 1, -1, 1, 3], None, names, method="generate")
    out = tmp_path / "freq"
    assert _cli(cmd, ["frequency", "--corpus", str(tmp_path / "corpus.json"), "--run", str(run),
                      "--synonyms", str(tmp_path / "syn.json"), "--out", str(out)]) == 0
    rows = (out / "frequency.csv").read_text().splitlines()
    assert rows[0].startswith("class,mentions,documents") and rows[1].startswith("cat,7,4,")
    summary = json.loads((out / "frequency.json").read_text())
    assert summary["texts"] == 7 and summary["total_mentions"] == 10 and summary["n_classes"] == 4
    assert summary["spearman"] is not None and (out / "frequency.png").stat().st_size > 1000
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(VlmprobeError, match="invalid JSON"):
        _cli(cmd, ["frequency", "--corpus", str(tmp_path / "bad.json"), "--classes", "a,b", "--out", str(out)])


def test_minus_inf_means_not_offered():
    """A sampled label space scores non-offered classes -inf: they get probability 0, and every
    metric equals the one computed on the offered columns alone."""
    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "d"]
    labels = np.array([0, 1, 2, 3, 0, 1])
    scores = rng.normal(size=(6, 4))
    offered = scores.copy()
    offered[:, 3] = -np.inf
    offered[3, 3] = scores[3, 3]  # the true class is always offered
    offered[3, 0] = -np.inf
    preds = offered.argmax(1)
    out = summarize(labels, preds, offered, names)
    assert out["top1"] == pytest.approx(np.mean(preds == labels))
    cal = out["calibration"]
    assert np.isfinite([cal["ece"], cal["nll"], cal["brier"]]).all()
    z = offered - offered.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert cal["nll"] == pytest.approx(-logp[np.arange(6), labels].mean())
    assert np.isfinite(out["cmm"]["mean"])
