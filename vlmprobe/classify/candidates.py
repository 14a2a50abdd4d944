"""Label-space sampling: which classes one image is asked to choose from, and in which order.

``sample_candidates(label, K, N, rng, shuffle)`` returns class indices:

- ``N`` (2 <= N <= K, or 1): the true class plus ``N - 1`` distinct other classes drawn
  uniformly without replacement (``rng.choice`` over the K - 1 other classes);
- ``N = None`` ("all"): all K classes.

Order: ``shuffle=True`` permutes the list with the same ``rng`` (the paper shuffles labels per
image); ``shuffle=False`` keeps dataset class order (ascending index), so the true class's
position is not a giveaway either way. All randomness comes from ``rng``, which the runner
seeds per sample (run seed, sample id): the same sample gets the same candidates whatever the
batch size, order of processing or resume point.
"""
from __future__ import annotations

import numpy as np

from ..errors import VlmprobeError


def parse_num_candidates(value: str | int | None) -> int | None:
    """``"all"``/None -> None; a positive integer (str or int) -> int; else VlmprobeError."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise VlmprobeError(f"--num-candidates {value!r}: expected a positive integer or 'all'") from None
    if n < 1:
        raise VlmprobeError(f"--num-candidates {value!r}: expected a positive integer or 'all'")
    return n


def check_num_candidates(num_candidates: int | None, num_classes: int) -> None:
    """Raise when N exceeds the dataset's K classes (N = K is the same as 'all')."""
    if num_candidates is not None and num_candidates > num_classes:
        raise VlmprobeError(f"--num-candidates {num_candidates} exceeds the dataset's {num_classes} classes "
                            "(use 'all' or a smaller number)")


def sample_candidates(label: int, num_classes: int, num_candidates: int | None, rng: np.random.Generator,
                      shuffle: bool = True) -> list[int]:
    """Class indices offered for one image (see module docstring); always contains ``label``."""
    if label == -1:
        raise VlmprobeError("--num-candidates needs labeled images (the true class is always offered)")
    if not 0 <= label < num_classes:
        raise VlmprobeError(f"label {label} is outside the {num_classes} classes")
    check_num_candidates(num_candidates, num_classes)
    if num_candidates is None or num_candidates == num_classes:
        chosen = np.arange(num_classes)
    else:
        others = rng.choice(num_classes - 1, size=num_candidates - 1, replace=False)
        others = others + (others >= label)  # skip the true class: [0, K-1) -> [0, K) \ {label}
        chosen = np.sort(np.concatenate([[label], others]))
    if shuffle:
        chosen = rng.permutation(chosen)
    return [int(c) for c in chosen]
