"""A run directory (read by ``vlmprobe.runs.read_run``) as arrays for the metrics.

Row i of scores.npy belongs to line i of samples.jsonl. A record with a truthy "skipped" (or an
"error" and no prediction) is a skipped sample: left out of every metric, counted in ``skipped``.
A record flagged ``nonfinite_scores`` (its score row came out NaN/inf) is left out the same way
and counted apart (``nonfinite_ids``; see ``vlmprobe.metrics.nonfinite``).
Class names come from config.json's data.classnames, else the first "classnames" list found in
config.json (at any depth, breadth first), else from
RUN_DIR/classnames.json, else from the records' (label, label_name) pairs (then absent classes are
named "class_<i>", and K is the score matrix width when there is one).

Records whose ``meta`` carries a ``label_set`` (ObjectNet's ImageNet protocol) are scored by the
label-set rule: ``predictions`` and ``scores`` are the output of
``metrics.accuracy.credit_label_sets`` (a prediction of any class mapped to the image's ObjectNet
class counts as its label; the class is scored by the max over its mapped scores), so top-1,
top-5, per-class accuracy, calibration, ``shift.subset_accuracy`` and ``compare --shift`` all
follow the protocol; the raw predictions stay in samples.jsonl (``raw_predictions`` here).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlmprobe.errors import RunDirError, VlmprobeError
from vlmprobe.metrics.nonfinite import FLAG
from vlmprobe.runs import read_run


@dataclass
class RunData:
    """Arrays over the non-skipped samples of one run (``scores`` None when not written)."""
    path: Path
    config: dict
    classnames: list[str]
    records: list[dict]            # non-skipped records, in file order
    labels: np.ndarray | None      # int [N] or None (e.g. WikiQA runs with "correct" only)
    predictions: np.ndarray | None  # int [N], -1 = no prediction
    scores: np.ndarray | None      # float [N, K]
    skipped: int = 0
    ids: list[str] = field(default_factory=list)
    nonfinite_ids: list[str] = field(default_factory=list)  # records whose scores were NaN/inf
    raw_predictions: np.ndarray | None = None  # the records' own predictions, before the label-set rule

    @property
    def method(self) -> str | None:
        m = find_key(self.config, "method")
        if isinstance(m, dict):
            m = m.get("name")
        return m if isinstance(m, str) else None

    def field_values(self, name: str) -> list:
        """Per-sample value of a field, looked up at the record's top level, then in "meta"."""
        out = []
        for r in self.records:
            v = r.get(name)
            if v is None and isinstance(r.get("meta"), dict):
                v = r["meta"].get(name)
            out.append(v)
        return out


def find_key(obj, key: str):
    """The first value stored under ``key`` in nested dicts/lists (breadth-first), or None."""
    queue = [obj]
    while queue:
        cur = queue.pop(0)
        if isinstance(cur, dict):
            if key in cur:
                return cur[key]
            queue.extend(cur.values())
        elif isinstance(cur, list):
            queue.extend(x for x in cur if isinstance(x, (dict, list)))
    return None


def is_skipped(rec: dict) -> bool:
    return bool(rec.get("skipped")) or (rec.get("error") is not None and rec.get("prediction") is None
                                        and "correct" not in rec)


def _classnames(run_dir: Path, config: dict, records: list[dict], width: int | None) -> list[str]:
    data = config.get("data")
    names = data.get("classnames") if isinstance(data, dict) else None
    names = names if isinstance(names, list) else find_key(config, "classnames")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    f = run_dir / "classnames.json"
    if f.is_file():
        return [str(n) for n in json.loads(f.read_text(encoding="utf-8"))]
    pairs = {}
    for r in records:
        if isinstance(r.get("label"), int) and r.get("label_name") is not None:
            pairs[r["label"]] = str(r["label_name"])
    k = max([width or 0] + [i + 1 for i in pairs])
    return [pairs.get(i, f"class_{i}") for i in range(k)]


def load_run(run_dir) -> RunData:
    """Load a run directory; errors name the file and field that is wrong."""
    run_dir = Path(run_dir)
    config, records, scores = read_run(run_dir)
    classnames = _classnames(run_dir, config, records, None if scores is None else scores.shape[1])
    nonfinite = np.array([bool(r.get(FLAG)) for r in records], dtype=bool)
    keep = np.array([not is_skipped(r) for r in records], dtype=bool) & ~nonfinite
    kept = [r for r, k in zip(records, keep) if k]
    labels = predictions = None
    if not kept:
        labels, predictions = np.zeros(0, np.int64), np.zeros(0, np.int64)
    elif all(isinstance(r.get("label"), int) and not isinstance(r.get("label"), bool) for r in kept):
        labels = np.array([r["label"] for r in kept], dtype=np.int64)
        preds = []
        for i, r in enumerate(kept):
            p = r.get("prediction")
            if p is not None and (not isinstance(p, int) or isinstance(p, bool)):
                raise RunDirError(f"{run_dir / 'samples.jsonl'}: record {r.get('id', i)!r} field "
                                  f"'prediction' must be a class index or null, got {p!r}")
            preds.append(-1 if p is None else p)
        predictions = np.array(preds, dtype=np.int64)
    if scores is not None:
        scores = scores[keep]
    raw = predictions
    sets = [r.get("meta", {}).get("label_set") if isinstance(r.get("meta"), dict) else None for r in kept]
    if labels is not None and any(sets):
        from vlmprobe.metrics.accuracy import credit_label_sets

        try:
            predictions, scores = credit_label_sets(labels, predictions, scores, sets)
        except VlmprobeError as e:
            raise RunDirError(f"{run_dir / 'samples.jsonl'}: {e}") from None
    return RunData(path=run_dir, config=config, classnames=classnames, records=kept, labels=labels,
                   predictions=predictions, scores=scores, raw_predictions=raw, skipped=int((~keep & ~nonfinite).sum()),
                   ids=[str(r.get("id", i)) for i, r in enumerate(kept)],
                   nonfinite_ids=[str(r.get("id", i)) for i, r in enumerate(records) if nonfinite[i]])
