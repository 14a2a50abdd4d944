"""Paired comparison of two runs on the same samples (before / after fine-tuning, two methods).

Each sample is right or wrong in run A and in run B. Only the discordant pairs carry evidence:
``gained`` = wrong in A and right in B, ``lost`` = right in A and wrong in B. McNemar's exact test
(McNemar 1947; the exact form is the two-sided binomial test of ``gained`` among the
``gained + lost`` discordant pairs at p = 1/2):

    p = min(1, 2 * sum_{i <= min(gained, lost)} C(n_d, i) / 2^n_d),   n_d = gained + lost.

This is what ``scipy.stats.binomtest(gained, n_d, 0.5)`` returns for a symmetric null (tested).
"""
from __future__ import annotations

import os
from math import comb

from ..runs import read_run
from .rundata import is_skipped


def correct_by_id(run_dir: str | os.PathLike) -> dict[str, bool]:
    """Sample id -> right or wrong, for every scored sample of a finished run directory
    (a record's ``correct`` field, e.g. ImageWikiQA, else ``prediction == label``; skipped
    samples and records without a label are left out)."""
    _, records, _ = read_run(run_dir)
    out = {}
    for i, r in enumerate(records):
        if is_skipped(r):
            continue
        if "correct" in r:
            out[str(r.get("id", i))] = bool(r["correct"])
        elif isinstance(r.get("label"), int) and not isinstance(r.get("label"), bool):
            out[str(r.get("id", i))] = r.get("prediction") == r["label"]
    return out


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value of ``gained`` vs ``lost`` discordant pairs (1.0 when none)."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(gained, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_change(before: dict[str, bool], after: dict[str, bool]) -> dict:
    """{n (shared samples), gained, lost, p_value} over the sample ids both runs scored."""
    shared = sorted(set(before) & set(after))
    gained = sum(1 for k in shared if after[k] and not before[k])
    lost = sum(1 for k in shared if before[k] and not after[k])
    return {"n": len(shared), "gained": gained, "lost": lost, "p_value": mcnemar_exact(gained, lost)}


def paired_bootstrap_interval(before: dict[str, bool], after: dict[str, bool], level: float = 0.95,
                              resamples: int = 2000, seed: int = 0) -> dict:
    """Percentile bootstrap interval of ``acc(after) - acc(before)`` over the sample ids both
    runs scored (resampling ids with replacement keeps each pair together; Efron & Tibshirani
    1993, ch. 13): {n, difference, low, high, level}; low/high None when no id is shared."""
    import numpy as np

    shared = sorted(set(before) & set(after))
    if not shared:
        return {"n": 0, "difference": None, "low": None, "high": None, "level": level}
    d = np.array([float(after[k]) - float(before[k]) for k in shared])
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"n": len(shared), "difference": float(d.mean()), "low": float(lo), "high": float(hi), "level": level}


def two_group_bootstrap_interval(right: int, n_a: int, right_b: int, n_b: int, level: float = 0.95,
                                 resamples: int = 2000, seed: int = 0) -> dict:
    """Percentile (parametric) bootstrap interval of ``p_a - p_b`` for two independent groups
    given as counts (``right`` of ``n_a``, ``right_b`` of ``n_b``): each resample draws both
    groups' correct counts from Binomial(n, observed rate). {difference, low, high, level}."""
    import numpy as np

    if not n_a or not n_b:
        return {"difference": None, "low": None, "high": None, "level": level}
    rng = np.random.default_rng(seed)
    pa, pb = right / n_a, right_b / n_b
    diff = rng.binomial(n_a, pa, resamples) / n_a - rng.binomial(n_b, pb, resamples) / n_b
    lo, hi = np.quantile(diff, [(1 - level) / 2, (1 + level) / 2])
    return {"difference": pa - pb, "low": float(lo), "high": float(hi), "level": level}


def paired_test(a: dict[str, bool], b: dict[str, bool], level: float = 0.95, resamples: int = 2000,
                seed: int = 0) -> dict:
    """Run B against run A on the sample ids both scored: accuracies with Clopper-Pearson
    intervals, the 2x2 table (both right, only A, only B, both wrong), McNemar's exact p-value,
    the paired bootstrap interval of acc(B) - acc(A), and ``significant``: p < 1 - level and the
    interval excludes 0 (both must agree; a difference either test cannot tell from 0 is marked
    not significant)."""
    from .intervals import proportion

    shared = sorted(set(a) & set(b))
    n = len(shared)
    both = sum(1 for k in shared if a[k] and b[k])
    only_a = sum(1 for k in shared if a[k] and not b[k])
    only_b = sum(1 for k in shared if b[k] and not a[k])
    change = paired_change(a, b)
    boot = paired_bootstrap_interval(a, b, level, resamples, seed)
    acc_a, acc_b = (both + only_a) / n if n else None, (both + only_b) / n if n else None
    sig = bool(n and change["p_value"] < 1 - level and boot["low"] is not None
               and (boot["low"] > 0 or boot["high"] < 0))
    return {"n": n, "only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a)),
            "accuracy_a": acc_a, "accuracy_a_ci95": proportion(both + only_a, n, level),
            "accuracy_b": acc_b, "accuracy_b_ci95": proportion(both + only_b, n, level),
            "table": {"both_right": both, "only_a_right": only_a, "only_b_right": only_b,
                      "both_wrong": n - both - only_a - only_b},
            "mcnemar_exact_p": change["p_value"], "difference": boot["difference"],
            "bootstrap": {"low": boot["low"], "high": boot["high"], "level": level, "resamples": resamples,
                          "seed": seed},
            "significant": sig}


def significance_mark(test: dict) -> str:
    """"" for a significant paired difference, " (n.s.)" otherwise (the report's marker)."""
    return "" if test.get("significant") else " (n.s.)"
