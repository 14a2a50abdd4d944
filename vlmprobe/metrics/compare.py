"""Side-by-side tables of several runs (``vlmprobe compare``) and Tu et al.'s factor figure.

- ``group_table(runs, field, a, b)``: per run (model, method) the accuracy on group ``a`` and
  ``b`` of sample field ``field`` and the drop ``100 * (acc_a - acc_b)`` (CounterAnimal:
  ``group`` with ``common``/``counter``: the paper's table).
- ``factor_table(runs, source, variant)``: per run overall accuracy and per-factor accuracy /
  error ratio (ImageNet-X; ``metrics.factors``).
- ``factor_plot``: one panel per factor, probit(factor acc) vs probit(overall acc), one point per
  run (model, method), y = x, Huber robust fit with Spearman and R² (Tu et al., "Toward a Holistic
  Evaluation of Robustness in CLIP Models"), drawn by ``model_scatter``.
"""
from __future__ import annotations

from pathlib import Path

from vlmprobe.metrics import groups as grp_m
from vlmprobe.metrics.factors import run_correct, run_factor_results


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
    """Tu et al.'s figure from ``factor_table`` rows (see module docstring): the one-point-per-model
    panels of ``model_scatter.factor_panels``, four per row."""
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.metrics.model_scatter import factor_panels, model_scatter

    panels = factor_panels(rows)
    if not panels:
        raise VlmprobeError("--plot: no factor has an accuracy for two runs (a point per run needs images with "
                            "the factor in each run)")
    return model_scatter(panels, path, title, max_cols=4)
