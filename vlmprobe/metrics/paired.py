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
