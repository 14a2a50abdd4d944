"""95% intervals for the headline numbers of a run (results.json's ``intervals``).

Definitions (level 1 - alpha = 0.95 unless stated; every bootstrap is seeded, ``seed`` 0 and
``resamples`` 1000 by default, and recorded beside the intervals):

- proportions (top-1, top-5, per-class accuracy, a correct-only run's ``accuracy`` such as
  ImageWikiQA): Clopper-Pearson exact binomial interval of k right in n
  (``robustness.clopper_pearson``; the same as statsmodels ``proportion_confint(method="beta")``);
- mean per-class recall and worst-k accuracy: stratified bootstrap over samples (Efron &
  Tibshirani 1993, ch. 13; samples resampled with replacement within each class, so every class
  keeps its size). Resampling n_c right/wrong values of class c with replacement draws its hit
  count from Binomial(n_c, acc_c), which is how a resample is drawn here; the statistic
  (mean of the per-class accuracies, mean of the k smallest) is recomputed on each resample and
  the interval is its 2.5% and 97.5% percentiles;
- mean CMM: percentile bootstrap over classes (the per-class margins resampled with replacement);
- ECE: percentile bootstrap over samples (the run's bins and edge convention, recomputed per
  resample).

A worst-k percentile interval describes the sampling spread of the statistic as computed; the
minimum over noisy class accuracies is biased low in small classes, and the interval does not
correct that (stated in docs/vlm-protocols.md).
"""
from __future__ import annotations

import numpy as np

from vlmprobe.metrics.robustness import clopper_pearson

LEVEL = 0.95
RESAMPLES = 1000
SEED = 0


def proportion(k: int, n: int, level: float = LEVEL) -> dict | None:
    """{low, high, method} of k right in n (None when n = 0)."""
    if n <= 0:
        return None
    lo, hi = clopper_pearson(int(k), int(n), 1 - level)
    return {"low": lo, "high": hi, "method": "clopper-pearson"}


def proportions(k, n, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Clopper-Pearson bounds for arrays of k right in n (NaN where n = 0); the same
    formula as ``robustness.clopper_pearson`` (tested equal)."""
    from scipy.stats import beta

    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    a = 1 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k == 0, 0.0, beta.ppf(a / 2, np.maximum(k, 1), n - k + 1))
        hi = np.where(k == n, 1.0, beta.ppf(1 - a / 2, k + 1, np.maximum(n - k, 1)))
    bad = n <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def _percentile(values: np.ndarray, level: float, method: str) -> dict | None:
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return {"low": float(lo), "high": float(hi), "method": method}


def stratified_class_accuracy(hits: np.ndarray, counts: np.ndarray, resamples: int = RESAMPLES,
                              seed: int = SEED) -> np.ndarray:
    """float [R, K]: per-class accuracy of each stratified bootstrap resample (NaN where a class
    has no samples)."""
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts, dtype=np.int64)
    present = counts > 0
    p = np.where(present, np.asarray(hits) / np.maximum(counts, 1), 0.0)
    draws = rng.binomial(counts[None, :].repeat(resamples, 0), p[None, :].repeat(resamples, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present[None, :], draws / np.maximum(counts, 1)[None, :], np.nan)


def bootstrap_mean(values, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED,
                   method: str = "bootstrap") -> dict | None:
    """Percentile bootstrap interval of the mean of ``values`` (NaN entries left out)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    return _percentile(means, level, method)


def worst_k_values(per_class: np.ndarray, k: int) -> np.ndarray:
    """float [R]: mean of the k smallest non-NaN per-class accuracies of each row of [R, K]."""
    srt = np.sort(np.where(np.isnan(per_class), np.inf, per_class), axis=1)
    used = min(k, int((~np.isnan(per_class[0])).sum()))
    if used == 0:
        return np.full(per_class.shape[0], np.nan)
    return srt[:, :used].mean(axis=1)


def classification_intervals(labels, predictions, scores, keys: list[str], ks, level: float = LEVEL,
                             resamples: int = RESAMPLES, seed: int = SEED, ece_bins: int = 15,
                             ece_edges: str = "right") -> dict:
    """The ``intervals`` block of a labeled run (see module docstring). ``keys``: per-class table
    keys (``report.unique_names``)."""
    from vlmprobe.metrics import accuracy as acc_m

    y = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(predictions, dtype=np.int64)
    n, k = y.size, len(keys)
    correct = acc_m.correct_mask(y, pred)
    out = {"level": level, "resamples": resamples, "seed": seed, "top1": proportion(int(correct.sum()), n, level)}
    counts = np.bincount(y, minlength=k)
    hits = np.bincount(y[correct], minlength=k)
    lo, hi = proportions(hits, counts, level)
    out["per_class_accuracy"] = {key: ([float(lo[c]), float(hi[c])] if counts[c] else None) for c, key in enumerate(keys)}
    if n:
        boot = stratified_class_accuracy(hits, counts, resamples, seed)
        out["mean_per_class_recall"] = _percentile(np.nanmean(boot, axis=1), level, "stratified bootstrap over samples")
        out["worst_k_accuracy"] = {str(kk): _percentile(worst_k_values(boot, kk), level,
                                                        "stratified bootstrap over samples") for kk in ks}
    if scores is not None and n:
        s = np.asarray(scores)
        top5 = acc_m.true_class_rank(s, y) < min(5, s.shape[1])
        out["top5"] = proportion(int(top5.sum()), n, level)
        if s.shape[1] >= 2:
            from vlmprobe.metrics.margin import class_matching_margin

            out["cmm_mean"] = bootstrap_mean(class_matching_margin(s, y, k), level, resamples, seed,
                                             "bootstrap over classes")
        out["ece"] = _ece_interval(s, y, level, resamples, seed, ece_bins, ece_edges)
    return out


def _ece_interval(scores, y, level, resamples, seed, n_bins, edges) -> dict | None:
    from vlmprobe.metrics.calibration import bin_index

    # max softmax probability = 1 / sum_j exp(s_j - max s); its argmax is the scores' argmax
    s32 = np.asarray(scores, dtype=np.float32)
    top = s32.max(axis=1, keepdims=True)
    conf = 1.0 / np.exp(s32 - top).sum(axis=1, dtype=np.float64)
    right = (s32.argmax(axis=1) == y).astype(np.float64)
    b = bin_index(conf, n_bins, edges)
    n = y.size
    rng = np.random.default_rng(seed)
    vals = np.empty(resamples)
    for r in range(resamples):  # bincount per resample: O(N) each, no [R, N] float matrix
        idx = rng.integers(0, n, n)
        cnt = np.bincount(b[idx], minlength=n_bins)
        gap = np.abs(np.bincount(b[idx], weights=right[idx] - conf[idx], minlength=n_bins))
        vals[r] = gap.sum() / n if cnt.any() else np.nan
    return _percentile(vals, level, "bootstrap over samples")


def correct_intervals(correct, level: float = LEVEL) -> dict:
    """The ``intervals`` block of a right/wrong-only run (ImageWikiQA): Clopper-Pearson on accuracy."""
    c = np.asarray(correct, dtype=bool)
    return {"level": level, "accuracy": proportion(int(c.sum()), int(c.size), level)}


def effective_robustness_intervals(id_k, id_n, shift_k, shift_n, base_id, base_shift, kind: str = "logit",
                                   level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
                                   ) -> list[dict | None]:
    """Per compared run, a percentile parametric-bootstrap interval of its effective robustness
    (Taori et al. 2020) against the fixed baseline line (``base_id``/``base_shift``: the baseline
    models' accuracies): each resample draws the run's ID and shift hit counts from
    Binomial(n, observed accuracy) and recomputes ER = shift acc - T^-1(slope T(ID acc) + b)."""
    from vlmprobe.metrics.robustness import effective_robustness

    rng = np.random.default_rng(seed)
    id_k, id_n, shift_k, shift_n = (np.asarray(x, dtype=np.int64) for x in (id_k, id_n, shift_k, shift_n))
    ids = rng.binomial(id_n, id_k / id_n, size=(resamples, id_n.size)) / id_n
    shifts = rng.binomial(shift_n, shift_k / shift_n, size=(resamples, shift_n.size)) / shift_n
    er = effective_robustness(ids.ravel(), shifts.ravel(), base_id, base_shift, kind)["er"].reshape(resamples, -1)
    return [_percentile(er[:, j], level, "parametric bootstrap over samples") for j in range(id_n.size)]
