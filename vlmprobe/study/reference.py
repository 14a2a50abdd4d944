"""Published results as extra points in the one-point-per-model figures.

A study names reference tables with the top-level key ``reference`` (or ``vlmprobe study ...
--reference CSV``, repeatable); the tables are read by ``longtable.reference_rows`` (timm's
``results-<dataset>.csv`` files, open_clip's results table) and kept as rows ``{model, dataset,
metric, value}`` (fractions)::

    reference: results/openclip_results.csv            # one table
    reference: [results-imagenet.csv, results-imagenet-r.csv]
    reference:
      files: [openclip_results.csv]
      datasets: {imagenet: imagenet1k, sketch: imagenet_sketch}   # study dataset -> table's dataset
      fit: false     # true: the effective-robustness line is fitted on the published points

A figure panel with x = accuracy on study dataset A and y = accuracy on study dataset B (the
effective-robustness figure: ID vs shifted set) gets one point per published model with a
``top1`` on both A and B (names through ``datasets``, else the same name), drawn with their own
marker and labelled "published"; they are not part of the Huber line or the baseline fit unless
``fit: true`` (then the baseline -- Taori et al.'s line, logit-fitted -- is fitted on them, the
usual choice of "standard models" for effective robustness). From imagenet-testbed's
``robustness_top1s.csv`` only its baseline models enter that fit (``metrics.testbed``: type
"Standard training", names without aws/batch64/subsample); every other table's models all do.
Effective robustness is only reported against that external line: without ``fit: true`` the
report's ER column says "n/a: no baseline" and the figure has no ER line.

Class-subset protocols (ImageNet-R/-A, ObjectNet): a run's x is ImageNet accuracy on the shift
set's classes, so a published point's x must be too. Its column is ``datasets["<ID>@<shift>"]``
when the study maps one (e.g. ``"val@imagenet-r": val-on-imagenet-r-classes``), else the
testbed's ``val-on-<set>-classes`` column paired with the mapped shift column
(``metrics.testbed.SHIFT_SETS``); without one the published points of that set are neither drawn
nor fitted and the report says so in one line. Relative paths are relative to the study file;
the study file's value is checked by ``schema.check_reference``.
"""
from __future__ import annotations

from pathlib import Path

METRIC = "top1"


def merge(reference: dict | None, extra_files: list) -> dict | None:
    """The study file's reference plus ``--reference`` files of the command line."""
    if not extra_files:
        return reference
    reference = dict(reference or {"files": [], "datasets": {}, "fit": False})
    reference["files"] = list(reference["files"]) + [str(Path(f).resolve()) for f in extra_files]
    return reference


def load(reference: dict | None) -> dict | None:
    """``{"accuracy": {model: {dataset: top1}}, "datasets": {...}, "fit": bool, "files": [...]}``
    from the reference tables (None without a reference)."""
    from .longtable import reference_rows

    if not reference or not reference.get("files"):
        return None
    from ..metrics.testbed import baseline_models, read_table

    accuracy: dict = {}
    baseline: set = set()  # models that may define the effective-robustness line (with fit: true)
    testbed: dict = {}  # file -> metrics.testbed.ReferenceTable (mCE, types) of imagenet-testbed tables
    for f in reference["files"]:
        rows = reference_rows(f)
        for r in rows:
            if r["metric"] == METRIC and r["value"] is not None:
                accuracy.setdefault(r["model"], {})[r["dataset"]] = r["value"]
        if rows and "model_type" in rows[0]:
            testbed[f] = table = read_table(f)
            baseline |= set(baseline_models(table)[0])
        else:
            baseline |= {r["model"] for r in rows}
    return {**reference, "accuracy": accuracy, "baseline": baseline, "testbed": testbed}


def points(ref: dict | None, x_dataset: str, y_dataset: str) -> list[dict]:
    """Published points ``[{label, x, y}]`` (top-1 fractions) of every reference model with both
    the x and the y study dataset (names mapped through ``datasets``)."""
    if not ref:
        return []
    names = ref.get("datasets") or {}
    x, y = names.get(x_dataset, x_dataset), names.get(y_dataset, y_dataset)
    return [{"label": model, "x": acc[x], "y": acc[y]} for model, acc in sorted(ref["accuracy"].items())
            if x in acc and y in acc]


def points_for(ref: dict | None, x_dataset: str, y_dataset: str, subset_classes: int | None = None
               ) -> tuple[list[dict], str | None]:
    """``points`` for a panel whose runs' x is ImageNet accuracy on ``subset_classes`` classes
    (None: all classes) -> (points ``[{label, x, y, baseline}]``, None) or ([], the one-line reason
    they are left out: no published accuracy on the subset's classes)."""
    from ..metrics.testbed import SHIFT_SETS

    if not ref:
        return [], None
    names = ref.get("datasets") or {}
    y = names.get(y_dataset, y_dataset)
    x = names.get(x_dataset, x_dataset)
    if subset_classes:
        x = names.get(f"{x_dataset}@{y_dataset}") or (SHIFT_SETS.get(y) if SHIFT_SETS.get(y) != "val" else None)
    pts = [{"label": model, "x": acc[x], "y": acc[y], "baseline": model in ref.get("baseline", ())}
           for model, acc in sorted(ref["accuracy"].items()) if x is not None and x in acc and y in acc]
    if subset_classes and not pts and any(y in acc for acc in ref["accuracy"].values()):
        return [], (f"published points for {y_dataset} left out (not drawn, not fitted): the runs' ID accuracy is on "
                    f"the shift set's {subset_classes} classes and no reference column holds ImageNet accuracy on "
                    f"those classes (map one: reference.datasets {{'{x_dataset}@{y_dataset}': COLUMN}})")
    return pts, None
