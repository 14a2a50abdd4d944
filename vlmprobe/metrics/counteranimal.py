"""CounterAnimal results (Wang et al., arXiv 2403.11497): accuracy on the common and counter
groups, the drop ``100 * (acc_common - acc_counter)`` in points, per class and per background.

Inputs are per-sample arrays over the evaluated images: ``correct`` (bool), ``classes`` (class
name), ``groups`` (``common``/``counter``) and ``backgrounds`` (background name).
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError

GROUPS = ("common", "counter")


def _acc(mask: np.ndarray, correct: np.ndarray) -> float | None:
    return float(correct[mask].mean()) if mask.any() else None


def _drop(a, b) -> float | None:
    return 100.0 * (a - b) if a is not None and b is not None else None


def counteranimal_summary(correct, classes, groups, backgrounds) -> dict:
    """{"common", "counter", "drop", "n": {group: count}, "per_class": {class: {common, counter,
    drop, n_common, n_counter}}, "per_background": {background: {group, n, accuracy}}}."""
    c = np.asarray(correct, dtype=bool)
    cls, grp, bg = (np.asarray([str(x) for x in v], dtype=object) for v in (classes, groups, backgrounds))
    if not (len(cls) == len(grp) == len(bg) == c.size):
        raise VlmprobeError("CounterAnimal summary: per-sample arrays differ in length")
    if c.size and not np.isin(grp, GROUPS).all():
        bad = next(g for g in grp if g not in GROUPS)
        raise VlmprobeError(f"CounterAnimal summary: group {bad!r} is neither common nor counter")
    common, counter = _acc(grp == "common", c), _acc(grp == "counter", c)
    per_class = {}
    for name in sorted(set(cls)):
        m = cls == name
        a, b = _acc(m & (grp == "common"), c), _acc(m & (grp == "counter"), c)
        per_class[name] = {"common": a, "counter": b, "drop": _drop(a, b),
                           "n_common": int((m & (grp == "common")).sum()),
                           "n_counter": int((m & (grp == "counter")).sum())}
    per_bg = {}
    for g in GROUPS:
        for name in sorted(set(bg[grp == g])):
            m = (bg == name) & (grp == g)
            per_bg[f"{g}-{name}"] = {"group": g, "background": name, "n": int(m.sum()), "accuracy": _acc(m, c)}
    return {"common": common, "counter": counter, "drop": _drop(common, counter),
            "n": {g: int((grp == g).sum()) for g in GROUPS}, "per_class": per_class, "per_background": per_bg}


def run_counteranimal(run) -> dict | None:
    """The summary for a run on a CounterAnimal dataset (records carry meta.group), else None."""
    if run.labels is None or not run.records:
        return None
    groups = run.field_values("group")
    if not all(g in GROUPS for g in groups) or run.field_values("background").count(None):
        return None
    correct = run.predictions == run.labels
    names = [run.classnames[y] for y in run.labels]
    return counteranimal_summary(correct, names, groups, run.field_values("background"))
