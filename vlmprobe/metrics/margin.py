"""Class-wise matching margin (CMM; "Investigating the Limitation of CLIP Models: The
Worst-Performing Categories").

With s(x, j) the score of image x for class j (any score matrix: CLIP logits, VLM log-probs,
probe logits):
    m(x)  = s(x, y) - max_{j != y} s(x, j)        (> 0 iff y is the unique argmax)
    CMM_c = mean of m(x) over images x with class c   (NaN for a class with no images)
    worst-k CMM = mean of the k smallest CMM_c     (k capped at the classes present)
Class membership y is the ground truth, or, for the pseudo-label variant, a reference
predictor's labels (e.g. CLIP zero-shot predictions on unlabelled images). Needs K >= 2.
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError


def matching_margins(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float [N]: m(x_i) = s_i[y_i] - max_{j != y_i} s_i[j]."""
    n, k = scores.shape
    if k < 2:
        raise VlmprobeError("matching margin needs at least 2 classes")
    rows = np.arange(n)
    own = scores[rows, labels]
    others = scores.copy()
    others[rows, labels] = -np.inf
    return own - others.max(axis=1)


def class_matching_margin(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float [K]: CMM_c = mean_{i: y_i = c} m(x_i); NaN where class c has no images."""
    m = matching_margins(scores, labels)
    counts = np.bincount(labels, minlength=num_classes)
    sums = np.bincount(labels, weights=m, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def pseudo_labels_from_scores(reference_scores: np.ndarray) -> np.ndarray:
    """int [N]: argmax of a reference predictor's scores (ties -> lowest index), for the
    label-free CMM variant."""
    return np.asarray(reference_scores).argmax(axis=1)
