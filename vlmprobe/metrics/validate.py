"""Input checks shared by every metric: one place that turns bad arrays into one-line errors.

Conventions used across ``vlmprobe.metrics``:
- ``labels``: int array [N], class indices in ``[0, K)``.
- ``predictions``: int array [N], class index or ``-1`` for "no prediction" (an unmatched
  generation, an unparseable answer); ``-1`` always counts as wrong.
- ``scores``: float array [N, K], higher = more likely (CLIP logits, VLM log-probs, probe logits).
  NaN and +/-inf are rejected: skipped samples must be dropped before calling a metric.
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError


def check_labels(labels, num_classes: int, what: str = "labels") -> np.ndarray:
    """Return ``labels`` as int64 [N]; error if not 1-D integers in ``[0, num_classes)``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise VlmprobeError(f"{what}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise VlmprobeError(f"{what}: expected integer class indices, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise VlmprobeError(
            f"{what}: {int(bad.sum())} value(s) outside the class list [0, {num_classes}) "
            f"(first at position {i}: {int(arr[i])})")
    return arr.astype(np.int64)


def check_predictions(predictions, num_classes: int, n: int) -> np.ndarray:
    """Return predictions as int64 [N]; ``None``/``-1`` mean no prediction (-> -1)."""
    if not isinstance(predictions, np.ndarray):
        predictions = [-1 if p is None else p for p in predictions]
    arr = np.asarray(predictions)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise VlmprobeError(f"predictions: expected shape ({n},), got {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise VlmprobeError(f"predictions: expected integer class indices or -1, got dtype {arr.dtype}")
    bad = (arr < -1) | (arr >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise VlmprobeError(
            f"predictions: {int(bad.sum())} value(s) outside [-1, {num_classes}) (first at position {i}: {int(arr[i])})")
    return arr.astype(np.int64)


def check_scores(scores, n: int | None = None, num_classes: int | None = None, what: str = "scores") -> np.ndarray:
    """Return scores as float64 [N, K]; error on wrong shape, on NaN or +inf entries, and on a
    row without a finite entry. ``-inf`` means "class not offered" (a sampled label space, e.g.
    ``--num-candidates``): such a class gets probability 0 and is never the prediction."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise VlmprobeError(f"{what}: expected a 2-D [N, K] array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise VlmprobeError(f"{what}: {arr.shape[0]} rows for {n} samples")
    if num_classes is not None and arr.shape[1] != num_classes:
        raise VlmprobeError(f"{what}: {arr.shape[1]} columns for {num_classes} classes")
    bad = np.isnan(arr) | (arr == np.inf)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise VlmprobeError(
            f"{what}: {len(rows)} row(s) contain NaN/+inf (first row {int(rows[0])}); "
            "drop skipped samples before computing metrics")
    if arr.size and not np.isfinite(arr).any(axis=1).all():
        row = int(np.flatnonzero(~np.isfinite(arr).any(axis=1))[0])
        raise VlmprobeError(f"{what}: row {row} has no finite score")
    return arr


def check_k(k: int, what: str = "k") -> int:
    """A positive integer k."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise VlmprobeError(f"{what} must be a positive integer, got {k!r}")
    return int(k)


def finite_or_none(x):
    """float(x), or None when x is NaN/inf (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None
