"""Side-by-side tables of several runs (``vlmprobe compare``) and Tu et al.'s factor figure.

- ``group_table(runs, field, a, b)``: per run (model, method) the accuracy on group ``a`` and
  ``b`` of sample field ``field`` and the drop ``100 * (acc_a - acc_b)`` (CounterAnimal:
  ``group`` with ``common``/``counter``: the paper's table).
- ``factor_table(runs, source, variant)``: per run overall accuracy and per-factor accuracy /
  error ratio (ImageNet-X; ``metrics.factors``).
- ``factor_plot``: one panel per factor, probit(factor acc) vs probit(overall acc), one point per
  run, Huber robust fit and y = x (Tu et al., "Toward a Holistic Evaluation of Robustness in CLIP
  Models").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vlmprobe.metrics import groups as grp_m
from vlmprobe.metrics.factors import huber_fit, probit, run_correct, run_factor_results


def run_label(run) -> dict:
    """model spec, method name (+ what restricts its label space) of a run."""
    model = run.config.get("model", {}) if isinstance(run.config.get("model"), dict) else {}
    method = run.config.get("method", {}) if isinstance(run.config.get("method"), dict) else {}
    name = method.get("name") or run.method or "?"
    space = method.get("label_space")
    extra = ""
    if isinstance(space, dict):  # per-class confusers (1-vs-k) or a dataset's class subset (R/A: 200-way)
        extra = " 1-vs-k" if "confusers" in space else f" {space.get('num_classes', '?')}-way"
    if method.get("num_candidates") not in (None, "all"):
        extra += f" N={method['num_candidates']}"
    return {"run": str(run.path), "model": model.get("spec", "?"), "method": name + extra}


def group_table(runs, field: str = "group", a: str = "common", b: str = "counter") -> list[dict]:
    rows = []
    for run in runs:
        rep = grp_m.group_accuracy(run_correct(run), run.field_values(field), field)
        drop = grp_m.group_drop(rep, a, b)
        g = rep["groups"]
        rows.append({**run_label(run), a: g[a]["accuracy"], b: g[b]["accuracy"], "drop": drop["points"],
                     f"n_{a}": g[a]["n"], f"n_{b}": g[b]["n"]})
    return rows


def default_variant(variants) -> str:
    """The annotation shown when none is asked for: top-factor for imagenet-x, else the only one."""
    return "top" if "top" in variants else next(iter(variants))


def factor_table(runs, source: str = "imagenet-x", variant: str | None = None) -> tuple[list[dict], str]:
    rows, used = [], variant
    for run in runs:
        res = run_factor_results(run, source, variant=variant)["variants"]
        used = used or default_variant(res)
        v = res[used]
        rows.append({**run_label(run), "n": v["n"], "accuracy": v["accuracy"],
                     "factors": {f: {"accuracy": x["accuracy"], "error_ratio": x["error_ratio"], "n": x["n"]}
                                 for f, x in v["factors"].items()}})
    return rows, used


def format_table(header: list[str], rows: list[list], digits: int = 1) -> str:
    """A plain markdown table; floats with ``digits`` decimals, None as "-"."""
    def cell(v):
        return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))
    body = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in body])


def factor_plot(rows: list[dict], path, title: str = "ImageNet-X factors") -> Path:
    """Tu et al.'s figure from ``factor_table`` rows (see module docstring)."""
    from vlmprobe.metrics.plots import _pyplot, _save

    plt = _pyplot()
    factors = list(rows[0]["factors"]) if rows else []
    ncol = 4
    nrow = max(1, int(np.ceil(len(factors) / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.0 * nrow), dpi=90, squeeze=False)
    ticks = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.97])
    for ax, f in zip(axes.flat, factors):
        pts = [(r["accuracy"], r["factors"][f]["accuracy"], r["model"]) for r in rows
               if r["accuracy"] is not None and r["factors"][f]["accuracy"] is not None]
        x = probit([p[0] for p in pts])
        y = probit([p[1] for p in pts])
        ax.scatter(x, y, s=18, zorder=3)
        lim = probit([0.05, 0.99])
        ax.plot(lim, lim, "k--", lw=0.8, label="y = x")
        fit = huber_fit(x, y) if len(pts) >= 2 else None
        if fit is not None:
            ax.plot(lim, fit[0] * lim + fit[1], color="#d65f5f", lw=1.2, label=f"Huber fit (slope {fit[0]:.2f})")
        ax.set_xticks(probit(ticks), [f"{t:.0%}" for t in ticks], fontsize=7)
        ax.set_yticks(probit(ticks), [f"{t:.0%}" for t in ticks], fontsize=7)
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_title(f, fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(factors):]:
        ax.axis("off")
    fig.supxlabel("overall accuracy (probit scale)")
    fig.supylabel("factor accuracy (probit scale)")
    fig.suptitle(title)
    return _save(fig, path)
