"""The results dictionary of a run: ``summarize`` (called by the evaluation runner at the end of
every run) and ``results_from_run`` (recomputes it from a run directory, no model needed).

All numbers are plain floats/ints; undefined values (NaN: a class without samples, a
correlation over constant values) are written as null. Accuracies are fractions in [0, 1];
group drops are in points. Class names that occur more than once in the class list (ImageNet's
"missile", "sunglasses") are keyed as "name #index" in per-class tables and listed under
``counts.duplicate_classnames``; the classes stay separate (no merging).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.metrics import accuracy as acc_m
from vlmprobe.metrics import calibration as cal_m
from vlmprobe.metrics import groups as grp_m
from vlmprobe.metrics import margin as mar_m
from vlmprobe.metrics import ood as ood_m
from vlmprobe.metrics.correlation import spearman
from vlmprobe.metrics.retrieval import retrieval_from_records
from vlmprobe.metrics.rundata import RunData, find_key, load_run
from vlmprobe.metrics.shape_bias import shape_bias_from_records
from vlmprobe.metrics.validate import check_k, check_labels, check_predictions, check_scores

DEFAULT_WORST_K = (1, 5, 10, 20)


def unique_names(classnames: Sequence[str]) -> list[str]:
    """Class names as table keys: a repeated name becomes "name #index"."""
    dup = {n for n, c in Counter(classnames).items() if c > 1}
    return [f"{n} #{i}" if n in dup else str(n) for i, n in enumerate(classnames)]


def jsonable(obj):
    """numpy scalars/arrays -> Python; NaN/inf -> None; tuples -> lists; recursive."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _worst_k_table(values: np.ndarray, ks, keys: list[str]) -> dict:
    out = {}
    for k in ks:
        k = check_k(k, "worst-k k")
        if np.isnan(values).all():
            out[str(k)] = {"k": k, "k_used": 0, "value": None, "classes": []}
            continue
        mean, chosen, used = acc_m.worst_k(values, k)
        out[str(k)] = {"k": k, "k_used": used, "value": mean, "classes": [keys[c] for c in chosen]}
    return out


def _cmm_block(scores, member_labels, per_class_acc, ks, keys) -> dict:
    k = scores.shape[1]
    cmm = mar_m.class_matching_margin(scores, member_labels, k)
    present = ~np.isnan(cmm)
    return {
        "mean": float(cmm[present].mean()) if present.any() else None,
        "per_class": dict(zip(keys, cmm)),
        "worst_k": _worst_k_table(cmm, ks, keys),
        "spearman_vs_accuracy": spearman(cmm, per_class_acc),
    }


def summarize(labels, predictions, scores, classnames, skipped: int = 0, worst_k=DEFAULT_WORST_K,
              groups: Mapping[str, Sequence] | None = None, *, group_drop: tuple[str, str] | None = None,
              calibration_fit=None, pseudo_labels=None, confusion_top: int = 10,
              ece_bins: int = cal_m.DEFAULT_BINS, ece_edges: str = "right") -> dict:
    """Metrics of one run over its N non-skipped samples.

    labels int [N]; predictions int [N] (-1 = no prediction, wrong); scores float [N, K] or None
    (then no top-5 / CMM / calibration); classnames: K names; skipped: samples not evaluated
    (reported only). groups: {field: N values} for per-group accuracy, group_drop=(a, b) adds
    100 * (acc_a - acc_b). calibration_fit: bool [N], rows to fit the temperature on (the
    others are evaluated). pseudo_labels: int [N] class memberships from a reference predictor
    for the label-free CMM (-1: no reference prediction, the sample is left out of it). Raises VlmprobeError on malformed input.
    """
    classnames = [str(c) for c in classnames]
    k = len(classnames)
    if k == 0:
        raise VlmprobeError("summarize: empty class list")
    y = check_labels(labels, k)
    n = y.size
    pred = check_predictions(predictions, k, n)
    ks = [check_k(x, "worst-k k") for x in worst_k]
    keys = unique_names(classnames)
    per_class, counts = acc_m.per_class_accuracy(y, pred, k)
    dup = sorted({c for c in classnames if classnames.count(c) > 1}) if len(set(classnames)) < k else []
    out = {
        "counts": {"n": n, "n_scored": 0, "skipped": int(skipped), "no_prediction": int((pred < 0).sum()),
                   "num_classes": k, "classes_present": int((counts > 0).sum()),
                   "duplicate_classnames": dup},
        "top1": acc_m.top1_accuracy(y, pred),
        "top5": None,
        "top5_k": None,
        "mean_per_class_recall": acc_m.mean_per_class_recall(per_class),
        "worst_k_accuracy": _worst_k_table(per_class, ks, keys),
        "per_class_accuracy": dict(zip(keys, per_class)),
        "per_class_count": dict(zip(keys, counts)),
        "confusions": [
            {"true": keys[t], "predicted": keys[p], "count": c, "fraction_of_true": c / counts[t]}
            for t, p, c in acc_m.top_confusions(y, pred, k, confusion_top)],
    }
    if scores is not None:
        s = check_scores(scores, n, k)
        out["counts"]["n_scored"] = n
        out["top5"] = acc_m.topk_accuracy(s, y, 5) if n else None
        out["top5_k"] = min(5, k)
        if k >= 2 and n:
            out["cmm"] = _cmm_block(s, y, per_class, ks, keys)
            if pseudo_labels is not None:
                pl = check_predictions(pseudo_labels, k, n)
                has = pl >= 0
                if not has.any():
                    raise VlmprobeError("pseudo labels: no sample has a reference prediction")
                block = _cmm_block(s[has], pl[has], per_class, ks, keys)
                block["agreement_with_labels"] = float((pl[has] == y[has]).mean())
                block["n_unassigned"] = int((~has).sum())
                out["cmm_pseudo"] = block
        if n:
            calib = cal_m.calibration_summary(s, y, 1.0, ece_bins, ece_edges)
            calib.update({"bins": ece_bins, "bin_edges": "(l, u]" if ece_edges == "right" else "[l, u)"})
            if calibration_fit is not None:
                fit = np.asarray(calibration_fit, dtype=bool)
                if fit.shape != (n,):
                    raise VlmprobeError(f"calibration split: mask of shape {fit.shape} for {n} samples")
                calib["temperature_scaling"] = cal_m.temperature_scaling(s, y, fit, ece_bins, ece_edges)
            out["calibration"] = calib
    elif pseudo_labels is not None or calibration_fit is not None:
        raise VlmprobeError("pseudo-label CMM and temperature scaling need a score matrix (scores.npy)")
    if groups:
        out["groups"] = _group_reports(acc_m.correct_mask(y, pred), groups, group_drop)
    from vlmprobe.metrics.intervals import classification_intervals

    out["intervals"] = classification_intervals(y, pred, scores if scores is not None and n else None, keys, ks,
                                                ece_bins=ece_bins, ece_edges=ece_edges)
    return jsonable(out)


def _group_reports(correct: np.ndarray, groups: Mapping[str, Sequence], group_drop) -> dict:
    """{field: per-group accuracy report (+ the drop between the two named groups)}."""
    out = {}
    for fname, values in groups.items():
        rep = grp_m.group_accuracy(correct, list(values), fname)
        if group_drop:
            rep["drop"] = grp_m.group_drop(rep, *group_drop)
        out[fname] = rep
    return out


def summarize_unlabeled(run: RunData) -> dict:
    """For runs of unlabeled images (e.g. an OOD set): counts and how often each class was
    predicted; accuracy-type metrics do not apply."""
    counts = {name: 0 for name in unique_names(run.classnames)}
    keys = list(counts)
    no_prediction = 0
    for r in run.records:
        p = r.get("prediction")
        if p is None:
            no_prediction += 1
        else:
            counts[keys[p]] += 1
    return {"unlabeled": True, "counts": {"n": len(run.records), "skipped": run.skipped,
                                          "no_prediction": no_prediction},
            "prediction_counts": counts}


def summarize_correct(correct, skipped: int = 0, groups: Mapping[str, Sequence] | None = None,
                      group_drop: tuple[str, str] | None = None, no_prediction: int | None = None) -> dict:
    """For runs whose records only say right/wrong (e.g. WikiQA "correct"): accuracy, counts
    (``no_prediction``: unparseable answers, counted wrong), and per-group accuracy."""
    c = np.array([bool(x) for x in correct], dtype=bool)
    out = {"counts": {"n": int(c.size), "skipped": int(skipped)},
           "accuracy": float(c.mean()) if c.size else None}
    if no_prediction is not None:
        out["counts"]["no_prediction"] = int(no_prediction)
    if groups:
        out["groups"] = _group_reports(c, groups, group_drop)
    from vlmprobe.metrics.intervals import correct_intervals

    out["intervals"] = correct_intervals(c)
    return jsonable(out)


def calibration_mask(run: RunData, split) -> np.ndarray:
    """bool [N] rows to fit the temperature on. ``split``: a fraction in (0, 1) (a sample is in
    the fit split when sha256(id) / 2^64 < fraction: stable under resume and reordering) or
    "FIELD=VALUE" (records whose field, top level or "meta", equals VALUE as a string)."""
    if isinstance(split, str) and "=" in split:
        fname, value = split.split("=", 1)
        vals = run.field_values(fname)
        if all(v is None for v in vals):
            raise VlmprobeError(f"calibration split: field {fname!r} is missing from every sample")
        return np.array([v is not None and str(v) == value for v in vals], dtype=bool)
    try:
        frac = float(split)
    except (TypeError, ValueError):
        raise VlmprobeError(f"calibration split must be a fraction in (0, 1) or FIELD=VALUE, got {split!r}") from None
    if not 0 < frac < 1:
        raise VlmprobeError(f"calibration split fraction must be in (0, 1), got {frac}")
    h = [int(hashlib.sha256(i.encode()).hexdigest()[:16], 16) / 2.0**64 for i in run.ids]
    return np.array(h) < frac


def resolve_logit_scale(run: RunData, logit_scale: float | None) -> tuple[float | None, str]:
    """CLIP logit scale for MCM: given > config.json "logit_scale" > 100 for zero-shot runs."""
    if logit_scale is not None:
        return float(logit_scale), "given"
    found = find_key(run.config, "logit_scale")
    if isinstance(found, (int, float)) and found > 0:
        return float(found), "config.json"
    if (run.method or "").startswith("zeroshot"):
        return 100.0, "assumed (CLIP default 100)"
    return None, "unknown"


def ood_results(run: RunData, ood: RunData, logit_scale: float | None = None, mcm_tau: float = 1.0,
                tpr: float = 0.95) -> tuple[dict, dict]:
    """({"msp": {...}, "mcm": {...}, "energy", "max_logit", "entropy"}, {name: (id_conf, ood_conf)})
    with ``run`` in-distribution (``metrics.ood`` defines the scores). The pair must share model,
    method, class list and label space, and ImageNet-O follows its release's protocol
    (``metrics.ood_pairs``: ``protocol`` block and ``aupr_ood`` per score)."""
    from vlmprobe.metrics.ood_pairs import aupr_ood, pair_scores

    id_raw, ood_raw, protocol = pair_scores(run, ood)
    id_s, ood_s = check_scores(id_raw), check_scores(ood_raw, what="OOD scores")
    confs = {name: (fn(id_s), fn(ood_s)) for name, fn in ood_m.SCORES.items()}
    scale, source = resolve_logit_scale(run, logit_scale)
    if scale is not None:
        confs["mcm"] = (ood_m.mcm(id_raw, scale, mcm_tau), ood_m.mcm(ood_raw, scale, mcm_tau))
    res = {name: ood_m.ood_summary(a, b, tpr) for name, (a, b) in confs.items()}
    if protocol is not None and protocol["name"] == "imagenet-o-200":
        for name, (a, b) in confs.items():
            res[name]["aupr_ood"] = aupr_ood(a, b)
    if "mcm" in res:
        res["mcm"].update({"logit_scale": scale, "logit_scale_source": source, "tau": mcm_tau})
    if protocol is not None:
        res["protocol"] = protocol
    res["ood_run"] = str(ood.path)
    return res, confs


def results_for(run: RunData, worst_k=DEFAULT_WORST_K, groups: Sequence[str] | None = None,
                group_drop: tuple[str, str] | None = None, calibration_split=None,
                ood: RunData | None = None, pseudo: RunData | None = None, logit_scale: float | None = None,
                mcm_tau: float = 1.0, confusion_top: int = 10, ece_bins: int = cal_m.DEFAULT_BINS,
                ece_edges: str = "right", factors: str | None = None, real_labels: str | bool | None = None,
                factor_variant: str | None = None, clean_error: float | None = None) -> dict:
    """Results of a loaded run (see ``results_from_run``). ``clean_error``: the same model's error
    on the clean images, for ImageNet-C's relative CE / mCE. ``factors`` (``imagenet-x`` or a
    FILE.jsonl) adds ImageNet-X factor accuracies (only ``factor_variant`` when given); ``real_labels`` (True: the imagenet-x
    package's file, or a FILE) adds ImageNet-ReaL accuracy (``metrics.factors``)."""
    gvals = {g: run.field_values(g) for g in groups} if groups else None
    if run.method == "retrieval":
        out = {"retrieval": jsonable(retrieval_from_records(run.records, run.scores, run.skipped)[0])}
        method_cfg = run.config.get("method") if isinstance(run.config.get("method"), dict) else {}
        out["retrieval"]["candidates"] = {k: method_cfg.get(k) for k in ("max_candidates", "candidate_rule", "similarity")}
    elif run.records and all(r.get("label", 0) is None and "correct" not in r for r in run.records):
        out = summarize_unlabeled(run)
    elif run.labels is None:
        if not run.records or not all("correct" in r for r in run.records):
            raise VlmprobeError(f"{run.path / 'samples.jsonl'}: records have neither integer 'label' "
                                "nor 'correct' fields; nothing to score")
        no_pred = (sum(r.get("prediction") is None for r in run.records)
                   if any("prediction" in r for r in run.records) else None)
        out = summarize_correct([r["correct"] for r in run.records], run.skipped, gvals, group_drop, no_pred)
    else:
        pseudo_labels = None
        if pseudo is not None:
            if pseudo.predictions is None:
                raise VlmprobeError(f"{pseudo.path}: no predictions to use as pseudo labels")
            by_id = dict(zip(pseudo.ids, pseudo.predictions))
            missing = [i for i in run.ids if i not in by_id]
            if missing:
                raise VlmprobeError(f"pseudo-label run {pseudo.path} lacks {len(missing)} sample ids (e.g. {missing[0]!r})")
            pseudo_labels = np.array([by_id[i] for i in run.ids], dtype=np.int64)
        fit = calibration_mask(run, calibration_split) if calibration_split is not None else None
        out = summarize(run.labels, run.predictions, run.scores, run.classnames, run.skipped, worst_k, gvals,
                        group_drop=group_drop, calibration_fit=fit, pseudo_labels=pseudo_labels,
                        confusion_top=confusion_top, ece_bins=ece_bins, ece_edges=ece_edges)
    if isinstance(out.get("counts"), dict):
        out["counts"]["nonfinite_scores"] = len(run.nonfinite_ids)
    out["nonfinite_samples"] = run.nonfinite_ids  # ids whose scores were NaN/inf: no prediction, not scored
    if run.method:
        out["method"] = run.method
    bias = shape_bias_from_records(run.records, run.classnames)
    if bias is not None:
        out["shape_bias"] = jsonable(bias)
    if run.labels is not None:
        from vlmprobe.metrics.counteranimal import run_counteranimal

        ca = run_counteranimal(run)  # common/counter/drop per class and background on CounterAnimal data
        if ca is not None:
            out["counteranimal"] = jsonable(ca)
    from vlmprobe.metrics.shifts import shift_results

    shift = shift_results(run, clean_error)  # class-subset (R/A/ObjectNet), label-set and per-corruption accuracies
    if shift is not None:
        out["shift"] = jsonable(shift)
    if factors is not None:
        from vlmprobe.metrics.factors import run_factor_results

        out["factors"] = jsonable(run_factor_results(run, factors, variant=factor_variant))
    if real_labels is not None:
        from vlmprobe.metrics.factors import run_real_results

        out["real"] = jsonable(run_real_results(run, None if real_labels is True else real_labels))
    if ood is not None:
        out["ood"] = jsonable(ood_results(run, ood, logit_scale, mcm_tau)[0])
    return out


def results_from_run(run_dir, **opts) -> dict:
    """Recompute the results of RUN_DIR from config.json + samples.jsonl (+ scores.npy).
    Options as ``results_for``; ``ood``/``pseudo`` may be run directories."""
    for key in ("ood", "pseudo"):
        if opts.get(key) is not None and not isinstance(opts[key], RunData):
            opts[key] = load_run(opts[key])
    return results_for(load_run(run_dir), **opts)


# Keys that ``summarize``/``results_for`` may write; other keys of an existing results.json
# (e.g. the runner's own bookkeeping) are kept when the metrics are recomputed.
METRIC_KEYS = frozenset({
    "counts", "top1", "top5", "top5_k", "mean_per_class_recall", "worst_k_accuracy", "per_class_accuracy",
    "per_class_count", "confusions", "cmm", "cmm_pseudo", "calibration", "groups", "ood", "accuracy", "method",
    "nonfinite_samples", "counteranimal", "factors", "real", "shape_bias", "retrieval", "shift", "intervals"})
# ``open_world`` / ``multi_label`` (``metrics --open-world`` / ``--label-sets``) are not metric keys: a plain
# recomputation keeps them (with their .jsonl files beside), the option recomputes them.


def merge_results(old: dict | None, new: dict) -> dict:
    """``new`` plus the keys of ``old`` that are not metric keys (kept in their old order first)."""
    kept = {k: v for k, v in (old or {}).items() if k not in METRIC_KEYS and k not in new}
    return {**kept, **new}
