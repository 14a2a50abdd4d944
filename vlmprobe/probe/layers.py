"""Probe every cached feature (layer x pooling): choose C on validation, report test once.

Protocol (per feature):
1. training rows = valid rows of the train features; validation rows = the valid rows of the
   given validation features, or, when none is given, a stratified seeded ``val_fraction`` of
   the training rows (``linear.carve_validation``; the probe then trains on the rest);
2. ``linear.select_probe``: one fit per C on train, accuracy on validation, best C (ties: the
   smaller C); the final probe is refit on train + validation at that C (``refit``);
3. test logits of that probe -> the shared metrics (``metrics.report.summarize``), once.
The best feature is the one with the highest validation accuracy (ties: the earlier one in
layer order); test accuracy never enters any choice. ``probe_features`` takes the test
features only after every choice for a feature is made.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from ..progress import bar as tqdm

from ..errors import VlmprobeError
from .extract import FeatureSet
from .linear import DEFAULT_CS, carve_validation, select_probe

SUMMARY_KEYS = ("top1", "top5", "mean_per_class_recall", "worst_k_accuracy", "counts")


def split_name(name: str) -> tuple[str, str | None]:
    """``lm.3:last`` -> (``lm.3``, ``last``); ``vision`` -> (``vision``, None)."""
    layer, _, pooling = name.partition(":")
    return layer, pooling or None


def layer_index(layer: str) -> int | None:
    """``lm.3`` -> 3 (the x position in plots); other names -> None."""
    return int(layer[3:]) if layer.startswith("lm.") else None


@dataclass
class ProbeReport:
    """Per-feature results (``layers``), the validation-chosen best, and its test logits."""

    layers: list[dict]
    best: dict
    best_logits: np.ndarray  # [N_test, K] float32, NaN rows for skipped test images
    splits: dict = field(default_factory=dict)


def _rows(fs: FeatureSet, name: str, idx: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(fs.get(name)[idx], dtype=np.float32))


def probe_features(train: FeatureSet, test: FeatureSet, classnames: Sequence[str], val: FeatureSet | None = None,
                   names: Sequence[str] | None = None, Cs: Sequence[float] = DEFAULT_CS, backend: str = "torch",
                   device: str = "cpu", seed: int = 0, val_fraction: float = 0.2, refit: bool = True,
                   worst_k=(1, 5, 10, 20), progress: bool = True, **fit_kw) -> ProbeReport:
    """Run the protocol of the module docstring for every name in ``names`` (default: all)."""
    from ..metrics.report import summarize

    k = len(classnames)
    names = list(names or train.names)
    tr = np.flatnonzero(train.valid)
    if val is None:
        tr_pos, va_pos = carve_validation(train.labels[tr], val_fraction, seed)
        tr_idx, va_idx, val_src = tr[tr_pos], tr[va_pos], train
    else:
        tr_idx, va_idx, val_src = tr, np.flatnonzero(val.valid), val
    te_idx = np.flatnonzero(test.valid)
    if len(va_idx) == 0 or len(te_idx) == 0:
        raise VlmprobeError("probe: the validation or test split has no readable images")
    y_tr, y_va, y_te = train.labels[tr_idx], val_src.labels[va_idx], test.labels[te_idx]
    splits = {"train": int(len(tr_idx)), "val": int(len(va_idx)), "test": int(len(te_idx)),
              "val_source": "given" if val is not None else f"carved from train ({val_fraction:.0%}, seed {seed})",
              "test_skipped": int(len(test.valid) - len(te_idx))}
    results, best, best_logits = [], None, None
    for name in tqdm(names, desc="probes", unit="feature", disable=not progress):
        sel = select_probe(_rows(train, name, tr_idx), y_tr, _rows(val_src, name, va_idx), y_va, k, Cs=Cs,
                           backend=backend, device=device, refit=refit, **fit_kw)
        # every choice for this feature is made; the test rows are read only now
        logits = sel.probe.logits(_rows(test, name, te_idx)).numpy().astype(np.float32)
        summary = summarize(y_te, logits.argmax(1), logits, classnames, skipped=splits["test_skipped"],
                            worst_k=worst_k)
        layer, pooling = split_name(name)
        rec = {"name": name, "layer": layer, "pooling": pooling, "dim": int(train.get(name).shape[1]),
               "C": sel.C, "val_accuracy": sel.val_accuracy, "val_curve": sel.val_curve,
               "test_accuracy": summary["top1"], "test": {key: summary.get(key) for key in SUMMARY_KEYS},
               "iterations": sel.probe.n_iter, "objective": sel.probe.info.get("objective")}
        results.append(rec)
        if best is None or sel.val_accuracy > best["val_accuracy"]:
            best = rec
            best_logits = np.full((len(test.valid), k), np.nan, dtype=np.float32)
            best_logits[te_idx] = logits
    return ProbeReport(results, best, best_logits, splits)
