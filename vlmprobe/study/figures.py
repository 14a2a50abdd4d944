"""The report's figures as PNG bytes (matplotlib Agg; no timestamps in the files, so the same
data gives byte-identical images). Each function takes rows from ``collect.read_study``."""
from __future__ import annotations

import io

import numpy as np


CROWDED = 12  # more runs than this in one figure: group its legend, shrink its per-run marks


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig, tight: bool = True) -> bytes:
    """``tight=False``: the figure set its own margins (a tight layout of hundreds of labels is slow)."""
    plt = _plt()
    buf = io.BytesIO()
    if tight:
        fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def plain_log_ticks(axis, values) -> None:
    """Label a log axis with plain numbers (2, 5, 10), ticks at ``values``, no 2×10⁰ labels."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    values = [v for v in values if v and v > 0]
    if values:
        axis.set_major_locator(FixedLocator(values))
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    axis.set_major_formatter(fmt)
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def label_space(rows: list[dict], clip_rows: list[dict]) -> bytes | None:
    """Top-1 vs number of candidate classes (log x), one line per (model, method); CLIP zero-shot
    over all classes as dashed horizontal lines."""
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    lines: dict = {}
    for r in rows:
        key = f"{r['model']}: {r['measure'].replace('generate', 'generation (closed world)')}"
        lines.setdefault(key, []).append((r["candidates"], r["top1"]))
    for key, pts in sorted(lines.items()):
        pts = sorted(p for p in pts if p[0] is not None and p[1] is not None)
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=key)
        for x, _ in pts:
            ax.axvline(x, color="#eeeeee", lw=0.5, zorder=0)
    for c in clip_rows:
        ax.axhline(100 * c["top1"], ls="--", color="gray", lw=1)
        ax.annotate(f"{c['model']} zero-shot ({c['method']})", (ax.get_xlim()[0], 100 * c["top1"]), fontsize=7,
                    va="bottom")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis, sorted({p[0] for pts in lines.values() for p in pts if p[0] is not None}))
    ax.set_xlabel("number of candidate classes (true class + random others)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def worst_k_bars(rows: list[dict]) -> bytes | None:
    """Grouped bars per run: top-1 and worst-1/5/10 class accuracy."""
    rows = [r for r in rows if r.get("top1") is not None]
    if not rows:
        return None
    plt = _plt()
    keys = [("top1", "top-1"), ("worst10", "worst-10"), ("worst5", "worst-5"), ("worst1", "worst-1")]
    crowded = len(rows) > CROWDED  # narrower groups, upright labels: 200 runs stay a ~4000-pixel figure
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)) if not crowded else min(40.0, 0.2 * len(rows)),
                                    4 if not crowded else 5), dpi=100)
    x = np.arange(len(rows))
    w = 0.8 / len(keys)
    for j, (k, label) in enumerate(keys):
        ax.bar(x + j * w, [100 * (r.get(k) or 0) for r in rows], width=w, label=label)
    ax.set_xticks(x + 0.4 - w / 2)
    if crowded:
        ax.set_xticklabels([f"{r['model']}: {r['method']}" for r in rows], fontsize=5, rotation=90, ha="center")
        ax.set_xlim(-0.5, len(rows))
        fig.subplots_adjust(left=0.6 / fig.get_figwidth(), right=1 - 0.1 / fig.get_figwidth(), top=0.95, bottom=0.5)
    else:
        ax.set_xticklabels([f"{r['model']}\n{r['method']}" for r in rows], fontsize=6, rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7)
    return _png(fig, tight=not crowded)


def cmm_vs_accuracy(rows: list[dict]) -> bytes | None:
    """Per-class CMM (x) vs per-class accuracy (y), one marker set per run with scores."""
    rows = [r for r in rows if r.get("cmm_per_class")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    series: dict = {}  # legend entry -> (x, y); crowded: one entry per method, not per run
    for r in rows:
        names = [n for n in r["cmm_per_class"] if r["cmm_per_class"][n] is not None and r["per_class"].get(n) is not None]
        xy = series.setdefault(r["method"] if len(rows) > CROWDED else f"{r['model']}: {r['method']}", ([], []))
        xy[0].extend(r["cmm_per_class"][n] for n in names)
        xy[1].extend(100 * r["per_class"][n] for n in names)
    for name, (x, y) in series.items():
        ax.scatter(x, y, s=14 if len(rows) <= CROWDED else 6, label=name if len(rows) <= CROWDED else
                   f"{name} ({sum(r['method'] == name for r in rows)} runs)")
    ax.set_xlabel("class-wise matching margin (mean over the class's images)")
    ax.set_ylabel("per-class accuracy (%)")
    ax.legend(fontsize=7)
    return _png(fig)


def frequency_fit(entry: dict) -> bytes | None:
    """log10(1 + mentions) vs per-class accuracy with the least-squares line."""
    pts = [(c["mentions"], c["accuracy"], c["class"]) for c in entry["classes"] if c["accuracy"] is not None]
    if len(pts) < 2:
        return None
    plt = _plt()
    x = np.log10(1 + np.array([p[0] for p in pts], dtype=float))
    y = 100 * np.array([p[1] for p in pts])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.scatter(x, y, s=18)
    for xi, yi, (_, _, name) in zip(x, y, pts):
        ax.annotate(name, (xi, yi), fontsize=7, alpha=0.8)
    if np.ptp(x) > 0:
        slope, icpt = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 20)
        ax.plot(xs, slope * xs + icpt, "r-", lw=1, label=f"fit: {slope:.1f} points per decade")
        ax.legend(fontsize=7)
    rho = entry.get("spearman")
    ax.set_title(f"{entry['model']}: Spearman {rho:.2f}" if isinstance(rho, float) else entry["model"], fontsize=9)
    ax.set_xlabel("log10(1 + mentions of the class name in the training corpus)")
    ax.set_ylabel("per-class accuracy (%)")
    return _png(fig)


def reliability(run_dir, title: str, drawer=None) -> tuple[bytes, float] | None:
    """Reliability diagram of a run with scores (softmax of the score matrix) -> (PNG, ECE);
    ``drawer``: a ``metrics.plots.ReliabilityFigure`` reused across runs (default: a fresh one)."""
    from ..metrics import calibration as cal
    from ..metrics.plots import ReliabilityFigure
    from ..metrics.rundata import load_run

    run = load_run(run_dir)
    if run.scores is None or run.labels is None or not len(run.labels):
        return None
    s = np.asarray(run.scores, dtype=np.float64)
    s = np.where(np.isfinite(s), s, -1e30)
    probs = np.exp(s - s.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    bins = cal.reliability_bins(probs, run.labels)
    ece = cal.expected_calibration_error(probs, run.labels)
    own = drawer is None
    drawer = drawer or ReliabilityFigure()
    try:
        return drawer.png(bins, title, ece), ece
    finally:
        if own:
            drawer.close()


def shape_bias(rows: list[dict]) -> bytes | None:
    """The per-category shape-bias dot plot (``metrics.shape_bias_plot``), one colour per run."""
    import tempfile
    from pathlib import Path

    from ..metrics.shape_bias_plot import plot_shape_bias

    if not rows:
        return None
    results = {f"{r['model']}: {r['method']}": {"overall": {"shape_bias": r["shape_bias"]},
                                                "per_category": r["per_category"]} for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        return plot_shape_bias(results, Path(tmp) / "shape_bias.png").read_bytes()


def factors(rows: list[dict], names: list[str], min_models: int = 3) -> bytes | None:
    """Tu et al.'s one-point-per-model ImageNet-X figure (``model_scatter.factor_panels``): per factor
    in ``names``, factor accuracy vs overall accuracy on probit axes, one point per (model, method)
    ``factors`` run, y = x, Huber line, Spearman and R²; None when fewer than ``min_models`` models
    have a factors run, or no factor has two points."""
    import tempfile
    from pathlib import Path

    from ..metrics.model_scatter import factor_panels, model_scatter

    if len({r["model"] for r in rows}) < min_models or not names:
        return None
    panels = factor_panels(rows, names, label=lambda r: f"{r['model']}: {r['method']}")
    if not panels:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return model_scatter(panels, Path(tmp) / "factors.png",
                             "ImageNet-X: factor accuracy vs overall accuracy, one point per model (probit axes)",
                             max_cols=4).read_bytes()


def baseline_points(rows: list[dict], ref: dict | None) -> list[tuple[float, float]]:
    """(ID, shift) accuracies defining a shifted set's effective-robustness line: the published
    baseline models when ``ref`` (``{"points", "fit"}``) says ``fit`` (points marked ``baseline``:
    a testbed table's standard-training models, any other table's models), else none -- never the
    set's own runs ``rows`` (Taori et al.'s line is fitted on other models)."""
    if ref and ref.get("fit"):
        return [(p["x"], p["y"]) for p in ref.get("points") or [] if p.get("baseline", True)]
    return []


def shift_panels(by_set: dict, reference: dict | None = None) -> list[dict]:
    """``model_scatter`` panels, one per shifted set: shift vs ID accuracy, one point per (model,
    method), the published points of ``reference[set] = {"points": [...], "fit": bool}`` as the
    panel's grey ``reference`` points, and the logit fit that defines effective robustness only
    when it has an external baseline (``baseline_points``); without one, no ER line."""
    from ..metrics.robustness import baseline_fit, fittable

    panels = []
    for name, rows in by_set.items():
        ref = (reference or {}).get(name) or {}
        points = baseline_points(rows, ref)
        xs, ys = [x for x, _ in points], [y for _, y in points]
        base = None
        if fittable(xs, ys):
            slope, icpt, _ = baseline_fit(xs, ys)
            base = {"slope": slope, "intercept": icpt, "transform": "logit"}
        panels.append({"title": f"shifted set: {name}", "xlabel": "ID accuracy", "ylabel": "shift accuracy",
                       "probit": True, "baseline": base,
                       "reference": [{"label": p["label"], "x": p["x"], "y": p["y"]} for p in ref.get("points") or []],
                       "points": [{"label": f"{r['model']}: {r['method']}", "x": r["id_accuracy"],
                                   "y": r["shift_accuracy"]} for r in rows]})
    return panels


def panels_png(panels: list[dict]) -> bytes | None:
    """``model_scatter`` panels as one PNG (None without panels)."""
    import tempfile
    from pathlib import Path

    from ..metrics.model_scatter import model_scatter

    if not panels:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return model_scatter(panels, Path(tmp) / "p.png").read_bytes()


MIN_MODELS = 3  # the one-point-per-model figure needs at least this many models in the study


def per_model(data: dict, min_models: int = MIN_MODELS) -> bytes | None:
    """The one-point-per-model panels (``report.per_model_section``); None with fewer than
    ``min_models`` models in the study or nothing to draw."""
    if len(data.get("models") or {}) < min_models:
        return None
    return panels_png(per_model_panels(data))


CALIBRATION_PANELS = (("ece", "ECE"), ("nll", "NLL"), ("ece_ts", "ECE after temperature scaling"),
                      ("nll_ts", "NLL after temperature scaling"))


def per_model_panels(data: dict) -> list[dict]:
    """``model_scatter`` panels, each point one (model, method): OOD AUROC / FPR@95 (MSP) vs ID
    accuracy, ECE and NLL before and after temperature scaling vs accuracy (``CALIBRATION_PANELS``,
    the ``collect`` row fields from results.json's ``calibration``), shape bias vs accuracy; a panel
    needs >= 2 points."""
    main = {(r["model"], r["method"]): r for r in data["main"]}
    models = data.get("models") or {}

    def label(r) -> str:
        return f"{r['model']}: {r['method']}"

    def point(r, x, y) -> dict:  # group: the zoo group (if any) and the method, the legend of a crowded panel
        group = (models.get(r["model"]) or {}).get("group")
        return {"label": label(r), "x": x, "y": y, "group": f"{group}: {r['method']}" if group else r["method"]}

    panels = []
    ood = [o for o in data["ood"] if o.get("top1") is not None]
    for key, name in (("msp_auroc", "OOD AUROC (MSP)"), ("msp_fpr95", "OOD FPR@95 (MSP)")):
        pts = [point(o, o["top1"], o[key]) for o in ood if o.get(key) is not None]
        if len(pts) >= 2:
            panels.append({"title": f"{name} vs ID accuracy", "xlabel": "ID accuracy", "ylabel": name,
                           "probit": False, "points": pts})
    for key, name in CALIBRATION_PANELS:
        pts = [point(r, r["top1"], r[key]) for r in data["main"] if r.get(key) is not None and r.get("top1") is not None]
        if len(pts) >= 2:
            panels.append({"title": f"{name} vs accuracy", "xlabel": "accuracy", "ylabel": name, "probit": False,
                           "points": pts})
    pts = []
    for r in data["shape_bias"]:
        m = next((x for (model, _), x in main.items() if model == r["model"]), None)
        if m is not None and r.get("shape_bias") is not None and m.get("top1") is not None:
            pts.append(point(r, m["top1"], r["shape_bias"]))
    if len(pts) >= 2:
        panels.append({"title": "shape bias vs accuracy", "xlabel": "test accuracy (same model)",
                       "ylabel": "shape bias", "probit": False, "points": pts})
    return panels
