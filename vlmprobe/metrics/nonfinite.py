"""Scores that came out NaN or infinite (fp16/bf16 overflow, a broken checkpoint) are never
turned into predictions.

``predict(scores)``: the row-wise argmax ``[B]`` (ties to the lowest index) with ``-1`` ("no
prediction") for every row flagged by ``nonfinite_rows``, plus that mask. Records of flagged rows
carry ``"nonfinite_scores": true`` and ``"prediction": null``; ``vlmprobe.metrics.rundata``
leaves them out of every metric and results.json counts them (``counts.nonfinite_scores``) and
lists their ids (``nonfinite_samples``), exactly like unreadable images are counted, not dropped.
"""
from __future__ import annotations

import numpy as np

FLAG = "nonfinite_scores"  # the record field


def nonfinite_rows(scores, allow_neg_inf: bool = False) -> np.ndarray:
    """bool [B]: rows of ``scores`` [B, K] holding NaN or +inf, or -inf (unless ``allow_neg_inf``:
    a sampled label space marks classes not offered with -inf), or no finite entry at all."""
    arr = np.asarray(scores, dtype=np.float64)
    bad = np.isnan(arr) | (arr == np.inf)
    if not allow_neg_inf:
        bad |= arr == -np.inf
    return bad.any(axis=1) | ~np.isfinite(arr).any(axis=1)


def predict(scores, allow_neg_inf: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """-> (int64 [B] argmax or -1 for flagged rows, bool [B] flagged rows)."""
    arr = np.asarray(scores, dtype=np.float64)
    bad = nonfinite_rows(arr, allow_neg_inf)
    pred = np.where(bad, -1, np.nan_to_num(arr, nan=-np.inf).argmax(axis=1) if arr.size else 0)
    return pred.astype(np.int64), bad


def prediction_fields(pred: int, bad: bool) -> dict:
    """The record fields for one row: ``{"prediction": p}`` or ``{"prediction": None, FLAG: True}``."""
    return {"prediction": None, FLAG: True} if bad else {"prediction": int(pred)}
