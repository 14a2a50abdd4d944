"""Published robustness tables as rows of the same metrics a run gets (``vlmprobe compare
--reference FILE.csv``).

The layout is imagenet-testbed's ``robustness_top1s.csv`` (Taori et al. 2020,
modestyachts/imagenet-testbed): one row per model, column ``model`` and one column per evaluation
setting, top-1 accuracy in percent, blank = not evaluated. For every model the table gives:

- **corruptions** (Hendrycks & Dietterich 2019): columns ``imagenet-c.<corruption>.<severity>_on-disk``
  (the released JPEG files) and ``..._in-memory`` (corrupted in memory, no JPEG round trip; the
  table has no in-memory glass_blur) are two evaluations, kept apart and named: per variant the
  error E(s, c) = 1 - acc / 100, the clean error 1 - ``val`` / 100, then CE, mCE and relative mCE
  by ``metrics.corruption.corruption_errors`` (the function a run's ImageNet-C results use), normalised
  by the published AlexNet constants or by AlexNet evaluated the same way (``alexnet``: a row of the
  table, or a vlmprobe ImageNet-C run). mCE is only a number when all 15 x 5 cells are present;
  otherwise the partial mean CE over the cells present (``partial_mce``) stands beside it, named.
- **shift accuracies** of the natural shift sets (``SHIFT_SETS``: shift column -> ID column; for
  ImageNet-R/-A/ObjectNet the ID accuracy is ImageNet val on the same classes,
  ``val-on-<set>-classes``, as in the testbed's own figures) and **effective robustness** against
  the line fitted on the table's *baseline models* (``metrics.robustness.effective_robustness``:
  least squares of logit(shift) on logit(ID) -- the testbed's ``plotter.transform_acc`` with
  ``scipy.stats.linregress`` -- ER = shift acc - logit^-1 of the line at the model's ID accuracy).

Baseline models (``baseline_models``): the testbed's own rule for its line fits -- models of type
"Standard training" in its ``plotting/model_types.py`` ``model_types_map`` (shipped as
``data/files/imagenet_testbed_model_types.json``), leaving out names containing ``aws``,
``batch64`` or ``subsample`` (its ``use_for_line_fit`` / ``show_in_plot``; the paper figures'
extra accuracy cut-offs, e.g. ``val >= 55``, are per figure and not applied). A table with a
``model_type`` column takes the types from it; ``baseline_type`` picks another type, ``names`` an
explicit list. With no baseline model there is no line and every ER is ``None`` ("n/a: no
baseline"): a model is never judged against a line through itself and its peers by default.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path


from vlmprobe.errors import VlmprobeError
from vlmprobe.metrics.corruption import BENCHMARK, corruption_errors
from vlmprobe.metrics.robustness import NO_BASELINE

VARIANTS = ("on-disk", "in-memory")
LINE_FIT_EXCLUDE = ("aws", "batch64", "subsample")  # the testbed's use_for_line_fit / show_in_plot name rule
DEFAULT_TYPE = "STANDARD"
# shift column -> ImageNet (ID) column of imagenet-testbed's table
SHIFT_SETS = {
    "imagenetv2-matched-frequency-format-val": "val",
    "imagenetv2-threshold-0.7-format-val": "val",
    "imagenetv2-top-images-format-val": "val",
    "imagenet-sketch": "val",
    "imagenet-r": "val-on-imagenet-r-classes",
    "imagenet-a": "val-on-imagenet-a-classes",
    "objectnet-1.0-beta": "val-on-objectnet-classes",
}
TYPE_COLUMNS = ("model_type", "type")


@functools.lru_cache(maxsize=1)
def testbed_model_types() -> dict:
    """{"types": {KEY: label}, "models": {model: KEY}, "source": ...} (imagenet-testbed's
    ``plotting/model_types.py``, as data)."""
    path = Path(__file__).resolve().parent.parent / "data" / "files" / "imagenet_testbed_model_types.json"
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class ReferenceTable:
    path: Path
    columns: list[str]
    values: dict[str, dict[str, float]]  # model -> column -> top-1 in percent (blank cells absent)
    types: dict[str, str] = field(default_factory=dict)  # model -> type key (models without one absent)
    type_source: str | None = None

    @property
    def models(self) -> list[str]:
        return list(self.values)

    def fraction(self, model: str, column: str) -> float | None:
        v = self.values[model].get(column)
        return None if v is None else v / 100.0


def read_table(path) -> ReferenceTable:
    """A table in imagenet-testbed's layout (``model`` + ``val`` + setting columns, percent); a
    non-number in a filled cell is an error naming the file, line and column."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise VlmprobeError(f"--reference {path}: no such file") from None
    header = list(rows[0]) if rows else []
    if "model" not in header or "val" not in header:
        raise VlmprobeError(f"--reference {path}: expected imagenet-testbed's robustness_top1s.csv layout "
                            "(columns model, val, ...; top-1 in percent)")
    type_col = next((c for c in TYPE_COLUMNS if c in header), None)
    values, types = {}, {}
    for i, r in enumerate(rows, 2):
        name = (r.get("model") or "").strip()
        if not name:
            raise VlmprobeError(f"{path}:{i}: empty model name")
        if name in values:
            raise VlmprobeError(f"{path}:{i}: model {name!r} appears twice")
        vals = {}
        for col, v in r.items():
            if col in ("model", type_col) or col is None or v is None or not v.strip():
                continue
            try:
                vals[col] = float(v)
            except ValueError:
                raise VlmprobeError(f"{path}:{i}: column {col!r} must be a number (got {v!r})") from None
        values[name] = vals
        if type_col and (r.get(type_col) or "").strip():
            types[name] = r[type_col].strip()
    if type_col:
        source = f"the table's {type_col!r} column"
    else:
        known = testbed_model_types()["models"]
        types = {m: known[m] for m in values if m in known}
        source = "imagenet-testbed plotting/model_types.py" if types else None
    return ReferenceTable(path, header, values, types, source)


def _type_key(table: ReferenceTable, wanted: str) -> str:
    labels = testbed_model_types()["types"]
    for key, label in labels.items():
        if wanted.lower() in (key.lower(), label.lower()):
            if table.type_source and table.type_source.startswith("imagenet-testbed"):
                return key
            return next((t for t in set(table.types.values()) if t.lower() in (key.lower(), label.lower())), key)
    return wanted


def baseline_models(table: ReferenceTable, baseline_type: str | None = None,
                    names: list[str] | None = None) -> tuple[list[str], str | None]:
    """(baseline models, the rule in words) by the module docstring's rule; ([], None) when the
    table has no model types and no names are given (no baseline)."""
    if names:
        unknown = [n for n in names if n not in table.values]
        if unknown:
            raise VlmprobeError(f"--baseline {', '.join(unknown)}: no such model in {table.path}")
        return list(dict.fromkeys(names)), f"--baseline: {len(set(names))} models named"
    if not table.types:
        if baseline_type:
            raise VlmprobeError(f"--baseline-type {baseline_type}: {table.path} has no {'/'.join(TYPE_COLUMNS)} column "
                                "and none of its models is in imagenet-testbed's model_types.py")
        return [], None
    key = _type_key(table, baseline_type or DEFAULT_TYPE)
    if baseline_type and key not in set(table.types.values()):
        raise VlmprobeError(f"--baseline-type {baseline_type}: no model of that type in {table.path} (types: "
                            f"{', '.join(sorted(set(table.types.values())))})")
    picked = [m for m in table.values if table.types.get(m) == key
              and not any(k in m.lower() for k in LINE_FIT_EXCLUDE)]
    label = testbed_model_types()["types"].get(key, key)
    return picked, (f"type {label!r} ({table.type_source}), names without {'/'.join(LINE_FIT_EXCLUDE)}: "
                    f"{len(picked)} models")


def corruption_cells(table: ReferenceTable, model: str, variant: str) -> dict[str, dict[int, float]]:
    """{corruption: {severity: error}} of one model and variant (errors as fractions)."""
    out: dict[str, dict[int, float]] = {}
    suffix = f"_{variant}"
    for col, v in table.values[model].items():
        if col.startswith("imagenet-c.") and col.endswith(suffix):
            c, _, s = col[len("imagenet-c."):-len(suffix)].rpartition(".")
            if c and s.isdigit():
                out.setdefault(c, {})[int(s)] = 1.0 - v / 100.0
    return out


def alexnet_errors(table: ReferenceTable, alexnet: str | None) -> dict:
    """{variant: (errors, clean error, source)} of the AlexNet normalisation: None (the published
    constants), a model of the table (its own cells per variant) or a vlmprobe ImageNet-C run
    directory (its per-(corruption, severity) errors for both variants, its clean error when the
    run was given one with ``metrics --clean-run``)."""
    if alexnet is None:
        return {v: (None, None, None) for v in VARIANTS}
    if alexnet in table.values:
        val = table.fraction(alexnet, "val")
        return {v: (corruption_cells(table, alexnet, v), None if val is None else 1 - val,
                    f"row {alexnet!r} of {table.path.name} ({v})") for v in VARIANTS}
    if Path(alexnet).is_dir():
        from vlmprobe.metrics.corruption import errors_by_corruption
        from vlmprobe.metrics.rundata import load_run

        run = load_run(alexnet)
        corr, sev = run.field_values("corruption"), run.field_values("severity")
        if run.labels is None or any(c is None for c in corr) or any(s is None for s in sev):
            raise VlmprobeError(f"--alexnet {alexnet}: not an ImageNet-C run (records need labels and a corruption "
                                "and severity in their meta)")
        errs = errors_by_corruption(run.predictions == run.labels, corr, sev)
        res = json.loads((Path(alexnet) / "results.json").read_text()) if (Path(alexnet) / "results.json").is_file() else {}
        clean = (((res.get("shift") or {}).get("corruption_error")) or {}).get("clean_error")
        return {v: (errs, clean, f"run {alexnet}") for v in VARIANTS}
    raise VlmprobeError(f"--alexnet {alexnet}: neither a model of {table.path} nor a run directory")


def evaluate_table(table: ReferenceTable, alexnet: str | None = None, baseline_type: str | None = None,
                   baseline: list[str] | None = None, transform: str = "logit",
                   models: list[str] | None = None) -> dict:
    """Every model's metrics (module docstring) -> {rows: [...], sets: {shift column: {fit, ...}},
    baseline: {rule, models}, alexnet: {variant: source}}. ``models`` restricts the rows (the
    baseline line is fitted on the table's baseline models either way)."""
    from vlmprobe.metrics.robustness import effective_robustness, fittable

    if models:
        unknown = [m for m in models if m not in table.values]
        if unknown:
            raise VlmprobeError(f"--models {', '.join(unknown)}: no such model in {table.path}")
    base, rule = baseline_models(table, baseline_type, baseline)
    norm = alexnet_errors(table, alexnet)
    shown = models or table.models
    rows = []
    for m in shown:
        val = table.fraction(m, "val")
        clean = None if val is None else 1.0 - val
        corr = {}
        for v in VARIANTS:
            cells = corruption_cells(table, m, v)
            if not cells:
                continue
            a_err, a_clean, a_src = norm[v]
            res = corruption_errors(cells, clean, alexnet=a_err, alexnet_clean_error=a_clean, alexnet_source=a_src)
            res["cells"] = sum(len(s) for c, s in cells.items() if c in BENCHMARK)
            corr[v] = res
        rows.append({"model": m, "type": table.types.get(m), "baseline": m in base, "val": val,
                     "corruption": corr, "shift": {}})
    sets = {}
    for shift_col, id_col in SHIFT_SETS.items():
        if shift_col not in table.columns or id_col not in table.columns:
            continue
        have = lambda m: table.fraction(m, id_col) is not None and table.fraction(m, shift_col) is not None  # noqa: E731
        pts = [(table.fraction(m, id_col), table.fraction(m, shift_col)) for m in base if have(m)]
        fit, er = None, None
        targets = [r for r in rows if have(r["model"])]
        if pts and fittable([x for x, _ in pts], [y for _, y in pts]):
            er = effective_robustness([table.fraction(r["model"], id_col) for r in targets],
                                      [table.fraction(r["model"], shift_col) for r in targets],
                                      [x for x, _ in pts], [y for _, y in pts], transform)
            fit = {"transform": transform, "slope": er["slope"], "intercept": er["intercept"],
                   "n_baseline": er["n_fit"], "fit_over": "baseline"}
        for k, r in enumerate(targets):
            r["shift"][shift_col] = {
                "id_column": id_col, "id_accuracy": table.fraction(r["model"], id_col),
                "shift_accuracy": table.fraction(r["model"], shift_col),
                "predicted_shift_accuracy": None if er is None else float(er["predicted"][k]),
                "effective_robustness": None if er is None else float(er["er"][k])}
        sets[shift_col] = {"id_column": id_col, "fit": fit, "n_models": len(targets),
                           "no_fit": None if fit else (NO_BASELINE if not base else
                                                       f"n/a: fewer than 2 baseline models with both {id_col} and {shift_col}")}
    return {"rows": rows, "sets": sets, "baseline": {"rule": rule, "models": base},
            "alexnet": {v: norm[v][2] or "published constants (google-research/augmix ALEXNET_ERR; clean 43.5%)"
                        for v in VARIANTS}}


def partial_mce(res: dict) -> float | None:
    """The partial mean CE of a ``corruption_errors`` result (over the corruptions present; the key
    is ``mce_partial``, ``mce_present`` in older results)."""
    return res.get("mce_partial", res.get("mce_present"))


def partial_label(res: dict) -> str:
    """How much of the 15 x 5 benchmark a corruption result covers, in words."""
    per = res.get("per_corruption") or {}
    have = [c for c in BENCHMARK if c in per]
    missing = [c for c in BENCHMARK if c not in per]
    return f"{len(have)} of 15 corruptions" + (f", without {', '.join(missing)}" if missing else "")
