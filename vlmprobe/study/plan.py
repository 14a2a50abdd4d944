"""Expand a ``Study`` into its runs: models x datasets x measurement options (axes), plus the
runs they depend on (a frequency analysis needs a generation run, a fine-tuned model needs its
fine-tuning run). Combinations that do not apply (a CLIP asked to generate) are listed as
skips with the reason.

Run directory: ``OUT/<model>/<dataset>/<measure>[-<option>=<value>...]`` with only the options
that differ from their defaults in the name (so adding an axis never renames existing runs);
fine-tuning runs live in ``OUT/<model>/finetune``. A dependency runs on the same model and
dataset unless it names another dataset (``ood``'s run on the OOD images).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from .measures import MEASURES
from .schema import Study, StudyFileError


@dataclass
class Run:
    id: str  # relative run directory
    measure: str  # a MEASURES name, or "finetune"
    model: str
    dataset: str | None
    params: dict  # every option of the measure, resolved
    deps: dict = field(default_factory=dict)  # role -> run id
    section: str = "main"

    def to_dict(self) -> dict:
        return {"id": self.id, "measure": self.measure, "model": self.model, "dataset": self.dataset,
                "params": self.params, "deps": self.deps, "section": self.section}


def _slug(v) -> str:
    return re.sub(r"[^A-Za-z0-9_.,+]+", "_", str(v).rsplit("/", 1)[-1])[:40]


def run_id(measure: str, model: str, dataset: str | None, params: dict) -> str:
    spec = MEASURES[measure]
    variant = "".join(f"-{k}={_slug(v)}" for k, v in params.items()
                      if v != spec.options[k].default and spec.options[k].in_id)
    return "/".join(x for x in (model, dataset) if x) + f"/{measure}{variant}"


@dataclass
class Plan:
    runs: dict  # id -> Run, in execution order (dependencies first)
    skips: list  # human-readable lines


def expand(study: Study) -> Plan:
    runs: dict[str, Run] = {}
    skips: list[str] = list(study.zoo_skips)

    def add_model(name: str) -> None:
        m = study.models[name]
        if m.finetune:
            add_model(m.finetune["from"])
            rid = f"{name}/finetune"
            if rid not in runs:
                runs[rid] = Run(rid, "finetune", name, None, {"from": m.finetune["from"], **m.finetune["recipe"]},
                                section="finetune")

    def add(measure: str, model: str, dataset: str | None, params: dict) -> str:
        spec = MEASURES[measure]
        full = {k: o.default for k, o in spec.options.items()}
        full.update(params)
        full = spec.resolve(full, study.models[model].kind)  # e.g. shape_bias's method: zeroshot for a clip
        rid = run_id(measure, model, dataset if spec.needs_dataset else None, full)
        if rid in runs:
            if runs[rid].params != full:
                raise StudyFileError(f"{study.file}: two {measure} runs of {model} on {dataset} differ only in "
                                     f"inputs ({', '.join(k for k in full if full[k] != runs[rid].params.get(k))}); "
                                     "give them different models or datasets")
            return rid
        add_model(model)
        deps = {}
        for role, (dep_measure, overrides, *other) in spec.deps(full).items():  # other: [dataset name[, model name]]
            dep_model = other[1] if len(other) > 1 and other[1] else model
            if dep_model not in study.models:
                raise StudyFileError(f"{study.file}: {measure} of {model} refers to model {dep_model!r}, which the "
                                     "study does not define")
            deps[role] = add(dep_measure, dep_model, (other[0] if other and other[0] else dataset), overrides)
        if study.models[model].finetune:
            deps["model"] = f"{model}/finetune"
        runs[rid] = Run(rid, measure, model, dataset if spec.needs_dataset else None, full, deps, spec.section)
        return rid

    for entry in study.measurements:
        spec = MEASURES[entry.measure]
        model_names = entry.models or list(study.models)
        dataset_names = entry.datasets or [d for d, e in study.datasets.items() if e.eval]
        axes = {k: (v if isinstance(v, list) and spec.options[k].axis else [v]) for k, v in entry.options.items()}
        combos = [dict(zip(axes, vals)) for vals in itertools.product(*axes.values())] or [{}]
        for model in model_names:
            kind = study.models[model].kind
            if kind not in spec.applies_to:
                if entry.models:  # asked for explicitly: say why nothing runs
                    skips.append(f"skip: {entry.measure} on {model}: it applies to {'/'.join(spec.applies_to)} "
                                 f"models and {model} is a {kind}")
                else:
                    skips.append(f"skip: {entry.measure} x {model} (a {kind}; {entry.measure} needs "
                                 f"{'/'.join(spec.applies_to)})")
                continue
            for dataset in (dataset_names if spec.needs_dataset else [None]):
                for params in combos:
                    if entry.measure == "probe" and params.get("train", entry.options.get("train")) == dataset:
                        skips.append(f"skip: probe of {model} tested on its own training set {dataset}")
                        continue
                    if entry.measure == "retrieval" and study.datasets[dataset].classes:
                        skips.append(f"skip: retrieval on {dataset}: image-caption pairs take no 'classes'")
                        continue
                    if entry.measure == "probe":  # one --classes for every split of a probe
                        other = [r for r in ("train", "val") if params.get(r, entry.options.get(r)) and
                                 study.datasets[params.get(r, entry.options.get(r))].classes
                                 != study.datasets[dataset].classes]
                        if other:
                            skips.append(f"skip: probe of {model} on {dataset}: its classes differ from those of "
                                         f"its {' and '.join(other)} dataset")
                            continue
                    add(entry.measure, model, dataset, params)
    return Plan(runs, list(dict.fromkeys(skips)))
