"""PNG figures for the metrics (matplotlib, Agg backend; nothing is shown on screen)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def reliability_diagram(bins: dict, path, title: str = "Reliability", ece: float | None = None) -> Path:
    """Bar per confidence bin: accuracy (bars) vs the diagonal; ``bins`` from
    ``calibration.reliability_bins``. Empty bins are drawn empty."""
    plt = _pyplot()
    edges = np.asarray(bins["edges"])
    width = np.diff(edges)
    acc = np.nan_to_num(np.asarray(bins["accuracy"], dtype=float))
    conf = np.asarray(bins["confidence"], dtype=float)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.bar(edges[:-1], acc, width=width, align="edge", edgecolor="black", color="#4878cf", label="accuracy")
    gap_base = np.where(np.isnan(conf), 0, np.minimum(acc, np.nan_to_num(conf)))
    gap = np.where(np.isnan(conf), 0, np.abs(np.nan_to_num(conf) - acc))
    ax.bar(edges[:-1], gap, bottom=gap_base, width=width, align="edge", color="#d65f5f", alpha=0.4, label="gap")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title + (f" (ECE {ece:.3f})" if ece is not None else ""))
    ax.legend(loc="upper left")
    return _save(fig, path)


def roc_plot(curves: dict, path, title: str = "OOD detection (ID positive)") -> Path:
    """``curves``: {label: (fpr, tpr, auroc)}; one line per score."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate (OOD)")
    ax.set_ylabel("true positive rate (ID)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return _save(fig, path)


def frequency_scatter(counts, accuracy, names, path, title: str = "Class frequency vs accuracy", annotate: int = 10) -> Path:
    """log10(1 + mentions) on x, per-class accuracy on y; the ``annotate`` most and least
    frequent classes are labelled."""
    plt = _pyplot()
    x = np.log10(1.0 + np.asarray(counts, dtype=float))
    y = np.asarray(accuracy, dtype=float)
    keep = ~np.isnan(y)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    ax.scatter(x[keep], y[keep], s=12, alpha=0.7)
    order = np.argsort(x[keep])
    idx = np.flatnonzero(keep)[order]
    for i in list(idx[:annotate // 2]) + list(idx[-(annotate - annotate // 2):] if annotate > 1 else []):
        ax.annotate(str(names[i]), (x[i], y[i]), fontsize=6, alpha=0.8)
    ax.set_xlabel("log10(1 + mentions in corpus)")
    ax.set_ylabel("per-class accuracy")
    ax.set_title(title)
    return _save(fig, path)


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return path
