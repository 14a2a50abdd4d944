"""Corruption robustness (Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations"), from per-(corruption, severity) error rates.

- CE_c = sum_s E(s, c) / sum_s E_AlexNet(s, c), s = 1..5. The AlexNet constants below are the
  mean errors over the five severities, so CE_c = mean_s E(s, c) / ALEXNET_ERR[c] (equal when
  all five severities are measured; with fewer, the mean is over those present).
- mCE = mean of CE_c over the 15 benchmark corruptions (reported only when all 15 are present;
  ``mce_present`` averages whatever is there and says so).
- relative CE_c = sum_s (E(s, c) - E_clean) / sum_s (E_AlexNet(s, c) - E_AlexNet_clean);
  relative mCE = their mean.
- ``alexnet``: AlexNet's own per-(corruption, severity) errors evaluated the same way as the model
  (e.g. the AlexNet row of imagenet-testbed's table, or an AlexNet run) instead of the published
  constants: then CE_c = sum_s E(s, c) / sum_s E_AlexNet(s, c) over the model's severities, exactly
  the paper's sums (the paper's numbers are relative to its own AlexNet evaluation; another
  evaluation's decoding and resizing shift every error, AlexNet's too).

Errors are fractions in [0, 1]; CE and mCE are reported as fractions too (x100 for the paper's
percentages).
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError

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


def corruption_errors(errors: dict[str, dict[int, float]], clean_error: float | None = None,
                      alexnet: dict[str, dict[int, float]] | None = None, alexnet_clean_error: float | None = None,
                      alexnet_source: str | None = None) -> dict:
    """``errors`` {corruption: {severity: error}} (+ the model's clean error) -> {per_corruption:
    {c: {error, ce, relative_ce}}, mce, relative_mce, mce_present, corruptions_missing}.
    ``alexnet`` / ``alexnet_clean_error``: AlexNet's errors evaluated the same way (module
    docstring; default: the published constants); ``alexnet_source`` names them in the result."""
    per, ces, rel = {}, {}, {}
    a_clean = ALEXNET_CLEAN_ERR if alexnet is None else alexnet_clean_error
    for c, by_sev in errors.items():
        sev = {int(s): float(v) for s, v in by_sev.items() if v is not None}
        if not sev:
            continue
        mean_err = float(np.mean(list(sev.values())))
        row = {"error": mean_err, "severities": sorted(sev), "ce": None, "relative_ce": None}
        if alexnet is None:
            a_mean = ALEXNET_ERR.get(c)
        else:  # the same severities of AlexNet's own evaluation: sum_s E / sum_s E_AlexNet
            a_sev = {int(s): v for s, v in (alexnet.get(c) or {}).items() if v is not None}
            a_mean = float(np.mean([a_sev[s] for s in sev])) if all(s in a_sev for s in sev) else None
        if a_mean is not None:  # an extra corruption gets its CE too, but only the 15 enter mCE
            row["ce"] = mean_err / a_mean
            if clean_error is not None and a_clean is not None:
                row["relative_ce"] = (mean_err - clean_error) / (a_mean - a_clean)
            if c in ALEXNET_ERR:
                ces[c], rel[c] = row["ce"], row["relative_ce"]
        per[c] = row
    missing = [c for c in BENCHMARK if c not in ces]
    return {"per_corruption": per,
            "mce": float(np.mean([ces[c] for c in BENCHMARK])) if not missing else None,
            "relative_mce": (float(np.mean([rel[c] for c in BENCHMARK]))
                             if not missing and all(rel[c] is not None for c in BENCHMARK) else None),
            "mce_present": float(np.mean(list(ces.values()))) if ces else None,
            "corruptions_missing": missing, "clean_error": clean_error,
            "alexnet_source": alexnet_source or ("google-research/augmix imagenet.py ALEXNET_ERR; AlexNet clean error 0.435"
                                                  if alexnet is None else "AlexNet errors given by the caller")}


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
