"""One long table over any number of studies and run directories (``vlmprobe collect``).

A row is one number: ``study, model, group, architecture, pretrained, parameters, resolution,
spec, method, dataset, metric, value, n, interval, run`` (``run`` = the run directory). A study
directory (``study.json``) contributes every finished run with its model's zoo metadata
(``study/zoo.py``); a bare run directory (``results.json`` + ``config.json``) contributes its
own rows with the model spec as the model name. Metrics are the scalar numbers of
``results.json``, flattened with dots (``top1``, ``worst_k_accuracy.5.value``, ``calibration.ece``,
``cmm.mean``, OOD ``msp.auroc``...), leaving out per-class tables, counts and confusions;
``interval`` is ``[lo, hi]`` when the result gives one (``<metric>_ci`` or ``intervals.<metric>``).

``--reference CSV`` adds published results as rows with ``study = reference:<file name>``, from
- timm's results CSVs (``results-imagenet.csv`` ...: ``model, top1, top5, param_count, img_size``;
  top-1/top-5 in percent, stored as fractions) -> model ``timm:<model>``, metrics ``top1``/``top5``;
- open_clip's results table (``openclip_results.csv``/``openclip_classification_results.csv``:
  ``name, pretrained, <dataset columns...>`` or long ``dataset, acc1``) -> model
  ``openclip:<name>@<pretrained>``, metric ``top1`` per dataset (the dataset column's name);
- imagenet-testbed's ``robustness_top1s.csv`` (``model, val, <setting columns...>``, percent; read
  by ``metrics.testbed.read_table``) -> the testbed's model name, metric ``top1`` per setting column
  (``val``, ``val-on-imagenet-r-classes``, ``imagenet-r``, ``imagenet-c.fog.3_on-disk``...) and the
  row's ``model_type`` (its ``plotting/model_types.py`` type) kept on the row for the report.
So a zoo model ``ENTRY/ARCH@TAG`` of spec ``openclip:ARCH@TAG`` / ``timm:ARCH.TAG`` meets its
published number under the same spec (the ``spec`` column).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import VlmprobeError

COLUMNS = ("study", "model", "group", "architecture", "pretrained", "parameters", "resolution", "spec", "method",
           "dataset", "metric", "value", "n", "interval", "run")
SKIP = ("per_class_accuracy", "per_class_count", "cmm.per_class", "counts", "confusions", "nonfinite", "skipped", "bins", "bin_edges", "k_used", "worst_k.")


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if any(s in name for s in SKIP) or name.endswith((".k", "_k")):
            continue
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = v
    return out


def _interval(res: dict, metric: str):
    ci = res.get(f"{metric}_ci") or (res.get("intervals") or {}).get(metric)
    return json.dumps(ci) if ci is not None else ""


def run_rows(run_dir: Path, base: dict) -> list[dict]:
    """The rows of one finished run directory (``base``: study/model/group/... columns)."""
    res = _read(run_dir / "results.json")
    if not isinstance(res, dict):
        return []
    cfg = _read(run_dir / "config.json") or {}
    n = (res.get("counts") or {}).get("n", res.get("n"))
    method = base.get("method") or res.get("method") or (cfg.get("method") or {}).get("name") or ""
    dataset = base.get("dataset") or (cfg.get("data") or {}).get("spec") or ""
    return [{**base, "method": method, "dataset": dataset, "metric": m, "value": v, "n": n,
             "interval": _interval(res, m), "run": str(run_dir)} for m, v in _flatten(res).items()]


def study_rows(out: Path) -> list[dict]:
    plan = _read(out / "study.json")
    rows = []
    for run in plan["runs"]:
        stamp = _read(out / run["id"] / "study_run.json") or {}
        if stamp.get("status") != "done":
            continue
        model = plan["models"].get(run["model"], {})
        meta = model.get("meta") or {}
        from .collect import describe

        base = {"study": plan.get("name") or out.name, "model": run["model"], "group": meta.get("group", ""),
                "architecture": meta.get("architecture", ""), "pretrained": meta.get("pretrained", ""),
                "parameters": meta.get("parameters", ""), "resolution": meta.get("resolution", ""),
                "spec": model.get("spec") or "", "method": describe(run), "dataset": run.get("dataset") or ""}
        rows += run_rows(out / run["id"], base)
    return rows


def collect_rows(dirs: list) -> list[dict]:
    """Rows of every study directory / run directory in ``dirs`` (an error names a directory that is neither)."""
    rows = []
    for d in map(Path, dirs):
        if (d / "study.json").is_file():
            rows += study_rows(d)
        elif (d / "results.json").is_file():
            spec = ((_read(d / "config.json") or {}).get("model") or {}).get("spec", "")
            rows += run_rows(d, {"study": "", "model": spec, "spec": spec})
        else:
            raise VlmprobeError(f"{d}: neither a study directory (study.json) nor a run directory (results.json)")
    return rows


def reference_rows(path: str | Path) -> list[dict]:
    """Published results (timm's or open_clip's CSV; see the module docstring) as rows."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.DictReader(f))
    except OSError as e:
        raise VlmprobeError(f"--reference {path}: cannot read it ({e.strerror})") from None
    fields = set(table[0]) if table else set()
    study = f"reference:{path.name}"
    rows = []
    if {"model", "top1"} <= fields:  # timm
        for r in table:
            base = {"study": study, "model": f"timm:{r['model']}", "spec": f"timm:{r['model']}", "group": "reference",
                    "architecture": r["model"].split(".")[0], "pretrained": r["model"].partition(".")[2],
                    "parameters": _num(r.get("param_count"), 1e6), "resolution": r.get("img_size", ""),
                    "method": "published", "dataset": path.stem.removeprefix("results-"), "n": "", "interval": "",
                    "run": str(path)}
            rows += [{**base, "metric": m, "value": _num(r[m], 0.01)} for m in ("top1", "top5") if r.get(m)]
    elif {"name", "pretrained"} <= fields:  # open_clip
        for r in table:
            spec = f"openclip:{r['name']}@{r['pretrained']}"
            base = {"study": study, "model": spec, "spec": spec, "group": "reference", "architecture": r["name"],
                    "pretrained": r["pretrained"], "parameters": "", "resolution": "", "method": "published",
                    "n": "", "interval": "", "run": str(path)}
            if "dataset" in fields and "acc1" in fields:
                rows.append({**base, "dataset": r["dataset"], "metric": "top1", "value": _num(r["acc1"])})
                continue
            for col, v in r.items():
                if col in ("name", "pretrained") or v in ("", None) or _num(v) is None:
                    continue
                rows.append({**base, "dataset": col, "metric": "top1", "value": _num(v)})
    elif {"model", "val"} <= fields:  # imagenet-testbed's robustness_top1s.csv
        from ..metrics.testbed import read_table

        t = read_table(path)
        for model, vals in t.values.items():
            base = {"study": study, "model": model, "spec": "", "group": "reference", "architecture": model,
                    "pretrained": "", "parameters": "", "resolution": "", "method": "published", "n": "",
                    "interval": "", "run": str(path), "model_type": t.types.get(model)}
            rows += [{**base, "dataset": col, "metric": "top1", "value": v / 100.0} for col, v in vals.items()]
    else:
        raise VlmprobeError(f"--reference {path}: neither timm's results CSV (model, top1, ...), open_clip's "
                            "results table (name, pretrained, ...) nor imagenet-testbed's robustness_top1s.csv "
                            "(model, val, ...)")
    return rows


def _num(v, scale: float = 1.0):
    try:
        return float(v) * scale
    except (TypeError, ValueError):
        return None


def write_csv(rows: list[dict], out: str | Path) -> None:
    from ..cache import atomic_write_text
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out, buf.getvalue())


def scatter_panel(rows: list[dict], x: str, y: str, names: dict | None = None, metric: str = "top1") -> dict:
    """A ``metrics.model_scatter`` panel of the long table: ``metric`` on dataset ``y`` vs on
    dataset ``x``, one point per (study, model, method) that has both (probit axes); published
    rows (``--reference``) with both become the panel's ``reference`` points (their dataset names
    mapped through ``names``: study dataset -> table's dataset; default the same name)."""
    names = names or {}
    measured: dict = {}
    published: dict = {}
    for r in rows:
        if r["metric"] != metric or r["value"] in (None, ""):
            continue
        if str(r["study"]).startswith("reference:"):
            published.setdefault(r["model"], {})[r["dataset"]] = float(r["value"])
        else:
            measured.setdefault((r["study"], r["model"], r["method"]), {})[r["dataset"]] = float(r["value"])
    rx, ry = names.get(x, x), names.get(y, y)
    return {"title": f"{metric}: {y} vs {x}", "xlabel": f"{metric} on {x}", "ylabel": f"{metric} on {y}",
            "probit": True, "baseline": None,
            "points": [{"label": f"{m}: {meth}" + (f" ({st})" if st else ""), "x": v[x], "y": v[y],
                        "group": st or "run directories"}
                       for (st, m, meth), v in sorted(measured.items()) if x in v and y in v],
            "reference": [{"label": m, "x": v[rx], "y": v[ry]} for m, v in sorted(published.items())
                          if rx in v and ry in v]}
