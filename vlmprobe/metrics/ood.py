"""Out-of-distribution detection from confidence scores (in-distribution = positive class).

- MSP(x) = max_j softmax(s(x))_j with s the logits (Hendrycks & Gimpel).
- MCM(x) = max_j softmax(cos(x, t_j) / tau)_j (Ming et al.); from CLIP logits
  s = scale * cos this is max softmax(s / (scale * tau)).
- energy(x) = T * logsumexp_j(s_j / T), T = 1 (the negative free energy; Liu et al. 2020).
- max-logit(x) = max_j s_j (Hendrycks et al. 2022, "Scaling OOD detection").
- entropy(x) = sum_j p_j log p_j with p = softmax(s): the negative entropy, so that like the
  others it is higher for in-distribution images. (MCM's code reports these four beside MCM.)
- AUROC = P(score_ID > score_OOD) + 0.5 P(score_ID == score_OOD) (Mann-Whitney, average ranks).
- FPR@95TPR: the threshold t is the largest value with TPR = mean(score_ID >= t) >= 0.95,
  i.e. the ceil(0.95 n_ID)-th largest ID score; FPR = mean(score_OOD >= t).
"""
from __future__ import annotations

import math

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.metrics.calibration import softmax


def msp(logits: np.ndarray) -> np.ndarray:
    """float [N]: maximum softmax probability."""
    return softmax(logits).max(axis=1)


def mcm(logits: np.ndarray, logit_scale: float = 100.0, tau: float = 1.0) -> np.ndarray:
    """float [N]: maximum concept matching, max softmax(cos / tau) with cos = logits / logit_scale."""
    return softmax(logits, temperature=logit_scale * tau).max(axis=1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float [N]: T * logsumexp(logits / T) (higher = more in-distribution)."""
    from scipy.special import logsumexp

    return temperature * logsumexp(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def max_logit(logits: np.ndarray) -> np.ndarray:
    """float [N]: the largest score."""
    return np.asarray(logits, dtype=np.float64).max(axis=1)


def neg_entropy(logits: np.ndarray) -> np.ndarray:
    """float [N]: sum_j p_j log p_j of the softmax (0 log 0 = 0; higher = more confident)."""
    from scipy.special import log_softmax

    logp = log_softmax(np.asarray(logits, dtype=np.float64), axis=1)
    finite = np.isfinite(logp)
    safe = np.where(finite, logp, 0.0)
    return np.where(finite, np.exp(safe) * safe, 0.0).sum(axis=1)


SCORES = {"msp": msp, "energy": energy, "max_logit": max_logit, "entropy": neg_entropy}


def _check(id_scores, ood_scores):
    a = np.asarray(id_scores, dtype=np.float64).ravel()
    b = np.asarray(ood_scores, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise VlmprobeError(f"OOD metrics need ID and OOD samples (got {a.size} ID, {b.size} OOD)")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise VlmprobeError("OOD scores contain NaN/inf")
    return a, b


def auroc(id_scores, ood_scores) -> float:
    """Area under the ROC curve with ID as positives (ties count one half)."""
    from scipy.stats import rankdata

    a, b = _check(id_scores, ood_scores)
    ranks = rankdata(np.concatenate([a, b]))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2
    return float(u / (a.size * b.size))


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95) -> float:
    """FPR at the largest threshold reaching the requested TPR (see module docstring)."""
    a, b = _check(id_scores, ood_scores)
    if not 0 < tpr <= 1:
        raise VlmprobeError(f"TPR must be in (0, 1], got {tpr}")
    k = math.ceil(round(tpr * a.size, 9))
    t = np.sort(a)[::-1][k - 1]
    return float((b >= t).mean())


def roc_curve(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr), thresholds = the distinct scores in decreasing order, starting at (0, 0)."""
    a, b = _check(id_scores, ood_scores)
    thr = np.unique(np.concatenate([a, b]))[::-1]
    sa, sb = np.sort(a), np.sort(b)
    tpr = (a.size - np.searchsorted(sa, thr, side="left")) / a.size   # mean(a >= t)
    fpr = (b.size - np.searchsorted(sb, thr, side="left")) / b.size
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def ood_summary(id_scores, ood_scores, tpr: float = 0.95) -> dict:
    """{auroc, fpr@tpr, n_id, n_ood} for one confidence score."""
    a, b = _check(id_scores, ood_scores)
    return {"auroc": auroc(a, b), f"fpr@{int(round(tpr * 100))}tpr": fpr_at_tpr(a, b, tpr),
            "n_id": int(a.size), "n_ood": int(b.size)}


def mean_over_sets(per_set: dict[str, dict]) -> dict:
    """{set: {score: {auroc, fpr@95tpr, ...}}} -> {score: {auroc, fpr@95tpr, n_sets}}: the plain
    mean over the OOD sets that report the score (how MCM / MOS tables average iNaturalist, SUN,
    Places and Textures)."""
    out: dict[str, dict] = {}
    names = {n for res in per_set.values() for n, v in res.items() if isinstance(v, dict) and "auroc" in v}
    for name in sorted(names):
        rows = [res[name] for res in per_set.values() if isinstance(res.get(name), dict)]
        keys = [k for k in rows[0] if k == "auroc" or k.startswith("fpr@")]
        out[name] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
        out[name]["n_sets"] = len(rows)
    return out
