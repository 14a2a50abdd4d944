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
