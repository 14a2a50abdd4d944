"""Visual-factor robustness (ImageNet-X) and ImageNet-ReaL accuracy of a run.

- Factor accuracy (ImageNet-X, Idrissi et al. 2023): ``acc_f = mean(correct_i : x_i has f)``
  over the joined images; overall ``acc = mean(correct_i)`` over the same images;
  **error ratio** ``(1 - acc_f) / (1 - acc)`` (> 1: the factor hurts more than average).
  Reported for the top-factor and multi-factor annotations, with counts.
- ReaL accuracy (Beyer et al. 2020): ``mean(pred_i in ReaL_i)`` over images whose ReaL set is
  non-empty; images with an empty set are excluded and counted.
- Tu et al.'s figure (``model_scatter.factor_panels``): per factor, ``probit(acc_f)`` against
  ``probit(acc)`` (probit = inverse normal CDF), one point per run, the y = x line and a Huber-loss
  robust linear fit (``huber_fit``: scikit-learn ``HuberRegressor``) with Spearman and R².

Run predictions are dataset class indices; ReaL labels are ImageNet indices, so run classes are
mapped through their open_clip ImageNet names (a merged duplicate name, e.g. "missile", maps to
both its indices and counts as correct when either is a ReaL label).
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError


def factor_accuracy(correct, member, names) -> dict:
    """correct bool [N]; member int/bool [N, F]; names F factor names ->
    {"n", "accuracy", "factors": {name: {"n", "accuracy", "error_ratio"}}}."""
    c = np.asarray(correct, dtype=bool)
    m = np.asarray(member, dtype=bool).reshape(len(c), len(names))
    acc = float(c.mean()) if c.size else None
    out = {}
    for j, name in enumerate(names):
        n = int(m[:, j].sum())
        a = float(c[m[:, j]].mean()) if n else None
        ratio = (1 - a) / (1 - acc) if (a is not None and acc is not None and acc < 1) else None
        out[name] = {"n": n, "accuracy": a, "error_ratio": ratio}
    return {"n": int(c.size), "accuracy": acc, "factors": out}


def real_accuracy(pred_sets, real_sets) -> dict:
    """pred_sets: per image the set of ImageNet indices the prediction stands for (empty: no
    prediction); real_sets: per image its ReaL labels -> {"accuracy", "n", "n_excluded_no_label"}."""
    keep = [i for i, r in enumerate(real_sets) if r]
    hits = [bool(set(pred_sets[i]) & set(real_sets[i])) for i in keep]
    return {"accuracy": float(np.mean(hits)) if hits else None, "n": len(keep),
            "n_excluded_no_label": len(real_sets) - len(keep)}


def huber_fit(x, y) -> tuple[float, float] | None:
    """Robust line ``y = slope * x + intercept`` (Huber loss); None with fewer than 2 distinct x."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(np.unique(x)) < 2:
        return None
    from sklearn.linear_model import HuberRegressor

    reg = HuberRegressor(epsilon=1.35, alpha=0.0).fit(x[:, None], y)
    return float(reg.coef_[0]), float(reg.intercept_)


# ------------------------------------------------------------------ joins with run directories

def run_correct(run) -> np.ndarray:
    """bool [N] over the run's non-skipped records (no prediction = wrong)."""
    if run.labels is None:
        raise VlmprobeError(f"{run.path}: records have no integer labels to score")
    return run.predictions == run.labels


def imagenet_sets(run) -> list[tuple[int, ...]]:
    """Per run class, the ImageNet indices its name stands for (open_clip names)."""
    from vlmprobe.data.imagenet_classes import imagenet_names

    names = list(imagenet_names())
    if list(run.classnames) == names:
        return [(i,) for i in range(len(names))]
    index: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        index.setdefault(n, []).append(i)
    out = []
    for c in run.classnames:
        if c not in index:
            raise VlmprobeError(f"{run.path}: class {c!r} is not an ImageNet-1k class name (ReaL labels are "
                                "ImageNet indices; evaluate with --classes imagenet)")
        out.append(tuple(index[c]))
    return out


def run_factor_results(run, source: str = "imagenet-x", include_prototypes: bool = False,
                       variant: str | None = None) -> dict:
    """{"source", "variants": {top|multi|file: factor_accuracy + "n_unmatched"}} for a run on
    ImageNet val, joined by file name; ``variant`` keeps only that annotation."""
    from vlmprobe.data.imagenet_x import FACTORS, factor_sources, join_by_file_name

    sources = factor_sources(source, include_prototypes)
    if variant is not None:
        if variant not in sources:
            raise VlmprobeError(f"--factor-variant {variant!r}: choose from {', '.join(sources)} "
                                f"(--factors {source})")
        sources = {variant: sources[variant]}
    correct = run_correct(run)
    images = [r["image"] for r in run.records]
    out = {}
    for name, table in sources.items():
        rows = join_by_file_name(images, table, f"--factors {source}", run.path)
        have = np.array([r is not None for r in rows], dtype=bool)
        member = np.array([[r[f] for f in FACTORS] for r in rows if r is not None], dtype=np.int64)
        member = member.reshape(-1, len(FACTORS))
        res = factor_accuracy(correct[have], member, FACTORS)
        res["n_unmatched"] = int((~have).sum())
        out[name] = res
    return {"source": source, "prototypes_excluded": not include_prototypes, "variants": out}


def run_real_results(run, source: str | None = None) -> dict:
    """ReaL accuracy of a run on ImageNet val (joined by file name)."""
    from vlmprobe.data.imagenet_x import join_by_file_name, read_real_labels

    table = read_real_labels(source)
    rows = join_by_file_name([r["image"] for r in run.records], table, "--real-labels", run.path)
    sets = imagenet_sets(run)
    keep = [i for i, r in enumerate(rows) if r is not None]
    preds = [sets[run.predictions[i]] if run.predictions[i] >= 0 else () for i in keep]
    res = real_accuracy(preds, [rows[i] for i in keep])
    res.update(source=source or "imagenet-x", n_unmatched=len(rows) - len(keep))
    return res
