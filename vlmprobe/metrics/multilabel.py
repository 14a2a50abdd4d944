"""Top-1 under a multi-label truth beside the single-label one (``vlmprobe metrics RUN
--label-sets real|real:FILE|FILE.jsonl``): results.json ``multi_label`` and one row per sample in
``multi_label.jsonl``.

Truth sets: ``real`` = ImageNet-ReaL (Beyer et al. 2020; the imagenet-x package's
``imagenet_real_labels.jsonl``, or ``real:FILE`` a JSON list of the same form), joined by val file
name, ImageNet indices mapped to the run's classes by name (``factors.imagenet_sets``); any other
value is a JSONL file, one ``{"id": SAMPLE_ID, "labels": [class name or index, ...]}`` (or
``"image": FILE_NAME`` instead of ``id``) per line.

Per sample with a non-empty set S (samples with an empty set are excluded and counted, as ReaL
does; samples without a row are counted as ``n_unmatched``):

- ``single``: prediction == label (the run's own top-1, on the same samples);
- ``multi``: prediction in S (ReaL accuracy for a single prediction);
- ``multi_any_named`` (generation runs, records with ``matches``): the answer names any class of
  S (the paper's inclusion criterion applied to each label of the set).

Each rate carries a 95% Clopper-Pearson interval.
"""
from __future__ import annotations

from pathlib import Path

from vlmprobe.errors import VlmprobeError
from vlmprobe.metrics.intervals import proportion


def _class_index(value, classnames: list[str], where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classnames):
        return value
    if isinstance(value, str) and value in classnames:
        return classnames.index(value)
    raise VlmprobeError(f"{where}: {value!r} is not a class of the run (a name or an index 0..{len(classnames) - 1})")


def read_label_sets(path: str, classnames: list[str]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """({sample id: classes}, {image file name: classes}) of a JSONL label-set file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise VlmprobeError(f"--label-sets {path}: no such file")
    from vlmprobe.jsonl import read_jsonl

    by_id, by_image = {}, {}
    for n, row in read_jsonl(p, VlmprobeError):
        if not isinstance(row.get("labels"), list) or not (
                isinstance(row.get("id"), str) or isinstance(row.get("image"), str)):
            raise VlmprobeError(f"{p}:{n}: expected {{\"id\" or \"image\": ..., \"labels\": [classes]}}")
        labels = [_class_index(v, classnames, f"{p}:{n}") for v in row["labels"]]
        if isinstance(row.get("id"), str):
            by_id[row["id"]] = labels
        else:
            by_image[Path(row["image"]).name] = labels
    return by_id, by_image


def truth_sets(run, source: str) -> list[list[int] | None]:
    """Per record of ``run``: its truth set as run class indices (None: no row for it)."""
    if source == "real" or source.startswith("real:"):
        from vlmprobe.data.imagenet_x import join_by_file_name, read_real_labels
        from vlmprobe.metrics.factors import imagenet_sets

        table = read_real_labels(None if source == "real" else source[5:])
        rows = join_by_file_name([r["image"] for r in run.records], table, "--label-sets real", run.path)
        sets = imagenet_sets(run)
        return [None if row is None else [c for c, inet in enumerate(sets) if set(inet) & set(row)] for row in rows]
    by_id, by_image = read_label_sets(source, list(run.classnames))
    out = []
    for i, r in enumerate(run.records):
        s = by_id.get(r.get("id", run.ids[i] if i < len(run.ids) else None))
        if s is None and isinstance(r.get("image"), str):
            s = by_image.get(Path(r["image"]).name)
        out.append(s)
    return out


def multilabel_results(run, source: str) -> tuple[dict, list[dict]]:
    """(results.json ``multi_label`` block, per-sample rows) of a loaded labeled run."""
    if run.labels is None:
        raise VlmprobeError(f"--label-sets: {run.path / 'samples.jsonl'} has no integer labels")
    sets = truth_sets(run, source)
    generation = all("matches" in r for r in run.records) and bool(run.records)
    rows = []
    for i, (r, s) in enumerate(zip(run.records, sets)):
        if not s:
            continue
        pred = int(run.predictions[i])
        row = {"id": run.ids[i], "label": int(run.labels[i]), "labels": sorted(set(s)), "prediction": pred
               if pred >= 0 else None, "single": pred == int(run.labels[i]), "multi": pred in s}
        if generation:
            row["multi_any_named"] = any(m in s for m in r.get("matches") or [])
        rows.append(row)
    n = len(rows)
    block = {"source": source, "n": n, "n_excluded_no_label": sum(1 for s in sets if s is not None and not s),
             "n_unmatched": sum(1 for s in sets if s is None)}
    for key in ("single", "multi") + (("multi_any_named",) if generation else ()):
        k = sum(1 for row in rows if row[key])
        iv = proportion(k, n)
        block[key] = {"top1": k / n if n else None, "count": k, "ci95": [iv["low"], iv["high"]] if iv else None}
    return block, rows
