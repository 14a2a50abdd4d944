"""The ``shift`` block of results.json: what a distribution-shift protocol adds to a run's
metrics, read from the dataset description in config.json and the records' ``meta``.

- ``class_subset`` (ImageNet-R/-A: 200 classes; ObjectNet: its 125 mapped classes):
  ``subset_accuracy`` = argmax over the subset's scores; ``all_classes_accuracy`` = argmax over
  every class (from the records' ``prediction_all`` when the run masked the other classes, from
  scores.npy when it scored all of them; None when neither exists, e.g. VLM likelihood over the
  subset only).
- ``label_set`` in the records' meta (ObjectNet's ImageNet protocol): correct when the
  prediction is any class of the set (``label_set_accuracy``). The run's arrays already follow
  that rule (``rundata.load_run``), so ``top1``, ``subset_accuracy`` and ``all_classes_accuracy``
  of an ObjectNet run are label-set accuracies too (equal to ``label_set_accuracy`` for top-1).
- ``corruption`` / ``severity`` in the meta (ImageNet-C/-3DCC, ``--corrupt``): accuracy per
  corruption, per severity and per (corruption, severity); on ImageNet-C also CE / mCE /
  relative mCE against AlexNet (``metrics.corruption``; relative needs ``clean_error``).
Every accuracy carries its 95% Clopper-Pearson interval.
"""
from __future__ import annotations

import numpy as np

from vlmprobe.metrics.corruption import corruption_errors, errors_by_corruption
from vlmprobe.metrics.robustness import NO_BASELINE, clopper_pearson


def accuracy_ci(correct) -> dict:
    """{accuracy, n, ci95: [lo, hi]} of a bool array (None accuracy when empty)."""
    c = np.asarray(correct, dtype=bool)
    if c.size == 0:
        return {"accuracy": None, "n": 0, "ci95": None}
    return {"accuracy": float(c.mean()), "n": int(c.size), "ci95": list(clopper_pearson(int(c.sum()), int(c.size)))}


def _meta(run, key):
    return run.field_values(key)


def shift_results(run, clean_error: float | None = None) -> dict | None:
    """The ``shift`` block (module docstring) or None when the run's data has no shift protocol."""
    if run.labels is None or not len(run.labels):
        return None
    data = run.config.get("data") if isinstance(run.config.get("data"), dict) else {}
    out: dict = {"top1": accuracy_ci(run.predictions == run.labels)}
    subset = data.get("class_subset")
    if subset:
        out.update(subset_accuracies(run, subset))
    sets = _meta(run, "label_set")
    if any(s is not None for s in sets):
        out["label_set_accuracy"] = accuracy_ci([p in (s or ()) for p, s in zip(run.predictions.tolist(), sets)])
    corr, sev = _meta(run, "corruption"), _meta(run, "severity")
    if all(c is not None for c in corr) and all(s is not None for s in sev):
        correct = run.predictions == run.labels
        corr_a, sev_a = np.asarray([str(c) for c in corr]), np.asarray([int(s) for s in sev])
        out["per_corruption"] = {c: accuracy_ci(correct[corr_a == c]) for c in sorted(set(corr_a))}
        out["per_severity"] = {str(s): accuracy_ci(correct[sev_a == s]) for s in sorted(set(sev_a))}
        out["per_corruption_severity"] = {f"{c}/{s}": accuracy_ci(correct[(corr_a == c) & (sev_a == s)])
                                          for c, s in sorted(set(zip(corr_a.tolist(), sev_a.tolist())))}
        if data.get("format") == "imagenet-c":
            out["corruption_error"] = corruption_errors(errors_by_corruption(correct, corr_a, sev_a), clean_error)
    return out if len(out) > 1 else None


def subset_accuracies(run, subset) -> dict:
    """``subset_accuracy`` and ``all_classes_accuracy`` (module docstring). A run without scores
    whose open-world answers were matched over all classes (``--label-space all``) has them
    matched again over the subset (``rematch_answers``), the label space its ID run is scored in."""
    subset = np.asarray(sorted(subset), dtype=np.int64)
    y = run.labels
    out = {"subset_classes": int(subset.size), "all_classes": len(run.classnames)}
    if run.scores is not None:
        s = np.where(np.isfinite(run.scores), run.scores, -np.inf)
        out["subset_accuracy"] = accuracy_ci(subset[s[:, subset].argmax(1)] == y)
        outside = np.setdiff1d(np.arange(s.shape[1]), subset)
        if outside.size and np.isfinite(run.scores[:, outside]).any():
            out["all_classes_accuracy"] = accuracy_ci(s.argmax(1) == y)
    sets = [s or (t,) for s, t in zip(_meta(run, "label_set"), y.tolist())]  # ObjectNet: any mapped class
    if run.scores is None:
        method = run.config.get("method") if isinstance(run.config.get("method"), dict) else {}
        pred = run.predictions
        if method.get("label_space", "all") == "all" and not method.get("closed_world") and run.records and \
                all(isinstance(r.get("response"), str) for r in run.records):
            pred = rematch_answers(run, subset)  # answers matched over all classes (--label-space all)
        out["subset_accuracy"] = accuracy_ci([p in s for p, s in zip(pred.tolist(), sets)])
    full = [r.get("prediction_all") for r in run.records]
    if "all_classes_accuracy" not in out:
        out["all_classes_accuracy"] = (accuracy_ci([p is not None and p in s for p, s in zip(full, sets)])
                                       if any("prediction_all" in r for r in run.records) else None)
    return out


# ------------------------------------------------------------------ ID -> shift pairs (compare --shift)

def _counts(correct) -> tuple[int, int]:
    c = np.asarray(correct, dtype=bool)
    return int(c.sum()), int(c.size)


def id_counts(run, subset=None) -> tuple[int, int]:
    """(correct, n) of an in-distribution run, on ``subset`` when given (Taori et al.: for R/A/
    ObjectNet the ID accuracy is on the same classes): images of those classes, argmax over
    their scores; a run without scores.npy (VLM generation) has its answers matched again
    against the subset's names (``rematch_answers``), the label space of the shift run."""
    from vlmprobe.errors import VlmprobeError

    if run.labels is None:
        raise VlmprobeError(f"{run.path}: records have no integer labels (an ID run needs them)")
    if subset is None:
        return _counts(run.predictions == run.labels)
    subset = np.asarray(sorted(subset), dtype=np.int64)
    keep = np.isin(run.labels, subset)
    if not keep.any():
        raise VlmprobeError(f"{run.path}: no images of the shift set's {subset.size} classes")
    if run.scores is None:
        pred = rematch_answers(run, subset)
        return _counts(pred[keep] == run.labels[keep])
    s = np.where(np.isfinite(run.scores[keep]), run.scores[keep], -np.inf)
    return _counts(subset[s[:, subset].argmax(1)] == run.labels[keep])


def rematch_answers(run, subset) -> np.ndarray:
    """int [N] predictions of a run without scores (VLM generation) in the label space of a shift
    set's class ``subset``: each stored open-world answer matched again against the subset's names
    only, with the run's own matching rule (``classify.matching``), as the shift run's answers were
    (-1: no match or ambiguous). So ID and shift accuracy are scored over the same classes. A run
    without answers (a scoring method's records without scores.npy) keeps its predictions only when
    every prediction of the subset's images lies in the subset (then it is the subset's argmax too).
    Any other run (closed-world questions that listed other classes, predictions outside the
    subset) is refused in one line."""
    from vlmprobe.classify.matching import match_response
    from vlmprobe.errors import VlmprobeError

    method = run.config.get("method") if isinstance(run.config.get("method"), dict) else {}
    subset = [int(c) for c in subset]
    answers = bool(run.records) and all(isinstance(r.get("response"), str) for r in run.records)
    if not answers and not any("response" in r for r in run.records) and run.predictions is not None:
        # no answers to match (a scoring method's records without scores.npy): usable only when every
        # prediction of the subset's images already lies in the subset, where it is also the subset's argmax
        keep = np.isin(run.labels, subset)
        if np.isin(run.predictions[keep], subset).all():
            return run.predictions
    if method.get("closed_world") or not answers:
        raise VlmprobeError(f"{run.path}: no scores.npy and no stored open-world answers to match against the shift "
                            f"set's {len(subset)} classes, so its ID accuracy would be in another label space than "
                            "the shift accuracy; rerun the ID run with open-world generation or a scoring method")
    names = [run.classnames[c] for c in subset]
    rule = method.get("match") or "substring"
    out = []
    for r in run.records:
        m = match_response(r["response"], names, rule).prediction
        out.append(-1 if m is None else subset[m])
    return np.asarray(out, dtype=np.int64)


def shift_counts(run) -> tuple[int, int, str]:
    """(correct, n, protocol) of a shift run: subset accuracy (R/A), label-set accuracy (ObjectNet)
    or top-1."""
    res = shift_results(run) or {}
    for key in ("label_set_accuracy", "subset_accuracy"):
        if res.get(key):
            a = res[key]
            return int(round(a["accuracy"] * a["n"])), a["n"], key.removesuffix("_accuracy")
    if run.labels is None:
        from vlmprobe.errors import VlmprobeError

        raise VlmprobeError(f"{run.path}: records have no integer labels (a shift run needs them)")
    return (*_counts(run.predictions == run.labels), "top1")


# imagenet-testbed (Taori et al. 2020, modestyachts/imagenet-testbed ``robustness_top1s.csv``):
# one row per model, one column per evaluation setting, top-1 in percent, blank = not evaluated.
# Shift set prefix -> (shift column, ID column); R/A/ObjectNet pair with ImageNet val restricted
# to the same classes (the testbed's ``val-on-<set>-classes``), as vlmprobe's own ID accuracy is.
TESTBED_COLUMNS = {
    "imagenet-v2:": ("imagenetv2-matched-frequency-format-val", "val"),
    "imagenet-sketch:": ("imagenet-sketch", "val"),
    "imagenet-r:": ("imagenet-r", "val-on-imagenet-r-classes"),
    "imagenet-a:": ("imagenet-a", "val-on-imagenet-a-classes"),
    "objectnet:": ("objectnet-1.0-beta", "val-on-objectnet-classes"),
}
CORRUPT_TAG = " --corrupt "  # joins a spec and its on-the-fly corruption in a shift set's name


def _testbed_columns(path, header, shift_spec):
    from vlmprobe.errors import VlmprobeError

    if CORRUPT_TAG in (shift_spec or ""):
        raise VlmprobeError(f"{path}: an imagenet-testbed table has no column for images corrupted on the fly "
                            f"({shift_spec!r}); give a CSV with columns model,id_accuracy,shift_accuracy")
    prefix = next((p for p in TESTBED_COLUMNS if (shift_spec or "").startswith(p)), None)
    if prefix is None:
        raise VlmprobeError(f"{path}: an imagenet-testbed table; its columns are known for shift sets "
                            f"{', '.join(TESTBED_COLUMNS)} (the shift run's dataset is {shift_spec!r})")
    shift_col, id_col = TESTBED_COLUMNS[prefix]
    if prefix == "imagenet-v2:":  # the variant: the release's folder name in the spec, or its --split
        for variant in ("threshold-0.7", "top-images"):
            if variant in shift_spec:
                shift_col = f"imagenetv2-{variant}-format-val"
    missing = [c for c in (id_col, shift_col) if c not in header]
    if missing:
        raise VlmprobeError(f"{path}: no column {', '.join(missing)} (imagenet-testbed robustness_top1s.csv layout)")
    return id_col, shift_col


def _reference_rows(path) -> tuple[list[dict], bool]:
    """The CSV's rows and whether it is imagenet-testbed's layout (else model,id_accuracy,shift_accuracy)."""
    import csv

    from vlmprobe.errors import VlmprobeError

    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except FileNotFoundError:
        raise VlmprobeError(f"--reference {path}: no such file") from None
    header = list(rows[0]) if rows else []
    need = ("model", "id_accuracy", "shift_accuracy")
    if "model" in header and "val" in header and "id_accuracy" not in header:
        return rows, True
    if rows and all(k in header for k in need):
        return rows, False
    raise VlmprobeError(f"{path}: expected a CSV header with columns {', '.join(need)} "
                        "or imagenet-testbed's robustness_top1s.csv (model, val, ...)")


def reference_baselines(path, sets, baseline_type: str | None = None) -> tuple[dict, dict]:
    """Baseline points per shift set (``shift_set`` keys) from a ``--reference`` CSV ->
    ({set: [{model, id, shift}]}, {set: rows skipped}). imagenet-testbed's table gives each set its
    own columns (``TESTBED_COLUMNS``); a CSV with one id_accuracy/shift_accuracy pair serves one set
    only, so several sets are refused with an error naming them. From a table in the testbed's
    layout whose models have known types (its ``model_types.py``, or a ``model_type`` column) only
    the baseline models enter (``metrics.testbed.baseline_models``: the testbed's standard-training
    models, or ``baseline_type``); rows of other types are skipped and counted."""
    from pathlib import Path

    from vlmprobe.errors import VlmprobeError

    path = Path(path)
    sets = list(dict.fromkeys(sets))
    if len(sets) > 1 and not _reference_rows(path)[1]:
        raise VlmprobeError(f"--reference {path}: one shift_accuracy column, but the --shift runs are on "
                            f"{len(sets)} shift sets ({', '.join(sets)}); compare one shift set at a time, or give "
                            "imagenet-testbed's robustness_top1s.csv (a column per set)")
    keep = None
    if _reference_rows(path)[1]:
        from vlmprobe.metrics.testbed import baseline_models, read_table

        table = read_table(path)
        if table.types or baseline_type:
            keep = set(baseline_models(table, baseline_type)[0])
    points, skipped = {}, {}
    for s in sets:
        points[s], skipped[s] = read_reference_csv(path, s)
        if keep is not None:
            skipped[s] += sum(p["model"] not in keep for p in points[s])
            points[s] = [p for p in points[s] if p["model"] in keep]
    return points, skipped


def read_reference_csv(path, shift_spec: str | None = None) -> tuple[list[dict], int]:
    """Baseline points ``[{model, id, shift}]`` (fractions) and the number of rows skipped.

    Two layouts: (1) a header naming ``model``, ``id_accuracy`` and ``shift_accuracy`` (fractions,
    or percentages when any value exceeds 1); (2) imagenet-testbed's ``robustness_top1s.csv``
    (``model`` plus a column per evaluation setting such as ``val``, ``imagenet-r``,
    ``val-on-imagenet-r-classes``; percent): the columns follow ``shift_spec``, the compared shift
    runs' dataset spec, through ``TESTBED_COLUMNS``; models with a blank in either column were not
    evaluated there and are skipped (counted)."""
    from pathlib import Path

    from vlmprobe.errors import VlmprobeError

    path = Path(path)
    rows, testbed = _reference_rows(path)
    if testbed:
        id_col, shift_col = _testbed_columns(path, list(rows[0]), shift_spec)
        percent = True
    else:
        id_col, shift_col, percent = "id_accuracy", "shift_accuracy", None
    out, skipped = [], 0
    for i, r in enumerate(rows, 2):
        if percent and (not (r[id_col] or "").strip() or not (r[shift_col] or "").strip()):
            skipped += 1
            continue
        try:
            out.append({"model": r["model"], "id": float(r[id_col]), "shift": float(r[shift_col])})
        except (TypeError, ValueError):
            raise VlmprobeError(f"{path}:{i}: {id_col}/{shift_col} must be numbers") from None
    if not out:
        raise VlmprobeError(f"{path}: no model has both {id_col} and {shift_col}")
    if percent or (percent is None and any(p["id"] > 1 or p["shift"] > 1 for p in out)):
        for p in out:
            p["id"], p["shift"] = p["id"] / 100, p["shift"] / 100
    return out, skipped


def _data(run) -> dict:
    return run.config.get("data") if isinstance(run.config.get("data"), dict) else {}


def shift_set(run) -> str:
    """The shift set a shift run scored: its dataset spec, plus `` --split S`` (e.g. an ImageNet-V2
    variant chosen under the variants' parent folder) and `` --corrupt NAME:SEVERITY`` (images
    corrupted on the fly) from ``config.json`` data. Each set gets its own effective-robustness
    line (``shift_table``) and its own reference columns."""
    data = _data(run)
    c = data.get("corrupt")
    return (str(data.get("spec") or "?") + (f" --split {data['split']}" if data.get("split") else "")
            + (f"{CORRUPT_TAG}{c.get('name')}:{c.get('severity')}" if isinstance(c, dict) else ""))


def pair_accuracies(id_run, shift_run) -> dict:
    """ID and shift (correct, n) of one pair, the ID accuracy on the shift set's class subset."""
    subset = _data(shift_run).get("class_subset")
    ik, in_ = id_counts(id_run, subset)
    sk, sn, protocol = shift_counts(shift_run)
    return {"id_k": ik, "id_n": in_, "shift_k": sk, "shift_n": sn, "protocol": protocol,
            "id_subset_classes": len(subset) if subset else None}


MCE_COLUMNS = ("mce", "relative_mce", "mce_partial", "relative_mce_partial", "mce_cells")


def corruption_columns(run, clean_error: float | None = None) -> dict:
    """An ImageNet-C run's mCE figures for a table row (``metrics.corruption``): ``mce`` /
    ``relative_mce`` (None unless all 15 x 5 cells), ``mce_partial`` / ``relative_mce_partial``
    over the measured cells and ``mce_cells`` (their ``corruption/severity`` names); {} for any
    other run. ``clean_error``: the model's clean error (``compare --shift``: the ID run's)."""
    ce = (shift_results(run, clean_error) or {}).get("corruption_error")
    if not ce:
        return {}
    return {"mce": ce["mce"], "relative_mce": ce["relative_mce"], "mce_partial": ce["mce_partial"],
            "relative_mce_partial": ce["relative_mce_partial"], "mce_cells": ce["partial_cells"]}


def shift_table(pairs, baseline=None, kind: str = "logit") -> dict:
    """``pairs``: [(label dict, id RunData, shift RunData)]; ``baseline``: the accuracies
    [{"id", "shift"}] of *other* models defining the effective-robustness line, as ``{shift set:
    [...]}`` (one line per ``shift_set``) or one list when all pairs share one set.
    -> {rows, sets: {set: {fit, line, n_rows, no_fit}}, fit, line} (``fit`` / ``line``: the only set's,
    None with several sets: a line through points of different shifts means nothing).

    Effective robustness (Taori et al. 2020) is the distance from a line fitted on baseline models
    (standard ImageNet-trained ones), never from a line through the runs it judges (two runs would
    both get exactly 0): a set without baseline points (``baseline`` None or missing the set) gets
    no fit, ``effective_robustness`` None and ``no_fit`` = "n/a: no baseline"; one with fewer than
    two usable baseline points says so in ``no_fit``. ``line`` (Tu et al.'s Huber line, Spearman,
    R²) describes the compared runs themselves and is kept."""
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.metrics.robustness import clopper_pearson, effective_robustness, fittable, line_fit

    rows = []
    for label, id_run, sh_run in pairs:
        a = pair_accuracies(id_run, sh_run)
        ik, in_, sk, sn = a["id_k"], a["id_n"], a["shift_k"], a["shift_n"]
        rows.append({**label, "id_run": str(id_run.path), "shift_run": str(sh_run.path),
                     "shift_dataset": _data(sh_run).get("spec"), "shift_set": shift_set(sh_run),
                     "protocol": a["protocol"], "id_subset_classes": a["id_subset_classes"],
                     "id_accuracy": ik / in_, "id_n": in_, "id_ci95": list(clopper_pearson(ik, in_)),
                     "shift_accuracy": sk / sn, "shift_n": sn, "shift_ci95": list(clopper_pearson(sk, sn)),
                     **corruption_columns(sh_run, None if a["id_subset_classes"] else 1 - ik / in_)})
    names = list(dict.fromkeys(r["shift_set"] for r in rows))
    if baseline is not None and not isinstance(baseline, dict):
        if len(names) > 1:
            raise VlmprobeError(f"one baseline for {len(names)} shift sets ({', '.join(names)}): give one per set")
        baseline = {names[0]: baseline} if names else {}
    sets = {}
    for name in names:
        group = [r for r in rows if r["shift_set"] == name]
        base = (baseline or {}).get(name) or []
        fit, no_fit = None, NO_BASELINE if not base else (
            f"n/a: fewer than 2 baseline models with different ID accuracy inside (0, 1) ({len(base)} given)")
        for r in group:
            r["predicted_shift_accuracy"], r["effective_robustness"] = None, None
        if base and fittable([b["id"] for b in base], [b["shift"] for b in base]):
            er = effective_robustness([r["id_accuracy"] for r in group], [r["shift_accuracy"] for r in group],
                                      [b["id"] for b in base], [b["shift"] for b in base], kind)
            fit = {"transform": kind, "slope": er["slope"], "intercept": er["intercept"],
                   "fit_over": "baseline", "n_baseline": er["n_fit"]}
            no_fit = None
            for r, pred, e in zip(group, er["predicted"], er["er"]):
                r["predicted_shift_accuracy"], r["effective_robustness"] = float(pred), float(e)
            from vlmprobe.metrics.intervals import effective_robustness_intervals

            ivs = effective_robustness_intervals(
                [round(r["id_accuracy"] * r["id_n"]) for r in group], [r["id_n"] for r in group],
                [round(r["shift_accuracy"] * r["shift_n"]) for r in group], [r["shift_n"] for r in group],
                [b["id"] for b in base], [b["shift"] for b in base], kind)  # the baseline line stays fixed
            for r, iv in zip(group, ivs):  # issue 33: a 95% interval on ER too
                r["effective_robustness_ci95"] = [iv["low"], iv["high"]] if iv else None
        line = (line_fit([r["id_accuracy"] for r in group], [r["shift_accuracy"] for r in group])
                if len(group) >= 2 else None)
        sets[name] = {"fit": fit, "line": line, "n_rows": len(group), "no_fit": no_fit}
    only = next(iter(sets.values())) if len(sets) == 1 else {"fit": None, "line": None}
    return {"rows": rows, "sets": sets, "fit": only["fit"], "line": only["line"]}
