"""PNG of probe test accuracy vs language-model layer (one line per pooling), with the
vision-tower and projector probes as points left of layer 0 and reference lines (CLIP probe,
CLIP zero-shot) as horizontal lines."""
from __future__ import annotations

from pathlib import Path

from .layers import layer_index


def accuracy_vs_layer(layers: list[dict], path, reference: dict | None = None, best: str | None = None,
                      title: str = "Linear probe test accuracy") -> Path:
    """``layers``: ``probe_features`` records; ``reference``: {label: accuracy} lines."""
    from ..metrics.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=100)
    poolings = sorted({r["pooling"] for r in layers if layer_index(r["layer"]) is not None})
    for pooling in poolings:
        pts = sorted((layer_index(r["layer"]), r["test_accuracy"]) for r in layers
                     if r["pooling"] == pooling and layer_index(r["layer"]) is not None)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"LM, {pooling}")
    extra = [r for r in layers if layer_index(r["layer"]) is None]
    for j, r in enumerate(extra):
        x = -(len(extra) - j)
        ax.scatter([x], [r["test_accuracy"]], marker="s", zorder=3, label=r["name"])
    for r in layers:
        if r["name"] == best:
            x = layer_index(r["layer"]) if layer_index(r["layer"]) is not None else -(len(extra) - extra.index(r))
            ax.scatter([x], [r["test_accuracy"]], s=120, facecolors="none", edgecolors="k", zorder=4,
                       label="chosen on val")
    styles = ["--", ":", "-."]
    for j, (label, acc) in enumerate((reference or {}).items()):
        if acc is not None:
            ax.axhline(acc, color="gray", ls=styles[j % len(styles)], lw=1.2, label=label)
    ax.set_xlabel("language-model layer (hidden state index; squares: vision tower / projector)")
    ax.set_ylabel("test top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, Path(path))
