"""Paired before/after comparison: McNemar's exact p-value equals scipy's two-sided binomial
test on the discordant pairs; gains and losses are counted over the shared sample ids."""
import json

import pytest

from vlmprobe.metrics.paired import correct_by_id, mcnemar_exact, paired_change


@pytest.mark.parametrize("gained,lost", [(27, 11), (11, 27), (0, 0), (5, 5), (0, 9), (40, 1), (3, 4)])
def test_mcnemar_exact_matches_scipy_binomtest(gained, lost):
    from scipy.stats import binomtest

    expected = 1.0 if gained + lost == 0 else binomtest(gained, gained + lost, 0.5).pvalue
    assert mcnemar_exact(gained, lost) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_paired_change_counts_discordant_pairs_on_shared_ids(tmp_path):
    before = tmp_path / "before"
    after = tmp_path / "after"
    for d, rows in ((before, [("a", 0, 0), ("b", 1, 0), ("c", 2, 2), ("d", 0, 1), ("skip", 0, 0)]),
                    (after, [("a", 0, 1), ("b", 1, 1), ("c", 2, 2), ("d", 0, 1), ("e", 0, 0)])):
        d.mkdir()
        with open(d / "samples.jsonl", "w") as f:
            for sid, label, pred in rows:
                rec = {"id": sid, "label": label, "prediction": pred}
                if sid == "skip":
                    rec = {"id": sid, "skipped": "unreadable image"}
                f.write(json.dumps(rec) + "\n")
    a, b = correct_by_id(before), correct_by_id(after)
    assert a == {"a": True, "b": False, "c": True, "d": False}
    assert paired_change(a, b) == {"n": 4, "gained": 1, "lost": 1, "p_value": 1.0}
    qa = tmp_path / "qa"
    qa.mkdir()
    (qa / "samples.jsonl").write_text(json.dumps({"id": "L1", "correct": True, "label": 3}) + "\n")
    assert correct_by_id(qa) == {"L1": True}


def _write_run(path, correct):
    path.mkdir(parents=True)
    with open(path / "samples.jsonl", "w") as f:
        for i, ok in enumerate(correct):
            f.write(json.dumps({"id": f"img{i}", "label": 1, "prediction": 1 if ok else 0}) + "\n")
    return sum(correct) / len(correct)


def _study(tmp_path, clip, gen, probe=None, ft=None):
    rows = []
    for model, measure, correct in (("clip", "zeroshot", clip), ("vlm", "generate", gen), ("vlm", "probe", probe),
                                    ("vlm-ft", "generate", ft)):
        if correct is not None:
            run = f"{model}/test/{measure}"
            rows.append({"model": model, "measure": measure, "dataset": "test", "run": run,
                         "top1": _write_run(tmp_path / run, correct)})
    models = {"clip": {"kind": "clip"}, "vlm": {"kind": "vlm"}, "vlm-ft": {"kind": "vlm", "finetune": {"from": "vlm"}}}
    return {"models": models, "main": rows, "label_space": [], "frequency": [], "wikiqa": []}


def test_findings_are_judged_by_their_paired_tests(tmp_path):
    """Finding 1 (and 5) need McNemar's p < 0.05, not only a 20-point gap; finding 3 needs the
    whole paired bootstrap interval of CLIP - probe below 10 points, not only the point estimate."""
    from vlmprobe.study.findings import compute

    # 20 images: CLIP right on 12, generation on 7 (10 discordant pairs one way, 5 the other):
    # a 25-point gap, yet McNemar p = 0.30 -> not shown (a strict comparison would say shown)
    clip = [True] * 12 + [False] * 8
    gen = [True] * 2 + [False] * 10 + [True] * 5 + [False] * 3
    small = {f["n"]: f for f in compute(_study(tmp_path / "small", clip, gen), tmp_path / "small")}
    assert small[1]["test"] == {"n": 20, "gained": 10, "lost": 5, "p_value": pytest.approx(mcnemar_exact(10, 5))}
    assert small[1]["shown"] is False and "McNemar exact p=0.3" in small[1]["text"]
    # the same rates on 200 images (10x): the gap is significant -> shown
    big = {f["n"]: f for f in compute(_study(tmp_path / "big", clip * 10, gen * 10, probe=clip * 10, ft=clip * 10),
                                      tmp_path / "big")}
    assert big[1]["shown"] is True and big[1]["test"]["p_value"] < 1e-3
    assert big[3]["shown"] is True and big[3]["test"]["clip_minus_probe"]["high"] == 0.0  # identical runs
    assert big[3]["test"]["probe_vs_generation"]["gained"] == 100
    assert big[5]["shown"] is True and big[5]["test"]["gained"] == 100
    # a probe 5 points below CLIP on 20 images but not significantly above generation: not shown
    probe = clip[:11] + [False] * 9
    near = {f["n"]: f for f in compute(_study(tmp_path / "near", clip, gen, probe=probe), tmp_path / "near")}
    ci = near[3]["test"]["clip_minus_probe"]
    assert ci["difference"] == pytest.approx(0.05) and ci["low"] < 0.05 < ci["high"]
    assert near[3]["test"]["probe_vs_generation"] == {"n": 20, "gained": 9, "lost": 5,
                                                      "p_value": pytest.approx(mcnemar_exact(9, 5))}
    assert near[3]["shown"] is False and "paired bootstrap interval" in near[3]["text"]
    # without the study directory no test can run: nothing is shown on a strict comparison alone
    assert compute(_study(tmp_path / "none", clip * 10, gen * 10), None)[0]["shown"] is False


def test_paired_bootstrap_interval_values():
    from vlmprobe.metrics.paired import paired_bootstrap_interval, two_group_bootstrap_interval

    before = {f"i{k}": k % 2 == 0 for k in range(100)}
    after = {f"i{k}": True for k in range(100)}
    ci = paired_bootstrap_interval(before, after)
    assert ci["n"] == 100 and ci["difference"] == 0.5 and 0.39 < ci["low"] < 0.5 < ci["high"] < 0.61
    assert paired_bootstrap_interval(before, before)["high"] == 0.0
    g = two_group_bootstrap_interval(80, 100, 40, 100)
    assert g["difference"] == pytest.approx(0.4) and 0.25 < g["low"] < 0.4 < g["high"] < 0.55
