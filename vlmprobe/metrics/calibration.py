"""Calibration of softmax(scores / T) (top-label): ECE, NLL, Brier, temperature scaling.

- probabilities p = softmax(s / T) over the K classes of each row (max-subtracted, stable).
- ECE = sum_b (n_b / N) |acc_b - conf_b| over 15 equal-width bins of the top-label
  confidence conf_i = max_j p_ij, with acc_i = 1[argmax_j p_ij == y_i] (argmax ties -> lowest
  index). Bin-edge convention ``"right"`` (default, as in most papers' code): bin b holds
  (b/B, (b+1)/B], so a confidence of exactly 1.0 falls in the last bin. ``"left"``
  (torchmetrics): [b/B, (b+1)/B), with exactly 1.0 put in the last bin too.
- NLL = -mean_i log p_i,y_i (computed with log-softmax, no clipping).
- Brier = mean_i sum_j (p_ij - 1[j == y_i])^2 (multi-class form, range [0, 2]).
- Temperature scaling: T* = argmin_T NLL(softmax(s / T)) on a held-out split, by bounded 1-D
  minimisation over log T in [log 1e-3, log 1e3]; then applied to the remaining samples.
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError

DEFAULT_BINS = 15


def log_softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float [N, K]: log softmax(s / T) per row."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float [N, K]: softmax(s / T) per row."""
    return np.exp(log_softmax(scores, temperature))


def bin_index(confidences: np.ndarray, n_bins: int = DEFAULT_BINS, edges: str = "right") -> np.ndarray:
    """int [N]: bin of each confidence in [0, 1] under the stated edge convention."""
    c = np.asarray(confidences, dtype=np.float64)
    grid = np.linspace(0.0, 1.0, n_bins + 1)
    if edges == "right":      # edges[b] < c <= edges[b+1]; c = 0 goes to bin 0
        b = np.searchsorted(grid, c, side="left") - 1
    elif edges == "left":     # edges[b] <= c < edges[b+1]; c = 1 goes to the last bin
        b = np.searchsorted(grid, c, side="right") - 1
    else:
        raise VlmprobeError(f"ECE bin edges must be 'right' or 'left', got {edges!r}")
    return np.clip(b, 0, n_bins - 1)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS, edges: str = "right") -> dict:
    """Per-bin count, mean confidence and accuracy (NaN for empty bins), plus bin edges."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    b = bin_index(conf, n_bins, edges)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "count": count, "confidence": mean_conf, "accuracy": acc}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS, edges: str = "right") -> float:
    """ECE = sum_b (n_b / N) |acc_b - conf_b| (top-label, equal-width bins)."""
    if len(labels) == 0:
        return float("nan")
    bins = reliability_bins(probs, labels, n_bins, edges)
    keep = bins["count"] > 0
    w = bins["count"][keep] / len(labels)
    return float((w * np.abs(bins["accuracy"][keep] - bins["confidence"][keep])).sum())


def negative_log_likelihood(scores: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """-mean_i log softmax(s_i / T)[y_i]."""
    if len(labels) == 0:
        return float("nan")
    lp = log_softmax(scores, temperature)
    return float(-lp[np.arange(len(labels)), labels].mean())


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """mean_i sum_j (p_ij - onehot(y_i)_j)^2."""
    if len(labels) == 0:
        return float("nan")
    target = np.zeros_like(probs)
    target[np.arange(len(labels)), labels] = 1.0
    return float(((probs - target) ** 2).sum(axis=1).mean())


def calibration_summary(scores: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                        n_bins: int = DEFAULT_BINS, edges: str = "right") -> dict:
    """{ece, nll, brier, mean_confidence, accuracy (argmax of scores), n} at temperature T."""
    probs = softmax(scores, temperature)
    return {
        "n": int(len(labels)),
        "ece": expected_calibration_error(probs, labels, n_bins, edges),
        "nll": negative_log_likelihood(scores, labels, temperature),
        "brier": brier_score(probs, labels),
        "mean_confidence": float(probs.max(axis=1).mean()) if len(labels) else float("nan"),
        "accuracy": float((probs.argmax(axis=1) == labels).mean()) if len(labels) else float("nan"),
    }


def fit_temperature(scores: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (1e-3, 1e3)) -> float:
    """T* = argmin_T NLL(softmax(s / T)), bounded 1-D search over log T (Brent/bounded)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        raise VlmprobeError("temperature scaling: the calibration split has no samples")
    res = minimize_scalar(lambda lt: negative_log_likelihood(scores, labels, float(np.exp(lt))),
                          bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))


def temperature_scaling(scores: np.ndarray, labels: np.ndarray, fit_mask: np.ndarray,
                        n_bins: int = DEFAULT_BINS, edges: str = "right") -> dict:
    """Fit T on rows where ``fit_mask`` is True, evaluate before/after on the other rows."""
    fit_mask = np.asarray(fit_mask, dtype=bool)
    if fit_mask.all() or not fit_mask.any():
        raise VlmprobeError(
            f"temperature scaling needs samples on both sides of the calibration split "
            f"(fit: {int(fit_mask.sum())}, evaluate: {int((~fit_mask).sum())})")
    bounds = (1e-3, 1e3)
    t = fit_temperature(scores[fit_mask], labels[fit_mask], bounds)
    ev_s, ev_y = scores[~fit_mask], labels[~fit_mask]
    return {
        "temperature": t,
        "temperature_at_bound": bool(min(abs(np.log(t / b)) for b in bounds) < 1e-3),
        "n_fit": int(fit_mask.sum()),
        "before": calibration_summary(ev_s, ev_y, 1.0, n_bins, edges),
        "after": calibration_summary(ev_s, ev_y, t, n_bins, edges),
    }
