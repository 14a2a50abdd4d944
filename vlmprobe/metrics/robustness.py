"""Effective robustness and "one point per model" fits (pure functions on accuracies).

- Clopper-Pearson interval of k successes in n: [B(a/2; k, n-k+1), B(1-a/2; k+1, n-k)] with B
  the beta quantile (exact binomial interval; 0 / 1 at the ends).
- Effective robustness (Taori et al. 2020, "Measuring Robustness to Natural Distribution Shifts
  in Image Classification"; imagenet-testbed): fit ``T(shift acc) = slope * T(ID acc) + b`` by
  least squares over a baseline set of models, T = logit (``transform="logit"``) or probit; a
  model's ER = shift acc - T^-1(slope * T(its ID acc) + b). Baseline points at accuracy 0 or 1
  (an infinite logit, which clipping would turn into a lever of +-9) are left out of the fit and
  counted (``n_fit``).
- ``line_fit``: Tu et al.'s figure statistics on transformed axes: the Huber line (scikit-learn
  ``HuberRegressor``, epsilon 1.35, alpha 0) and R^2 of the ordinary least-squares line, both over
  the points strictly inside (0, 1) on both axes (as for the baseline: a run at 100% would sit at
  the clipping edge, probit 3.7, and tilt the line), and Spearman rho of all raw points.
Accuracies are fractions; they are clipped to [1e-4, 1 - 1e-4] before a transform.
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError

NO_BASELINE = "n/a: no baseline"  # the effective-robustness cell without an external baseline (Taori et al. fit on other models)

CLIP = 1e-4
TRANSFORMS = ("logit", "probit")


def transform(p, kind: str = "logit") -> np.ndarray:
    """logit(p) = log(p / (1 - p)) or probit(p) = Phi^-1(p), on clipped p."""
    p = np.clip(np.asarray(p, dtype=np.float64), CLIP, 1 - CLIP)
    if kind == "logit":
        return np.log(p / (1 - p))
    if kind == "probit":
        from scipy.stats import norm

        return norm.ppf(p)
    raise VlmprobeError(f"unknown transform {kind!r}; choose from {TRANSFORMS}")


def inverse_transform(z, kind: str = "logit") -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if kind == "logit":
        return 1.0 / (1.0 + np.exp(-z))
    if kind == "probit":
        from scipy.stats import norm

        return norm.cdf(z)
    raise VlmprobeError(f"unknown transform {kind!r}; choose from {TRANSFORMS}")


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (1 - alpha) binomial interval for k successes in n trials."""
    from scipy.stats import beta

    if n <= 0 or not 0 <= k <= n:
        raise VlmprobeError(f"Clopper-Pearson needs 0 <= k <= n, n > 0 (got k={k}, n={n})")
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def linear_fit(x, y) -> tuple[float, float]:
    """Least-squares (slope, intercept) of y on x; needs 2 distinct x."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        raise VlmprobeError(f"a line needs at least 2 baseline points with different ID accuracy (got {x.size})")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def fittable(base_id, base_shift) -> bool:
    """Whether ``baseline_fit`` has a line: at least two distinct ID accuracies among the points
    strictly inside (0, 1) on both axes."""
    return len({x for x, y in zip(base_id, base_shift) if 0 < x < 1 and 0 < y < 1}) >= 2


def baseline_fit(base_id, base_shift, kind: str = "logit") -> tuple[float, float, int]:
    """(slope, intercept, points used) of T(shift) on T(ID) over the baseline points strictly
    inside (0, 1) on both axes."""
    x, y = np.asarray(base_id, dtype=np.float64), np.asarray(base_shift, dtype=np.float64)
    keep = (x > 0) & (x < 1) & (y > 0) & (y < 1)
    slope, intercept = linear_fit(transform(x[keep], kind), transform(y[keep], kind))
    return slope, intercept, int(keep.sum())


def effective_robustness(id_acc, shift_acc, base_id, base_shift, kind: str = "logit") -> dict:
    """ER of models (id_acc, shift_acc: [M]) against the line through the baseline models
    (base_id, base_shift: [B]) on ``kind`` axes -> {slope, intercept, n_fit, predicted [M], er [M]}."""
    slope, intercept, n_fit = baseline_fit(base_id, base_shift, kind)
    predicted = inverse_transform(slope * transform(id_acc, kind) + intercept, kind)
    return {"transform": kind, "slope": slope, "intercept": intercept, "n_fit": n_fit, "predicted": predicted,
            "er": np.asarray(shift_acc, dtype=np.float64) - predicted}


def line_fit(x, y, kind: str = "probit") -> dict:
    """Tu et al.'s figure statistics of points (x, y) (accuracies) on ``kind`` axes:
    {huber: (slope, intercept) | None, spearman, r2, n, n_fit} (huber and r2 over the n_fit points
    inside (0, 1) on both axes; spearman over all n)."""
    from vlmprobe.metrics.correlation import pearson, spearman
    from vlmprobe.metrics.factors import huber_fit

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = (x > 0) & (x < 1) & (y > 0) & (y < 1)
    tx, ty = transform(x[keep], kind), transform(y[keep], kind)
    r = pearson(tx, ty)
    return {"transform": kind, "huber": huber_fit(tx, ty) if len(tx) >= 2 else None,
            "spearman": spearman(x, y), "r2": None if r is None else r * r, "n": int(len(x)),
            "n_fit": int(keep.sum())}
