"""Issue #33 protocols, end to end from the CLI on the miniature world (toy:vlm, toy:clip):
95% intervals in results.json and paired tests (checked against scipy / statsmodels), open-world
scoring (checked against NLTK WordNet), hard-negative multiple choice."""
import json

import numpy as np
import pytest

from vlmprobe.cli import main

LIMIT = 60


@pytest.fixture(scope="module")
def runs(toy_world, tmp_path_factory):
    """A generation run of toy:vlm and a zero-shot run of toy:clip on the same 60 test digits."""
    root = tmp_path_factory.mktemp("p33")
    common = ["--data", "toy:digits:test", "--limit", str(LIMIT), "--no-progress", "--seed", "0"]
    assert main(["eval", "--model", "toy:vlm", "--method", "generate", "--out", str(root / "gen"), *common]) == 0
    assert main(["eval", "--model", "toy:clip", "--method", "zeroshot", "--out", str(root / "clip"), *common]) == 0
    return root


def _results(d):
    return json.loads((d / "results.json").read_text())


def _records(d):
    return [json.loads(x) for x in (d / "samples.jsonl").read_text().splitlines() if x.strip()]


# ------------------------------------------------------------------ (5) intervals and paired tests

def test_results_carry_clopper_pearson_intervals_matching_statsmodels(runs):
    from statsmodels.stats.proportion import proportion_confint

    for name in ("gen", "clip"):
        res = _results(runs / name)
        iv = res["intervals"]
        recs = _records(runs / name)
        k = sum(r["prediction"] == r["label"] for r in recs)
        lo, hi = proportion_confint(k, len(recs), alpha=0.05, method="beta")
        assert res["top1"] == pytest.approx(k / len(recs))
        assert (iv["top1"]["low"], iv["top1"]["high"]) == pytest.approx((lo, hi), abs=1e-10)
        for cls, (clo, chi) in iv["per_class_accuracy"].items():
            cr = [r for r in recs if r["label_name"] == cls]
            elo, ehi = proportion_confint(sum(r["prediction"] == r["label"] for r in cr), len(cr), method="beta")
            assert (clo, chi) == pytest.approx((elo, ehi), abs=1e-10)
        w1 = iv["worst_k_accuracy"]["1"]
        assert w1["low"] <= res["worst_k_accuracy"]["1"]["value"] + 0.2 and w1["low"] <= w1["high"]
    clip = _results(runs / "clip")["intervals"]
    assert clip["top5"]["method"] == "clopper-pearson" and clip["ece"]["low"] < clip["ece"]["high"]


def test_bootstrap_intervals_agree_with_scipy_bootstrap(runs):
    """The mean-CMM interval (bootstrap over classes) and the ECE interval (over samples) against
    scipy.stats.bootstrap's percentile intervals of the same statistics (different random
    streams: agreement within the Monte-Carlo error)."""
    from scipy.stats import bootstrap

    from vlmprobe.metrics.calibration import expected_calibration_error, softmax
    from vlmprobe.metrics.margin import class_matching_margin
    from vlmprobe.metrics.rundata import load_run

    run = load_run(runs / "clip")
    iv = _results(runs / "clip")["intervals"]
    cmm = class_matching_margin(run.scores, run.labels, len(run.classnames))
    ref = bootstrap((cmm,), np.mean, n_resamples=20000, method="percentile", random_state=1).confidence_interval
    width = ref.high - ref.low
    assert iv["cmm_mean"]["low"] == pytest.approx(ref.low, abs=0.1 * width)
    assert iv["cmm_mean"]["high"] == pytest.approx(ref.high, abs=0.1 * width)
    probs = softmax(run.scores)
    ref = bootstrap((np.arange(len(run.labels)),), lambda i: expected_calibration_error(probs[i], run.labels[i]),
                    n_resamples=3000, method="percentile", random_state=1, vectorized=False).confidence_interval
    width = ref.high - ref.low
    assert iv["ece"]["low"] == pytest.approx(ref.low, abs=0.15 * width)
    assert iv["ece"]["high"] == pytest.approx(ref.high, abs=0.15 * width)


def test_stratified_bootstrap_of_worst_k_matches_an_explicit_resampling():
    """Drawing hit counts from Binomial(n_c, acc_c) is resampling each class's right/wrong values
    with replacement: the worst-2 interval equals a literal per-sample resampling's within the
    Monte-Carlo error."""
    from vlmprobe.metrics.intervals import stratified_class_accuracy, worst_k_values

    counts, hits = np.array([20, 30, 25, 10]), np.array([15, 12, 24, 6])
    fast = worst_k_values(stratified_class_accuracy(hits, counts, 20000, seed=3), 2)
    rng = np.random.default_rng(7)
    vals = [np.r_[np.ones(h), np.zeros(n - h)] for h, n in zip(hits, counts)]
    slow = [np.sort([rng.choice(v, v.size).mean() for v in vals])[:2].mean() for _ in range(4000)]
    assert np.quantile(fast, [0.025, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.975]), abs=0.02)


def test_compare_paired_matches_statsmodels_mcnemar(runs, tmp_path, capsys):
    from statsmodels.stats.contingency_tables import mcnemar

    out = tmp_path / "paired.json"
    assert main(["compare", str(runs / "gen"), str(runs / "clip"), "--paired", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    t = json.loads(out.read_text())["paired"]
    tb = t["table"]
    table = [[tb["both_right"], tb["only_a_right"]], [tb["only_b_right"], tb["both_wrong"]]]
    assert t["mcnemar_exact_p"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9)
    gen, clip = _records(runs / "gen"), _records(runs / "clip")
    assert sum(table[0]) + sum(table[1]) == t["n"] == LIMIT
    d = np.array([float(b["prediction"] == b["label"]) - float(a["prediction"] == a["label"])
                  for a, b in zip(gen, clip)])
    assert t["difference"] == pytest.approx(d.mean())
    assert t["bootstrap"]["low"] <= d.mean() <= t["bootstrap"]["high"]
    assert t["significant"] and "significant" in printed and "McNemar exact p" in printed
    # a run against itself: no discordant pair, p = 1, marked not significant
    assert main(["compare", str(runs / "clip"), str(runs / "clip"), "--paired", "--out", str(out)]) == 0
    same = json.loads(out.read_text())["paired"]
    assert same["mcnemar_exact_p"] == 1.0 and not same["significant"]
    assert "not significant" in capsys.readouterr().out


def test_compare_paired_refuses_other_than_two_runs(runs, capsys):
    assert main(["compare", str(runs / "gen"), "--paired"]) != 0
    assert "--paired compares exactly two RUN_DIRs (got 1)" in capsys.readouterr().err
