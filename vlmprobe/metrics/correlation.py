"""Rank and linear correlation over paired values, skipping pairs with a NaN/inf side.

Returns None (JSON null) instead of NaN when fewer than 3 finite pairs remain or either side is
constant, since a correlation is undefined there. Spearman uses average ranks for ties.
"""
from __future__ import annotations

import numpy as np


def _finite_pairs(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def pearson(x, y) -> float | None:
    """r = cov(x, y) / (std(x) std(y)) over finite pairs; None when undefined."""
    x, y = _finite_pairs(x, y)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    xc, yc = x - x.mean(), y - y.mean()
    return float((xc @ yc) / np.sqrt((xc @ xc) * (yc @ yc)))


def spearman(x, y) -> float | None:
    """Pearson correlation of the average ranks of x and y; None when undefined."""
    from scipy.stats import rankdata

    x, y = _finite_pairs(x, y)
    if x.size < 3:
        return None
    return pearson(rankdata(x), rankdata(y))
