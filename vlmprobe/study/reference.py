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
usual choice of "standard models" for effective robustness). Relative paths are relative to the
study file; the study file's value is checked by ``schema.check_reference``.
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
    accuracy: dict = {}
    for f in reference["files"]:
        for r in reference_rows(f):
            if r["metric"] == METRIC and r["value"] is not None:
                accuracy.setdefault(r["model"], {})[r["dataset"]] = r["value"]
    return {**reference, "accuracy": accuracy}


def points(ref: dict | None, x_dataset: str, y_dataset: str) -> list[dict]:
    """Published points ``[{label, x, y}]`` (top-1 fractions) of every reference model with both
    the x and the y study dataset (names mapped through ``datasets``)."""
    if not ref:
        return []
    names = ref.get("datasets") or {}
    x, y = names.get(x_dataset, x_dataset), names.get(y_dataset, y_dataset)
    return [{"label": model, "x": acc[x], "y": acc[y]} for model, acc in sorted(ref["accuracy"].items())
            if x in acc and y in acc]
