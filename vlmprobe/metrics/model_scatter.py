""""One point per model" figures (Tu et al., "Toward a Holistic Evaluation of Robustness in CLIP
Models"): each run (model + method) is one point; axes are accuracies on a probit scale (or plain
values for metrics such as ECE or AUROC); the y = x line, the Huber robust line
(``robustness.line_fit``) and, for effective robustness, the baseline fit (Taori et al.'s line,
logit-fitted, drawn on the same axes) are overlaid; Spearman rho and R^2 go in the legend.

``model_scatter(panels, path)`` draws one panel per entry of ``panels`` in a grid (small
multiples, at most 3 per row): each panel is ``{"title", "xlabel", "ylabel", "points":
[{"label", "x", "y", "group"?}], "probit": bool, "baseline": {"slope", "intercept", "transform"} | None}``.
A panel of more than ``LEGEND_POINTS`` points labels its point groups (``group``, e.g. a zoo's
group and the method) instead of each point. ``"reference": [{"label", "x", "y"}]`` (optional):
published results, drawn as grey crosses labelled "published" and left out of the Huber line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vlmprobe.metrics.robustness import inverse_transform, line_fit, transform

TICKS = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99])
SHOWN = (0.005, 0.995)  # probit panels draw accuracies of 0 and 1 at these edges (the fits use the true values)
MARKERS = "osD^vP*Xh<>"
LEGEND_POINTS = 12  # more points in a panel: one marker and legend entry per point group instead of per point


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    """(rows, cols) of a grid of ``n`` small multiples."""
    cols = max(1, min(max_cols, n))
    return max(1, -(-n // cols)), cols


def _panel(ax, panel: dict) -> None:
    pts = [p for p in panel["points"] if p.get("x") is not None and p.get("y") is not None]
    probit = panel.get("probit", True)
    f = ((lambda v: transform(np.clip(v, *SHOWN), "probit")) if probit
         else (lambda v: np.asarray(v, dtype=np.float64)))
    xs, ys = np.array([p["x"] for p in pts], float), np.array([p["y"] for p in pts], float)
    if len(pts) <= LEGEND_POINTS:
        for i, p in enumerate(pts):
            ax.scatter(f([p["x"]]), f([p["y"]]), s=36, marker=MARKERS[i % len(MARKERS)], zorder=3, label=p["label"])
    else:  # one legend entry per group: hundreds of point labels would be unreadable (and slow to lay out)
        groups: dict = {}
        for p in pts:
            groups.setdefault(p.get("group") or "models", []).append(p)
        for i, (name, g) in enumerate(groups.items()):
            ax.scatter(f([p["x"] for p in g]), f([p["y"] for p in g]), s=20, marker=MARKERS[i % len(MARKERS)],
                       zorder=3, label=f"{name} ({len(g)})")
    ref = [p for p in panel.get("reference") or [] if p.get("x") is not None and p.get("y") is not None]
    if ref:  # published results: their own marker, not in the Huber line
        ax.scatter(f([p["x"] for p in ref]), f([p["y"] for p in ref]), s=16, marker="x", color="#777777", zorder=2,
                   label=f"published ({len(ref)})")
    if probit:
        shown = np.clip(np.r_[xs, ys, [p["x"] for p in ref], [p["y"] for p in ref]], *SHOWN)
        lo = min([0.05] + shown.tolist())
        hi = max([0.95] + shown.tolist())
        lim = transform([lo * 0.8, 1 - (1 - hi) * 0.8], "probit")
        ax.plot(lim, lim, "k--", lw=0.8, label="y = x")
        ticks = TICKS[(TICKS >= inverse_transform(lim[0], "probit")) & (TICKS <= inverse_transform(lim[1], "probit"))]
        ax.set_xticks(transform(ticks, "probit"), [f"{t:.0%}" for t in ticks], fontsize=7)
        ax.set_yticks(transform(ticks, "probit"), [f"{t:.0%}" for t in ticks], fontsize=7)
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
    else:
        lim = np.array([np.nanmin(xs) if len(xs) else 0.0, np.nanmax(xs) if len(xs) else 1.0])
    if len(pts) >= 2:
        stats = line_fit(xs, ys, "probit") if probit else _plain_fit(xs, ys)
        rho = "n/a" if stats["spearman"] is None else f"{stats['spearman']:.2f}"
        r2 = "n/a" if stats["r2"] is None else f"{stats['r2']:.2f}"
        left = stats["n"] - stats["n_fit"] if "n_fit" in stats else 0  # runs at 0% / 100%: not in the line
        note = f"; {left} at 0/100% not fitted" if left else ""
        if stats["huber"] is not None:
            slope, icpt = stats["huber"]
            ax.plot(lim, slope * np.asarray(lim) + icpt, color="#d65f5f", lw=1.2,
                    label=f"Huber fit (Spearman {rho}, R² {r2}{note})")
        else:
            ax.plot([], [], " ", label=f"Spearman {rho}, R² {r2}")
    base = panel.get("baseline")
    if base and probit:
        grid = np.linspace(inverse_transform(lim[0], "probit"), inverse_transform(lim[1], "probit"), 50)
        fit = inverse_transform(base["slope"] * transform(grid, base["transform"]) + base["intercept"], base["transform"])
        ax.plot(transform(grid, "probit"), transform(fit, "probit"), color="#6acc65", lw=1.2,
                label=f"baseline fit ({base['transform']})")
    ax.set_title(panel.get("title", ""), fontsize=9)
    ax.set_xlabel(panel.get("xlabel", ""), fontsize=8)
    ax.set_ylabel(panel.get("ylabel", ""), fontsize=8)
    ax.legend(fontsize=6, loc="best")


def _plain_fit(x, y) -> dict:
    from vlmprobe.metrics.correlation import pearson, spearman
    from vlmprobe.metrics.factors import huber_fit

    r = pearson(x, y)
    return {"huber": huber_fit(x, y), "spearman": spearman(x, y), "r2": None if r is None else r * r}


def model_scatter(panels: list[dict], path, title: str | None = None, max_cols: int = 3) -> Path:
    """Draw ``panels`` (module docstring) as a grid of at most ``max_cols`` columns into ``path`` (PNG)."""
    from vlmprobe.metrics.plots import _pyplot, _save

    plt = _pyplot()
    rows, cols = grid_shape(len(panels), max_cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.9 * rows), dpi=90, squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        _panel(ax, panel)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


def shift_figure(table: dict, path, show_baseline: bool = True, title: str = "Distribution shift: one point per model"):
    """The probit scatter of a ``metrics.shifts.shift_table``: one panel per shift set, one point per
    (model, method), the set's effective-robustness baseline line when ``show_baseline``."""
    sets = table.get("sets") or {None: {"fit": table["fit"]}}
    panels = [{"title": name or title, "xlabel": "in-distribution accuracy (probit scale)",
               "ylabel": "shift accuracy (probit scale)", "probit": True,
               "points": [{"label": f"{r['model']} ({r['method']})", "x": r["id_accuracy"], "y": r["shift_accuracy"]}
                          for r in table["rows"] if name is None or r.get("shift_set") == name],
               "baseline": s["fit"] if (show_baseline and s["fit"]) else None} for name, s in sets.items()]
    return model_scatter(panels, path, title)


def factor_panels(rows: list[dict], names: list[str] | None = None, label=None) -> list[dict]:
    """Tu et al.'s ImageNet-X figure as probit panels, one per factor: x = a run's overall accuracy on
    the annotated images, y = its accuracy on the images showing the factor (ImageNet-X: correct /
    total among them), one point per (model, method). ``rows``: ``metrics.compare.factor_table`` or
    study ``factors`` rows ({model, method, accuracy, factors: {name: {accuracy, ...}}}); ``names``:
    the factors to draw (default: every factor of the first row); a panel needs >= 2 points;
    ``label(row)``: the legend text (default "model (method)")."""
    label = label or (lambda r: f"{r['model']} ({r['method']})")
    names = list(rows[0]["factors"]) if names is None and rows else list(names or [])
    panels = []
    for name in names:
        pts = [{"label": label(r), "x": r["accuracy"], "y": (r["factors"].get(name) or {}).get("accuracy")}
               for r in rows]
        pts = [p for p in pts if p["x"] is not None and p["y"] is not None]
        if len(pts) >= 2:
            panels.append({"title": name, "xlabel": "overall accuracy (probit scale)",
                           "ylabel": "factor accuracy (probit scale)", "probit": True, "points": pts})
    return panels
