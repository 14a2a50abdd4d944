"""Read a study directory (``study.json`` + its run directories) into the report's tables.

Pure reading: no model is loaded. Every row keeps the id (relative directory) of the run it came
from, so the report can link each number to its source. Missing or failed runs simply leave
their rows out (the report lists them).

Runs on a robustness dataset (an entry with ``groups`` or ``unlabeled``) feed the group-shift
table (and the OOD runs), not the main table; ``ood``, ``shape_bias``, ``retrieval`` and
``factors`` runs feed their own sections; ``shift`` runs feed the distribution-shift table and
the effective-robustness figure.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import VlmprobeError
from ..metrics.shifts import MCE_COLUMNS
from .executors import NOT_FINISHED

EVAL_MEASURES = ("zeroshot", "generate", "likelihood", "classifier")
LABELS = {"zeroshot": "CLIP zero-shot", "generate": "direct generation", "likelihood": "probability inference",
          "probe": "linear probe", "classifier": "supervised classifier"}
VIA_METHOD = ("ood", "shape_bias", "factors", "shift")  # measures labelled by the eval method they use
VIA_KEYS = ("method", "ood", "source", "variant", "shift")  # their options shown in their own columns, not the label


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def describe(run: dict) -> str:
    """Human label of a run's method and non-default options, e.g. ``generation (closed world, 2 candidates)``."""
    from .measures import MEASURES

    m = run["measure"]
    if m == "finetune":
        return "fine-tuning"
    spec = MEASURES[m]
    opts = []
    for k, v in run["params"].items():
        if v == spec.options[k].default or not spec.options[k].in_id or (m in VIA_METHOD and k in VIA_KEYS):
            continue
        if k == "num_candidates":
            opts.append(f"{v} candidates")
        elif k == "closed_world":
            opts.append("closed world" if v else "open world")
        elif isinstance(v, bool):
            opts.append(k.replace("_", " ") if v else f"no {k.replace('_', ' ')}")
        elif k == "condition":
            opts.append(str(v).replace("_", " ").replace("+", " + "))
        else:
            opts.append(f"{k.replace('_', ' ')} {Path(str(v)).name}")
    label = LABELS.get(run["params"]["method"]) if m in VIA_METHOD else LABELS.get(m, m)
    return label + (f" ({', '.join(opts)})" if opts else "")


def num_candidates(run: dict, num_classes: int | None) -> int | None:
    n = run["params"].get("num_candidates")
    if n in (None, "all"):
        return num_classes
    return int(n)


def _worst(res: dict, k: int):
    w = (res.get("worst_k_accuracy") or {}).get(str(k)) or {}
    return w.get("value"), w.get("classes") or []


def _calibration(cal: dict) -> dict:
    """NLL on all samples, and ECE / NLL after temperature scaling (``calibration.temperature_scaling
    .after``: the held-out split, T fitted on the other; None when the run did not fit one)."""
    after = (cal.get("temperature_scaling") or {}).get("after") or {}
    return {"nll": cal.get("nll"), "ece_ts": after.get("ece"), "nll_ts": after.get("nll")}


def _eval_row(run: dict, res: dict) -> dict:
    w1, c1 = _worst(res, 1)
    return {"run": run["id"], "model": run["model"], "dataset": run["dataset"], "measure": run["measure"],
            "method": describe(run), "top1": res.get("top1"), "worst1": w1, "worst1_class": c1[0] if c1 else None,
            "worst5": _worst(res, 5)[0], "worst10": _worst(res, 10)[0],
            "cmm": (res.get("cmm") or {}).get("mean"), "ece": (res.get("calibration") or {}).get("ece"),
            **_calibration(res.get("calibration") or {}),
            "num_classes": (res.get("counts") or {}).get("num_classes"), "n": (res.get("counts") or {}).get("n"),
            "per_class": res.get("per_class_accuracy") or {},
            "cmm_per_class": (res.get("cmm") or {}).get("per_class") or {}}


def read_study(path: str | Path) -> dict:
    """-> {name, study_text, world, models, runs (id -> entry + status), main, label_space,
    prompts, probes, frequency, finetune, wikiqa, clip_worst, groups, ood, shape_bias, retrieval, factors,
    shift, failed, skips}."""
    root = Path(path)
    plan = _read_json(root / "study.json")
    if plan is None:
        raise VlmprobeError(f"{root}: no study.json (not a directory written by `vlmprobe study`)")
    runs = {r["id"]: r for r in plan["runs"]}
    out = {k: plan.get(k) for k in ("name", "file", "study_text", "seed", "world", "models", "datasets", "skips",
                                    "reference")}
    out.update(runs=runs, main=[], label_space=[], prompts=[], probes=[], frequency=[], finetune=[], wikiqa=[],
               clip_worst=[], ood=[], groups=[], shape_bias=[], retrieval=[], factors=[], shift=[], failed=[r["id"] for r in plan["runs"]
                                                      if r.get("status") in NOT_FINISHED])
    evals = {}
    robust = {n for n, d in (plan.get("datasets") or {}).items() if d.get("groups") or d.get("unlabeled")}
    robust |= {r["params"].get("shift") for r in plan["runs"] if r["measure"] == "shift"}  # shifted sets: own section
    for rid, run in runs.items():
        d = root / rid
        if run["measure"] in EVAL_MEASURES:
            res = _read_json(d / "results.json")
            if res is None:
                continue
            row = _eval_row(run, res)
            out["groups"] += _group_rows(row, res)
            if run["dataset"] in robust:
                continue
            evals[rid] = row
            default_space = run["params"].get("num_candidates") in (None, "all") and not run["params"].get("cot")
            variant = {k: v for k, v in run["params"].items() if k not in ("num_candidates", "closed_world")}
            from .measures import MEASURES
            is_default = all(v == MEASURES[run["measure"]].options[k].default for k, v in variant.items()
                             if MEASURES[run["measure"]].options[k].in_id
                             and k not in ("answer_prefix", "templates", "cpe_templates"))
            if default_space and not run["params"].get("closed_world") and is_default:
                out["main"].append(row)
            if run["measure"] != "zeroshot" and (run["params"].get("closed_world") or run["measure"] == "likelihood") \
                    and is_default:
                out["label_space"].append({**row, "candidates": num_candidates(run, row["num_classes"])})
            if run["measure"] == "generate" and not run["params"].get("closed_world"):
                out["prompts"].append({**row, "prompt": run["params"].get("prompt"), "cot": run["params"].get("cot")})
            if "ood" in res:  # `vlmprobe metrics RUN --ood OOD_RUN` run by hand
                out["ood"].append(_ood_row(run, res, d, Path(res["ood"].get("ood_run") or "?").name, None))
        elif run["measure"] == "ood":
            res = _read_json(d / "results.json")
            if res is None or "ood" not in res:
                continue
            out["ood"].append(_ood_row(run, res, d, run["params"]["ood"], run["deps"].get("ood")))
        elif run["measure"] == "shape_bias":
            res = (_read_json(d / "results.json") or {}).get("shape_bias")
            if not res:
                continue
            out["shape_bias"].append({"run": rid, "model": run["model"], "dataset": run["dataset"],
                                      "method": describe(run), **{k: res["overall"].get(k) for k in
                                                                  ("shape_bias", "shape", "texture", "other", "n")},
                                      "per_category": res.get("per_category") or {}})
        elif run["measure"] == "retrieval":
            res = (_read_json(d / "results.json") or {}).get("retrieval")
            if not res:
                continue
            out["retrieval"].append({"run": rid, "model": run["model"], "dataset": run["dataset"],
                                     "i2t": res["image_to_text"]["recall"], "t2i": res["text_to_image"]["recall"],
                                     "n_images": res["image_to_text"].get("n_queries"),
                                     "n_captions": res["text_to_image"].get("n_queries")})
        elif run["measure"] == "shift":
            rows = ((_read_json(d / "shift.json") or {}).get("shift") or {}).get("rows") or []
            for r in rows[:1]:
                out["shift"].append({"run": rid, "model": run["model"], "method": describe(run),
                                     "dataset": run["dataset"], "shift_dataset": run["params"]["shift"],
                                     **{k: r.get(k) for k in ("id_accuracy", "id_ci95", "id_n", "shift_accuracy",
                                                              "shift_ci95", "shift_n", "protocol",
                                                              "id_subset_classes", "shift_set", *MCE_COLUMNS)}})
        elif run["measure"] == "factors":
            res = (_read_json(d / "results.json") or {}).get("factors")
            if res and res.get("variants"):
                out["factors"].append(_factor_row(run, res))
        elif run["measure"] == "probe":
            layers = _read_json(d / "layers.json")
            res = _read_json(d / "results.json") or {}
            if layers is None:
                continue
            ref = layers.get("reference") or {}
            probe = {"run": rid, "model": run["model"], "dataset": run["dataset"], "best": layers.get("best"),
                     "val": layers.get("best_val_accuracy"), "top1": layers.get("best_test_accuracy"),
                     "clip_probe": ((ref.get("probe") or {}).get("test_accuracy")),
                     "clip_zeroshot": ((ref.get("zeroshot") or {}).get("top1")),
                     "png": str(d / "accuracy_vs_layer.png") if (d / "accuracy_vs_layer.png").exists() else None}
            out["probes"].append(probe)
            row = _eval_row(run, res)
            row.update(top1=probe["top1"], method=f"linear probe ({probe['best']}, chosen on val)")
            out["main"].append(row)
            evals[rid] = row
        elif run["measure"] == "frequency":
            summary = _read_json(d / "frequency.json")
            if summary is None:
                continue
            classes = []
            try:
                with open(d / "frequency.csv", encoding="utf-8") as f:
                    for r in csv.DictReader(f):
                        classes.append({"class": r["class"], "mentions": int(r["mentions"]),
                                        "accuracy": float(r["accuracy"]) if r["accuracy"] else None})
            except OSError:
                pass
            out["frequency"].append({"run": rid, "model": run["model"], "of": run["deps"].get("run"),
                                     "spearman": summary.get("spearman"), "pearson_log": summary.get("pearson_log"),
                                     "classes": classes})
        elif run["measure"] == "wikiqa":
            res = _read_json(d / "results.json")
            if res is None:
                continue
            split = res.get("split") or {}
            a, b = split.get("classified_correct") or {}, split.get("classified_wrong") or {}
            out["wikiqa"].append({"run": rid, "model": run["model"], "method": run["params"]["method"],
                                  "condition": run["params"]["condition"], "accuracy": res.get("accuracy"),
                                  "chance": res.get("chance"), "unparseable_rate": res.get("unparseable_rate"),
                                  "n": res.get("num_scored"),
                                  "right_n": a.get("n"), "right_acc": a.get("accuracy"),
                                  "wrong_n": b.get("n"), "wrong_acc": b.get("accuracy"), "gap": split.get("gap"),
                                  "classification_run": run["deps"].get("classification")})
        elif run["measure"] == "finetune":
            summary = _read_json(d / "summary.json")
            if summary is None:
                continue
            out["finetune"].append({"run": rid, "model": run["model"], "base": run["params"]["from"],
                                    "summary": {k: summary.get(k) for k in ("final_eval", "steps", "seconds",
                                                                             "model_spec", "trainable_parameters")},
                                    "curve": str(d / "train_curve.png") if (d / "train_curve.png").exists() else None,
                                    "log": str(d / "log.jsonl") if (d / "log.jsonl").exists() else None})
    # WikiQA column of the main table: the model's image-condition accuracy (first method)
    for row in out["main"]:
        qa = next((q for q in out["wikiqa"] if q["model"] == row["model"] and q["condition"] == "image"), None)
        row["wikiqa"], row["wikiqa_run"] = (qa["accuracy"], qa["run"]) if qa else (None, None)
    out["evals"] = evals
    out["clip_worst"] = _clip_worst(out, runs)
    return out


def _ood_row(run: dict, res: dict, d: Path, ood_dataset: str, ood_run: str | None) -> dict:
    """AUROC / FPR@95TPR of the MSP and MCM scores (ID = positive) of one OOD measurement."""
    o = res["ood"]
    return {"run": run["id"], "model": run["model"], "dataset": run["dataset"], "method": describe(run),
            "ood_dataset": ood_dataset, "ood_run": ood_run, "top1": res.get("top1"),
            **{f"{s}_{k}": (o.get(s) or {}).get(key) for s in ("msp", "mcm")
               for k, key in (("auroc", "auroc"), ("fpr95", "fpr@95tpr"))},
            "png": str(d / "roc.png") if (d / "roc.png").exists() else None}


def _factor_row(run: dict, res: dict) -> dict:
    """Overall and per-factor accuracy / error ratio of one ``factors`` run, for the annotation it
    asked for (default as ``vlmprobe compare``: top-factor for imagenet-x)."""
    from ..metrics.compare import default_variant

    variant = run["params"].get("variant") or default_variant(res["variants"])
    v = res["variants"][variant]
    return {"run": run["id"], "model": run["model"], "dataset": run["dataset"], "method": describe(run),
            "source": Path(str(res.get("source"))).name, "variant": variant, "n": v.get("n"),
            "n_unmatched": v.get("n_unmatched"), "accuracy": v.get("accuracy"), "factors": v.get("factors") or {},
            "of": run["deps"].get("run")}


def _group_rows(row: dict, res: dict) -> list[dict]:
    """One row per group field of an eval run: the two compared groups (``--group-drop A,B``,
    else the first two values in order) and drop = 100 * (acc_A - acc_B) points."""
    rows = []
    for field, rep in (res.get("groups") or {}).items():
        groups = rep.get("groups") or {}
        drop = rep.get("drop") or {}
        a, b = (drop["from"], drop["to"]) if drop else (list(groups) + [None, None])[:2]
        if a is None or b is None:
            continue
        acc_a, acc_b = groups[a]["accuracy"], groups[b]["accuracy"]
        rows.append({"run": row["run"], "model": row["model"], "method": row["method"], "dataset": row["dataset"],
                     "field": field, "a": a, "b": b, "acc_a": acc_a, "acc_b": acc_b,
                     "n_a": groups[a]["n"], "n_b": groups[b]["n"],
                     "drop": drop.get("points", None if acc_a is None or acc_b is None else 100 * (acc_a - acc_b))})
    return rows


def _clip_worst(out: dict, runs: dict, k: int = 3) -> list[dict]:
    """CLIP's worst-k classes (per zero-shot run) beside each VLM method's accuracy on them
    (Tu et al.: VLMs on a CLIP tower can beat it on its hardest classes)."""
    rows = []
    clip_rows = [r for r in out["main"] if r["measure"] == "zeroshot"]
    vlm_rows = [r for r in out["main"] if r["measure"] in ("generate", "likelihood", "probe")]
    for c in clip_rows[:1]:
        worst = sorted((v, n) for n, v in c["per_class"].items() if v is not None)[:k]
        for v, name in worst:
            rows.append({"class": name, "clip": v, "clip_run": c["run"],
                         "vlm": [{"model": r["model"], "method": r["method"], "run": r["run"],
                                  "accuracy": r["per_class"].get(name)} for r in vlm_rows]})
    return rows
