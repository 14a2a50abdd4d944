"""Group shift: accuracy per value of a sample field (e.g. CounterAnimal ``common``/``counter``
backgrounds, ImageNet-X factors).

- acc_g = mean of correct_i over samples i with group value g.
- error ratio_g = (1 - acc_g) / (1 - acc_all) (ImageNet-X convention; None when acc_all = 1).
- drop(a, b) = 100 * (acc_a - acc_b), in accuracy points.
Samples whose value is missing (None or an empty list) are counted as ``n_missing`` and left
out; a list value (e.g. several ImageNet-X factors of one image) puts the sample in each listed
group. Group values are compared as strings (JSON keys).
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.metrics.validate import finite_or_none


def group_accuracy(correct, values, field: str = "group") -> dict:
    """{"field", "n_missing", "groups": {value: {"n", "accuracy", "error_ratio"}}}."""
    correct = np.asarray(correct, dtype=bool)
    if len(values) != correct.size:
        raise VlmprobeError(f"group field {field!r}: {len(values)} values for {correct.size} samples")
    members = [[str(x) for x in v] if isinstance(v, (list, tuple)) else ([] if v is None else [str(v)])
               for v in values]
    present = np.array([bool(m) for m in members], dtype=bool)
    if correct.size and not present.any():
        raise VlmprobeError(f"group field {field!r} is missing from every sample")
    overall_err = 1.0 - float(correct[present].mean()) if present.any() else float("nan")
    index: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        for g in dict.fromkeys(m):
            index.setdefault(g, []).append(i)
    out = {}
    for g in sorted(index):
        acc = float(correct[index[g]].mean())
        out[g] = {"n": len(index[g]), "accuracy": acc,
                  "error_ratio": finite_or_none((1.0 - acc) / overall_err) if overall_err > 0 else None}
    return {"field": field, "n_missing": int((~present).sum()), "groups": out}


def group_drop(report: dict, a: str, b: str) -> dict:
    """{"from", "to", "points"}: 100 * (acc_a - acc_b) from a ``group_accuracy`` report."""
    groups = report["groups"]
    for g in (a, b):
        if g not in groups:
            raise VlmprobeError(
                f"group {g!r} has no samples in field {report['field']!r} (values: {', '.join(groups) or 'none'})")
    return {"from": a, "to": b, "points": 100.0 * (groups[a]["accuracy"] - groups[b]["accuracy"])}
