"""The standard shape-bias figure (Geirhos et al. 2019, model-vs-human): one row per category,
the per-category shape bias of each model as a dot on a horizontal axis from texture (0) to
shape (1), and each model's overall shape bias as a vertical line of the same colour."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_shape_bias(results: dict[str, dict], out) -> Path:
    """``results``: {model label: shape-bias dict (``metrics.shape_bias.shape_bias`` output)} -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = sorted({c for r in results.values() for c in r.get("per_category", {})})
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(cats), 4) + 1.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for m, (label, res) in enumerate(results.items()):
        color = colors[m % len(colors)]
        vals = [(res["per_category"].get(c) or {}).get("shape_bias") for c in cats]
        ys = [i for i, v in enumerate(vals) if v is not None]
        ax.plot([vals[i] for i in ys], ys, "o", color=color, label=label, alpha=0.85)
        overall = (res.get("overall") or {}).get("shape_bias")
        if overall is not None:
            ax.axvline(overall, color=color, linestyle="--", linewidth=1)
    ax.set_yticks(np.arange(len(cats)), cats)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("shape bias: fraction of shape decisions (0 = texture, 1 = shape)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.02 * len(cats) / 4), ncol=2, fontsize=8,
              frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def run_label(config: dict, run_dir: Path) -> str:
    """``model spec (method)`` from a run's config.json, else the directory name."""
    model = (config.get("model") or {}).get("spec")
    method = (config.get("method") or {}).get("name")
    return f"{model} ({method})" if model and method else Path(run_dir).name


def compare_shape_bias(run_dirs, png, labels=None) -> dict:
    """Shape bias of several cue-conflict runs, recomputed from their files -> the per-category
    dot plot at ``png``; returns ``{label: {run, overall, per_category, excluded_same_cue}}``."""
    from ..errors import VlmprobeError
    from .rundata import load_run
    from .shape_bias import shape_bias_from_records

    labels = list(labels) if labels else []
    if labels and len(labels) != len(run_dirs):
        raise VlmprobeError(f"{len(labels)} labels for {len(run_dirs)} runs")
    table = {}
    for n, d in enumerate(run_dirs):
        run = load_run(d)
        bias = shape_bias_from_records(run.records, run.classnames)
        if bias is None:
            raise VlmprobeError(f"{Path(d) / 'samples.jsonl'}: no record has meta.shape/meta.texture "
                                "(not a cue-conflict run)")
        label = labels[n] if labels else run_label(run.config, Path(d))
        table[label] = {"run": str(d), **bias}
    plot_shape_bias(table, png)
    return table
