"""Corruption robustness (Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations"), from per-(corruption, severity) error rates.

The paper's definitions (Section 4), with E(s, c) the top-1 error at severity s of corruption c:

- CE_c = sum_{s=1..5} E(s, c) / sum_{s=1..5} E_AlexNet(s, c);
- mCE = mean of CE_c over the 15 benchmark corruptions (``BENCHMARK``);
- relative CE_c = sum_s (E(s, c) - E_clean) / sum_s (E_AlexNet(s, c) - E_AlexNet_clean);
  relative mCE = their mean.

So ``mce`` / ``relative_mce`` (and a corruption's ``ce`` / ``relative_ce``) exist only when all
15 x 5 cells (all five severities of that corruption) were measured; otherwise they are None and
the same formulas restricted to the measured cells stand beside them as ``mce_partial`` /
``relative_mce_partial`` (``ce_partial`` per corruption), with ``partial_cells`` listing the
``corruption/severity`` cells they cover: a figure for the reader's own comparisons, never the
paper's mCE. AlexNet's errors: the published per-corruption means over severities 1-5
(``ALEXNET_ERR``; sum_s = 5 x mean, so on a partial set of severities the denominator uses that
mean per cell), or per-(corruption, severity) errors of an AlexNet evaluated the same way as the
model (``alexnet=``, e.g. a reference table's AlexNet row), which normalise cell by cell.

Errors are fractions in [0, 1]; CE and mCE are reported as fractions too (x100 for the paper's
percentages).
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError

SEVERITIES = (1, 2, 3, 4, 5)
BENCHMARK = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
             "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
             "jpeg_compression")
# AlexNet's ImageNet-C error averaged over severities 1-5, per corruption, in BENCHMARK order.
# Source: google-research/augmix, imagenet.py, ALEXNET_ERR ("Raw AlexNet errors taken from
# https://github.com/hendrycks/robustness").
ALEXNET_ERR = dict(zip(BENCHMARK, (0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360,
                                   0.866816, 0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840,
                                   0.606500)))
# AlexNet's clean ImageNet val top-1 error, as published (Hendrycks & Dietterich 2019, Table:
# "Error 43.5" for AlexNet; rounded to 0.1 points there).
ALEXNET_CLEAN_ERR = 0.435


def _alexnet_cell(alexnet, c: str, s: int) -> float | None:
    """AlexNet's error at (c, s): per-cell when ``alexnet[c]`` is a {severity: error} dict, else the
    per-corruption mean over severities 1-5 (the published constants)."""
    a = alexnet.get(c)
    if isinstance(a, dict):
        v = a.get(s, a.get(str(s)))
        return None if v is None else float(v)
    return None if a is None else float(a)


def corruption_errors(errors: dict[str, dict[int, float]], clean_error: float | None = None, alexnet=None,
                      alexnet_clean_error: float | None = None, alexnet_source: str | None = None) -> dict:
    """Hendrycks & Dietterich's CE / mCE / relative mCE (module docstring).

    ``errors``: {corruption: {severity: error}} of the model; ``clean_error``: its clean ImageNet
    error (for the relative figures); ``alexnet``: AlexNet's errors, {corruption: mean over
    severities 1-5} or {corruption: {severity: error}} (default ``ALEXNET_ERR``), with
    ``alexnet_clean_error`` (default ``ALEXNET_CLEAN_ERR`` with the published constants).
    -> {per_corruption: {c: {error, severities, ce, relative_ce, ce_partial, relative_ce_partial}},
    mce, relative_mce (None unless all 15 x 5 cells), mce_partial, relative_mce_partial,
    partial_cells, complete, cells_missing, corruptions_missing, clean_error, alexnet_source}."""
    published = alexnet is None
    alexnet = ALEXNET_ERR if published else alexnet
    a_clean = ALEXNET_CLEAN_ERR if alexnet_clean_error is None and published else alexnet_clean_error
    per, part, rel_part, cells = {}, {}, {}, []
    for c, by_sev in errors.items():
        sev = {int(s): float(v) for s, v in by_sev.items() if v is not None}
        if not sev:
            continue
        row = {"error": float(np.mean(list(sev.values()))), "severities": sorted(sev), "ce": None,
               "relative_ce": None, "ce_partial": None, "relative_ce_partial": None}
        alex = {s: _alexnet_cell(alexnet, c, s) for s in sev}
        if c in BENCHMARK and all(v is not None for v in alex.values()):
            cells += [f"{c}/{s}" for s in sorted(sev)]
            row["ce_partial"] = part[c] = sum(sev.values()) / sum(alex.values())
            if clean_error is not None and a_clean is not None:
                row["relative_ce_partial"] = rel_part[c] = (sum(e - clean_error for e in sev.values())
                                                            / sum(a - a_clean for a in alex.values()))
            if set(sev) == set(SEVERITIES):
                row["ce"], row["relative_ce"] = row["ce_partial"], row["relative_ce_partial"]
        per[c] = row
    complete = all(c in per and per[c]["ce"] is not None for c in BENCHMARK)
    mean = lambda d: float(np.mean([d[c] for c in BENCHMARK if c in d])) if d else None  # noqa: E731
    return {"per_corruption": per,
            "mce": mean(part) if complete else None,
            "relative_mce": mean(rel_part) if complete and len(rel_part) == len(BENCHMARK) else None,
            "complete": complete,
            "mce_partial": mean(part), "relative_mce_partial": mean(rel_part),
            "partial_cells": sorted(cells, key=lambda x: (BENCHMARK.index(x.rsplit("/", 1)[0]), int(x.rsplit("/", 1)[1]))), "cells_missing": len(BENCHMARK) * len(SEVERITIES) - len(cells),
            "corruptions_missing": [c for c in BENCHMARK if c not in part], "clean_error": clean_error,
            "alexnet_source": alexnet_source or ("google-research/augmix imagenet.py ALEXNET_ERR; AlexNet clean "
                                                 "error 0.435" if published else "given AlexNet errors")}


def describe_mce(ce: dict) -> str:
    """One line for printouts: the mCE when complete, else ``n/a`` and the partial figure with
    the cells it covers."""
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}"
    if ce.get("complete"):
        return f"mCE {pct(ce['mce'])}, relative mCE {pct(ce['relative_mce'])} (15 corruptions x 5 severities)"
    cells = ce.get("partial_cells") or []
    sev = sorted({int(x.rsplit("/", 1)[1]) for x in cells})
    n_corr = len({x.rsplit("/", 1)[0] for x in cells})
    return (f"mCE n/a, relative mCE n/a (needs 15 corruptions x 5 severities; {len(cells)} of 75 cells measured: "
            f"{n_corr} corruptions, severities {','.join(map(str, sev)) or '-'}); partial mCE over those cells "
            f"{pct(ce.get('mce_partial'))}, partial relative mCE {pct(ce.get('relative_mce_partial'))}")


def errors_by_corruption(correct, corruptions, severities) -> dict[str, dict[int, float]]:
    """bool [N] correctness + per-sample corruption name and severity -> {c: {s: error}}."""
    correct = np.asarray(correct, dtype=bool)
    if not (len(correct) == len(corruptions) == len(severities)):
        raise VlmprobeError("errors_by_corruption: correct, corruptions and severities differ in length")
    out: dict[str, dict[int, float]] = {}
    keys = sorted({(str(c), int(s)) for c, s in zip(corruptions, severities)})
    cs, ss = np.asarray([str(c) for c in corruptions]), np.asarray([int(s) for s in severities])
    for c, s in keys:
        m = (cs == c) & (ss == s)
        out.setdefault(c, {})[s] = float(1.0 - correct[m].mean())
    return out
