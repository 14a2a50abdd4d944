"""Accuracy family: top-1, top-k, per-class accuracy, mean per-class recall, worst-k, confusions.

Conventions:
- ``-1`` predictions (no prediction) count as wrong.
- A class with no samples has per-class accuracy NaN; it is left out of the mean per-class
  recall and of worst-k ("classes present" only).
- top-k from scores: sample i is correct when the rank of its true class is < k, where
  ``rank = #{j: s_j > s_y} + #{j < y: s_j == s_y}`` (ties broken by lower class index, the same
  rule as ``np.argmax``); k is capped at K.
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.metrics.validate import check_k


def correct_mask(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """bool [N]: ``predictions == labels`` (a ``-1`` prediction is never correct)."""
    return (predictions == labels) & (predictions >= 0)


def top1_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """mean_i 1[pred_i == y_i]; NaN for N = 0."""
    if len(labels) == 0:
        return float("nan")
    return float(correct_mask(labels, predictions).mean())


def true_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """int [N]: 0-based rank of the true class, ties broken by lower class index."""
    n, k = scores.shape
    s_y = scores[np.arange(n), labels][:, None]
    higher = (scores > s_y).sum(axis=1)
    tied_before = ((scores == s_y) & (np.arange(k)[None, :] < labels[:, None])).sum(axis=1)
    return higher + tied_before


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """mean_i 1[rank_i(y_i) < min(k, K)]; NaN for N = 0."""
    k = check_k(k)
    if len(labels) == 0:
        return float("nan")
    return float((true_class_rank(scores, labels) < min(k, scores.shape[1])).mean())


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(acc [K], count [K]): acc_c = #{i: y_i = c, pred_i = c} / #{i: y_i = c}; NaN where count = 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
    hits = np.bincount(labels[correct_mask(labels, predictions)], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return acc, counts


def mean_per_class_recall(per_class: np.ndarray) -> float:
    """Mean of per-class accuracy over classes present (balanced accuracy); NaN if none."""
    present = per_class[~np.isnan(per_class)]
    return float(present.mean()) if present.size else float("nan")


def worst_k(values: np.ndarray, k: int) -> tuple[float, np.ndarray, int]:
    """(mean of the k smallest values, their class indices ascending by value, k used).

    NaN entries (absent classes) are ignored; k is capped at the number of non-NaN values;
    ties are broken by lower class index (stable sort). Errors when no value is present.
    """
    k = check_k(k, "worst-k k")
    idx = np.flatnonzero(~np.isnan(values))
    if idx.size == 0:
        raise VlmprobeError("worst-k: no class has samples")
    order = idx[np.argsort(values[idx], kind="stable")]
    used = min(k, idx.size)
    chosen = order[:used]
    return float(values[chosen].mean()), chosen, used


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """int [K, K+1]: row = true class, column = predicted class; the last column counts -1."""
    cols = np.where(predictions < 0, num_classes, predictions)
    flat = labels * (num_classes + 1) + cols
    return np.bincount(flat, minlength=num_classes * (num_classes + 1)).reshape(num_classes, num_classes + 1)


def top_confusions(labels: np.ndarray, predictions: np.ndarray, num_classes: int, top: int = 10) -> list[tuple[int, int, int]]:
    """The ``top`` most frequent (true, predicted, count) pairs with true != predicted and
    predicted != -1; ordered by count desc, then true, then predicted index."""
    if len(labels) == 0 or top <= 0:
        return []
    wrong = (predictions != labels) & (predictions >= 0)
    if not wrong.any():
        return []
    pairs = labels[wrong] * num_classes + predictions[wrong]
    uniq, cnt = np.unique(pairs, return_counts=True)
    order = np.lexsort((uniq, -cnt))[:top]
    return [(int(uniq[o] // num_classes), int(uniq[o] % num_classes), int(cnt[o])) for o in order]


def credit_label_sets(labels: np.ndarray, predictions: np.ndarray, scores: np.ndarray | None,
                      label_sets: list) -> tuple[np.ndarray, np.ndarray | None]:
    """ObjectNet's label-set rule (Barbu et al. 2019; imagenet-testbed's ObjectNet evaluation): an
    image of ObjectNet class O is classified correctly when the prediction is ANY ImageNet class
    mapped to O. ``label_sets[i]``: the mapped class indices of sample i (None: an ordinary
    sample); ``labels[i]`` must be one of them (the loader uses the smallest). Returns
    (predictions, scores) in which that rule is an exact-index comparison with ``labels``:

    - a prediction inside sample i's set becomes ``labels[i]``;
    - sample i's score row gets ``s[labels[i]] = max_{j in set_i} s[j]`` and ``-inf`` at the
      set's other classes, i.e. the image's ObjectNet class is scored by the max over its mapped
      ImageNet scores (the testbed's rule), so the argmax is the label exactly when the original
      argmax lies in the set, and top-5, calibration and CMM follow the same rule.

    Every other sample is returned unchanged. Inputs are not modified."""
    preds = np.array(predictions, copy=True)
    s = None if scores is None else np.array(scores, dtype=np.float64 if scores.dtype == np.float64 else np.float32,
                                             copy=True)
    for i, members in enumerate(label_sets):
        if not members:
            continue
        members = [int(m) for m in members]
        y = int(labels[i])
        if y not in members:
            raise VlmprobeError(f"sample {i}: label {y} is not in its label set {members}")
        if preds[i] in members:
            preds[i] = y
        if s is not None:
            best = np.max(s[i, members])
            s[i, members] = -np.inf
            s[i, y] = best
    return preds, s
