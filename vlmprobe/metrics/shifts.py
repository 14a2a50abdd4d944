"""The ``shift`` block of results.json: what a distribution-shift protocol adds to a run's
metrics, read from the dataset description in config.json and the records' ``meta``.

- ``class_subset`` (ImageNet-R/-A: 200 classes; ObjectNet: its 125 mapped classes):
  ``subset_accuracy`` = argmax over the subset's scores; ``all_classes_accuracy`` = argmax over
  every class (from the records' ``prediction_all`` when the run masked the other classes, from
  scores.npy when it scored all of them; None when neither exists, e.g. VLM likelihood over the
  subset only).
- ``label_set`` in the records' meta (ObjectNet's ImageNet protocol): correct when the
  prediction is any class of the set (``label_set_accuracy``).
- ``corruption`` / ``severity`` in the meta (ImageNet-C/-3DCC, ``--corrupt``): accuracy per
  corruption, per severity and per (corruption, severity); on ImageNet-C also CE / mCE /
  relative mCE against AlexNet (``metrics.corruption``; relative needs ``clean_error``).
Every accuracy carries its 95% Clopper-Pearson interval.
"""
from __future__ import annotations

import numpy as np

from vlmprobe.metrics.corruption import corruption_errors, errors_by_corruption
from vlmprobe.metrics.robustness import clopper_pearson


def accuracy_ci(correct) -> dict:
    """{accuracy, n, ci95: [lo, hi]} of a bool array (None accuracy when empty)."""
    c = np.asarray(correct, dtype=bool)
    if c.size == 0:
        return {"accuracy": None, "n": 0, "ci95": None}
    return {"accuracy": float(c.mean()), "n": int(c.size), "ci95": list(clopper_pearson(int(c.sum()), int(c.size)))}


def _meta(run, key):
    return run.field_values(key)


def shift_results(run, clean_error: float | None = None) -> dict | None:
    """The ``shift`` block (module docstring) or None when the run's data has no shift protocol."""
    if run.labels is None or not len(run.labels):
        return None
    data = run.config.get("data") if isinstance(run.config.get("data"), dict) else {}
    out: dict = {"top1": accuracy_ci(run.predictions == run.labels)}
    subset = data.get("class_subset")
    if subset:
        out.update(subset_accuracies(run, subset))
    sets = _meta(run, "label_set")
    if any(s is not None for s in sets):
        out["label_set_accuracy"] = accuracy_ci([p in (s or ()) for p, s in zip(run.predictions.tolist(), sets)])
    corr, sev = _meta(run, "corruption"), _meta(run, "severity")
    if all(c is not None for c in corr) and all(s is not None for s in sev):
        correct = run.predictions == run.labels
        corr_a, sev_a = np.asarray([str(c) for c in corr]), np.asarray([int(s) for s in sev])
        out["per_corruption"] = {c: accuracy_ci(correct[corr_a == c]) for c in sorted(set(corr_a))}
        out["per_severity"] = {str(s): accuracy_ci(correct[sev_a == s]) for s in sorted(set(sev_a))}
        out["per_corruption_severity"] = {f"{c}/{s}": accuracy_ci(correct[(corr_a == c) & (sev_a == s)])
                                          for c, s in sorted(set(zip(corr_a.tolist(), sev_a.tolist())))}
        if data.get("format") == "imagenet-c":
            out["corruption_error"] = corruption_errors(errors_by_corruption(correct, corr_a, sev_a), clean_error)
    return out if len(out) > 1 else None


def subset_accuracies(run, subset) -> dict:
    """``subset_accuracy`` and ``all_classes_accuracy`` (module docstring)."""
    subset = np.asarray(sorted(subset), dtype=np.int64)
    y = run.labels
    out = {"subset_classes": int(subset.size), "all_classes": len(run.classnames)}
    if run.scores is not None:
        s = np.where(np.isfinite(run.scores), run.scores, -np.inf)
        out["subset_accuracy"] = accuracy_ci(subset[s[:, subset].argmax(1)] == y)
        outside = np.setdiff1d(np.arange(s.shape[1]), subset)
        if outside.size and np.isfinite(run.scores[:, outside]).any():
            out["all_classes_accuracy"] = accuracy_ci(s.argmax(1) == y)
    else:
        out["subset_accuracy"] = accuracy_ci(run.predictions == y)
    full = [r.get("prediction_all") for r in run.records]
    if "all_classes_accuracy" not in out:
        out["all_classes_accuracy"] = (accuracy_ci([p is not None and p == t for p, t in zip(full, y.tolist())])
                                       if any("prediction_all" in r for r in run.records) else None)
    return out
