"""A study file (YAML) -> a validated ``Study``: models, datasets, measurements.

```yaml
name: my-study
seed: 0
world: toy                    # optional: build the miniature world first; ${toy} = its directory
models:
  clip: {spec: "openclip:ViT-L-14-336@openai", device: cuda}
  llava: {spec: "hf:llava-hf/llava-1.5-7b-hf", dtype: bfloat16}
  llava-ft: {finetune: {from: llava, recipe: {train: imagenet.jsonl, lora_r: 128}}}
datasets:
  val: {data: imagenet_val.jsonl, classes: imagenet}
  train: {data: imagenet_train.jsonl, eval: false}     # used by probes/fine-tuning only
  counteranimal: {data: "counteranimal:CA", classes: imagenet, groups: group, group_drop: "common,counter", eval: false}
  ood: {data: ood_images/, classes: imagenet, unlabeled: true, eval: false}
measurements:
  - {measure: zeroshot, templates: [single, imagenet]}
  - {measure: generate, num_candidates: [all, 2, 5, 20, 100]}
  - {measure: probe, models: [llava], train: train, reference: clip}
  - {measure: zeroshot, datasets: [counteranimal]}       # group accuracy + drop (a dataset with groups)
  - {measure: ood, datasets: [val], ood: ood}             # MSP/MCM AUROC, FPR@95TPR
```
A dataset with ``eval: false`` is not in a measurement's default dataset list (name it in
``datasets:``); ``groups: FIELD`` (+ ``group_drop: A,B``) adds ``--groups``/``--group-drop`` to the
eval runs on it; ``unlabeled: true`` (needs ``classes``) adds ``--unlabeled`` (an OOD set).
Every key is checked before any run starts; an error names ``FILE:LINE: key.path``. ``${study}``
in a string is the study file's directory, ``${toy}`` the miniature world's directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..specs import find_world, world_names
from .measures import CLASSIFIER, CLIP, MEASURES, VLM
from .yamlpos import Located, StudyFileError, load_located

TOP_KEYS = ("name", "description", "seed", "world", "executor", "reference", "models", "datasets", "measurements")
LOAD_KEYS = {"device": str, "dtype": str, "device_map": str, "load_in_4bit": bool, "load_in_8bit": bool}
MODEL_KEYS = ("spec", "kind", *LOAD_KEYS, "gpus", "finetune")
DATASET_KEYS = {"data": str, "split": str, "limit": int, "classes": str, "image_root": str, "eval": bool,
                "groups": str, "group_drop": str, "unlabeled": bool}
KINDS = (CLIP, VLM, CLASSIFIER)


def load_choices() -> dict[str, tuple]:
    """The allowed values of each model-loading flag, as the commands declare them
    (``commands.common.LOAD_CHOICES``, also the ``choices`` of ``--dtype``): one source of truth."""
    from ..commands.common import LOAD_CHOICES

    return LOAD_CHOICES


@dataclass
class ModelEntry:
    name: str
    kind: str  # clip | vlm
    spec: str | None = None  # None for fine-tuned models (their spec comes from the fine-tuning run)
    load: dict = field(default_factory=dict)
    finetune: dict | None = None  # {"from": model name, "recipe": {finetune config field: value}}
    gpus: int = 1  # GPUs one run of this model needs (local/slurm executors)
    meta: dict = field(default_factory=dict)  # a zoo model's metadata (study/zoo.py: group, architecture...)

    def load_args(self) -> list[str]:
        out = []
        for k, v in self.load.items():
            flag = "--" + k.replace("_", "-")
            out += ([flag] if v else []) if isinstance(v, bool) else [flag, str(v)]
        return out


@dataclass
class DatasetEntry:
    name: str
    data: str
    split: str | None = None
    limit: int | None = None
    classes: str | None = None
    image_root: str | None = None
    eval: bool = True
    groups: str | None = None  # sample field of per-group accuracy (eval runs: --groups)
    group_drop: str | None = None  # "A,B": also the drop A -> B (--group-drop)
    unlabeled: bool = False  # images without classes, scored against ``classes`` (an OOD set)

    def args(self) -> list[str]:
        out = ["--data", self.data]
        for k in ("split", "limit", "classes", "image_root"):
            if getattr(self, k) is not None:
                out += ["--" + k.replace("_", "-"), str(getattr(self, k))]
        return out + (["--unlabeled"] if self.unlabeled else [])

    def group_args(self) -> list[str]:
        """``--groups FIELD [--group-drop A,B]`` for the eval runs on this dataset."""
        out = ["--groups", self.groups] if self.groups else []
        return out + (["--group-drop", self.group_drop] if self.group_drop else [])


@dataclass
class MeasurementEntry:
    measure: str
    models: list | None
    datasets: list | None
    options: dict  # option -> value or list of values (axes)
    line: int


@dataclass
class Study:
    file: str
    text: str  # the study file as written (embedded in the report)
    name: str
    seed: int
    world: str | None
    models: dict
    datasets: dict
    measurements: list
    description: str = ""
    executor: dict = field(default_factory=dict)  # {"slurm": {...}, "local": {...}} (study/executors.py)
    zoos: dict = field(default_factory=dict)  # zoo entry name -> its expanded model names
    zoo_skips: list = field(default_factory=list)  # "skip: zoo ENTRY: ..." lines (folders no model kind loads)
    reference: dict | None = None  # published results drawn in the figures (study/reference.py)


def model_kind(spec: str) -> str | None:
    """clip | vlm | classifier (a supervised timm/torchvision network) from a spec's prefix, or None."""
    if spec.startswith(("openclip:", "hfclip:")) or spec in ("toy:clip", "toy:clip-spurious"):
        return CLIP
    if spec.startswith("hf:") or spec.startswith("toy:vlm"):
        return VLM
    if spec.startswith(("timm:", "torchvision:")) or spec == "toy:cnn":
        return CLASSIFIER
    return None


def _substitute(value, subs: dict):
    if isinstance(value, str):
        for k, v in subs.items():
            value = value.replace("${" + k + "}", v)
        return value
    if isinstance(value, list):
        return [_substitute(v, subs) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, subs) for k, v in value.items()}
    return value


def _expect(loc: Located, path: tuple, value, types, what: str):
    if types is int and isinstance(value, bool) or not isinstance(value, types):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise loc.error(path, f"{what} must be {names}, got {value!r}")
    return value


def _check_keys(loc: Located, path: tuple, mapping, allowed, what: str) -> None:
    import difflib

    if not isinstance(mapping, dict):
        raise loc.error(path, f"{what} must be a mapping, got {type(mapping).__name__}")
    for k in mapping:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), [str(a) for a in allowed], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(map(str, allowed))})"
            raise loc.error(path + (k,), f"unknown key {k!r} in {what}{hint}")


def _closed_names(spec: str, *tables) -> tuple[str, tuple] | None:
    """(prefix, valid names) when a table entry matching ``spec`` declares a closed set of
    names (``SpecTable.register(..., names=...)``, e.g. the toy world's), else None."""
    entries = [e for e in (t.find(spec) for t in tables) if e is not None and e.names]
    if not entries:
        return None
    return entries[0].prefix, tuple(dict.fromkeys(n for e in entries for n in e.names))


def _check_spec(loc: Located, path: tuple, spec: str) -> str:
    """A registered prefix (``vlmprobe.specs.MODEL_SPECS``; one of its names when the prefix
    declares them) or an existing model directory."""
    from ..models import registry  # noqa: F401  (registers the built-in prefixes)
    from ..specs import MODEL_SPECS

    base = spec.split("+adapter:")[0]
    closed = _closed_names(base, MODEL_SPECS)
    if closed is not None:
        prefix, names = closed
        if base not in names:
            raise loc.error(path, f"unknown model spec {spec!r}: {prefix[:-1]} models are {', '.join(names)}")
    elif MODEL_SPECS.find(spec) is None and not os.path.exists(os.path.expanduser(spec)):
        raise loc.error(path, f"unknown model spec {spec!r}: use one of {', '.join(MODEL_SPECS.prefixes())}... "
                              "or an existing model directory")
    return spec


def _check_data(loc: Located, path: tuple, data: str, deferred: str | None) -> None:
    """Datasets must exist (paths) or be well-formed (a closed set of names such as toy:, hfds:);
    paths inside the not yet built world (``deferred``) are checked when it exists."""
    from ..specs import CAPTION_SPECS, DATASET_SPECS

    closed = _closed_names(data, DATASET_SPECS, CAPTION_SPECS)
    if closed is not None:
        prefix, names = closed
        if data not in names:
            raise loc.error(path, f"unknown {prefix[:-1]} dataset {data!r}: use one of {', '.join(names)}")
        return
    from ..data import loading  # noqa: F401  (registers the built-in prefixes)

    target = data[len("hfds:"):] if data.startswith("hfds:") else data
    if deferred and target.startswith(deferred):
        return
    if not data.startswith("hfds:") and DATASET_SPECS.find(data) is not None:
        return  # a registered format (wds:, a hub dataset...): checked when it loads
    if not os.path.exists(os.path.expanduser(target)):
        raise loc.error(path, f"dataset {data!r} does not exist")


def _check_factors(loc: Located, path: tuple, options: dict, deferred: str | None) -> None:
    """``source``: imagenet-x or an existing FILE.jsonl (inside the not yet built world: checked
    later); ``variant``: top/multi need imagenet-x, file needs a FILE."""
    source, variant = options.get("source"), options.get("variant")
    if source != "imagenet-x" and not (source and deferred and source.startswith(deferred)) \
            and not (source and os.path.isfile(os.path.expanduser(source))):
        raise loc.error(path + ("source",), f"source must be imagenet-x or an existing ImageNet-X style "
                                            f"FILE.jsonl, got {source!r}")
    variants = ("top", "multi") if source == "imagenet-x" else ("file",)
    if variant is not None and variant not in variants:
        raise loc.error(path + ("variant",), f"variant {variant!r} does not fit source {source!r} "
                                             f"(choose {' or '.join(variants)})")


def _finetune_fields() -> set:
    from ..finetune.config import SECTIONS

    return {f.name for cls in SECTIONS.values() for f in fields(cls)}


def load_study(path: str | os.PathLike | None = None, text: str | None = None, seed: int | None = None) -> Study:
    """Read and validate a study file (``None``: the built-in default study); ``seed``
    overrides the file's seed."""
    if path is None and text is None:
        path = Path(__file__).with_name("default.yaml")
        file = "<default study>"
    else:
        file = str(path) if path is not None else "<study>"
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise StudyFileError(f"{path}: cannot read the study file ({e.strerror})") from None
    raw, lines = load_located(text, file)
    loc = Located(file, lines)
    _check_keys(loc, (), raw, TOP_KEYS, "the study")
    seed = _expect(loc, ("seed",), raw.get("seed", 0), int, "seed") if seed is None else seed
    world = raw.get("world")
    if world is not None and (not isinstance(world, str) or find_world(world) is None):
        raise loc.error(("world",), f"world must be one of {world_names()} (registered by plugins) or absent, "
                                    f"got {world!r}")
    subs = {"study": str(Path(path).resolve().parent) if path is not None and file != "<default study>" else "."}
    toy_dir = None  # the world's directory (paths under it are checked once it is built)
    if world is not None:
        toy_dir = str(find_world(world).directory(seed))
        subs[world] = toy_dir
    raw = _substitute(raw, subs)
    for k in ("models", "datasets", "measurements"):
        if k not in raw:
            raise loc.error((), f"missing required key {k!r}")

    models: dict[str, ModelEntry] = {}
    _check_keys(loc, ("models",), raw["models"], list(raw["models"]) if isinstance(raw["models"], dict) else [],
                "models")
    zoos: dict[str, list] = {}
    zoo_skips: list[str] = []
    for name, m in raw["models"].items():
        p = ("models", name)
        if isinstance(m, dict) and "zoo" in m:
            zoos[name] = _expand_zoo(loc, p, name, m, models, zoo_skips)
            continue
        _check_keys(loc, p, m, MODEL_KEYS, f"model {name!r}")
        load = {k: _expect(loc, p + (k,), m[k], LOAD_KEYS[k], k) for k in LOAD_KEYS if k in m}
        for k, v in load.items():
            choices = load_choices().get(k)
            if choices and v not in choices:
                raise loc.error(p + (k,), f"{k} must be one of {', '.join(choices)}, got {v!r}")
        if ("spec" in m) == ("finetune" in m):
            raise loc.error(p, f"model {name!r} needs exactly one of 'spec' or 'finetune'")
        if "spec" in m:
            spec = _check_spec(loc, p + ("spec",), _expect(loc, p + ("spec",), m["spec"], str, "spec"))
            kind = m.get("kind") or model_kind(spec)
            if kind not in KINDS:
                raise loc.error(p + ("kind",), f"cannot tell whether {spec!r} is a clip, a vlm or a classifier: "
                                               f"add kind: {'|'.join(KINDS)}")
            models[name] = ModelEntry(name, kind, spec, load, gpus=_expect(loc, p + ("gpus",), m.get("gpus", 1),
                                                                           int, "gpus"))
        else:
            ft = m["finetune"]
            _check_keys(loc, p + ("finetune",), ft, ("from", "recipe"), "finetune")
            base = ft.get("from")
            if base not in models:
                raise loc.error(p + ("finetune", "from"), f"'from' must name a model defined above, got {base!r}")
            recipe = ft.get("recipe") or {}
            _check_keys(loc, p + ("finetune", "recipe"), recipe, sorted(_finetune_fields() - {"model", "output_dir"}),
                        "the fine-tuning recipe (recipes/finetune.py fields)")
            models[name] = ModelEntry(name, models[base].kind, None, {**models[base].load, **load},
                                      {"from": base, "recipe": recipe})

    datasets: dict[str, DatasetEntry] = {}
    _check_keys(loc, ("datasets",), raw["datasets"],
                list(raw["datasets"]) if isinstance(raw["datasets"], dict) else [], "datasets")
    for name, d in raw["datasets"].items():
        p = ("datasets", name)
        if isinstance(d, str):
            d = {"data": d}
        _check_keys(loc, p, d, DATASET_KEYS, f"dataset {name!r}")
        if "data" not in d:
            raise loc.error(p, f"dataset {name!r} needs 'data'")
        vals = {k: _expect(loc, p + (k,), d[k], DATASET_KEYS[k], k) for k in d}
        _check_data(loc, p + ("data",), vals["data"], toy_dir)
        if vals.get("unlabeled") and not vals.get("classes"):
            raise loc.error(p + ("unlabeled",), f"dataset {name!r} is unlabeled: add 'classes' (the class list its "
                                                "images are scored against)")
        if "group_drop" in vals:
            pair = [x.strip() for x in vals["group_drop"].split(",")]
            if "groups" not in vals or len(pair) != 2 or not all(pair):
                raise loc.error(p + ("group_drop",), f"group_drop must be two values A,B of the 'groups' field, "
                                                     f"got {vals['group_drop']!r}")
        datasets[name] = DatasetEntry(name, **vals)

    measurements = []
    if not isinstance(raw["measurements"], list):
        raise loc.error(("measurements",), "measurements must be a list of {measure: NAME, ...}")
    for i, e in enumerate(raw["measurements"]):
        p = ("measurements", i)
        if not isinstance(e, dict) or "measure" not in e:
            raise loc.error(p, "each measurement is a mapping with a 'measure' key")
        kind = e["measure"]
        if kind not in MEASURES:
            raise loc.error(p + ("measure",), f"unknown measure/method {kind!r} (known: {', '.join(MEASURES)})")
        spec = MEASURES[kind]
        _check_keys(loc, p, e, ["measure", "models", "datasets", *spec.options], f"measure {kind!r}")
        for key, pool in (("models", models), ("datasets", datasets)):
            names = e.get(key)
            if names is None:
                continue
            names = [names] if isinstance(names, str) else names
            for j, n in enumerate(_expect(loc, p + (key,), names, list, key)):
                if n not in pool and not (key == "models" and n in zoos):
                    raise loc.error(p + (key, j), f"no {key[:-1]} named {n!r} (defined: {', '.join(pool)})")
            if key == "models":  # a zoo entry's name stands for every model it expanded into
                names = list(dict.fromkeys(x for n in names for x in zoos.get(n, [n])))
            e = {**e, key: names}
        options = {}
        for key, opt in spec.options.items():
            if key not in e:
                continue
            values = e[key] if isinstance(e[key], list) and opt.axis else [e[key]]
            for j, v in enumerate(values):
                vp = p + (key,) + ((j,) if isinstance(e[key], list) else ())
                if v is not None:
                    _expect(loc, vp, v, opt.types, key)
                if opt.choices and v not in opt.choices:
                    raise loc.error(vp, f"{key} must be one of {', '.join(map(str, opt.choices))}, got {v!r}")
                if key in ("train", "val", "ood", "shift") and v is not None and v not in datasets:
                    raise loc.error(vp, f"no dataset named {v!r} (defined: {', '.join(datasets)})")
                if key == "reference" and v is not None and (v not in models or models[v].kind != CLIP):
                    raise loc.error(vp, f"reference must name a clip model, got {v!r}")
            options[key] = e[key]
        for key in ("train", "data", "corpus", "ood", "source", "shift"):
            if key in spec.options and spec.options[key].default is None and key not in e:
                raise loc.error(p, f"measure {kind!r} needs {key!r}")
        if kind == "factors":
            _check_factors(loc, p, options, toy_dir)
        measurements.append(MeasurementEntry(kind, e.get("models"), e.get("datasets"), options, loc.line(p)))
    executor = _check_executor(loc, ("executor",), raw.get("executor") or {})
    reference = check_reference(loc, raw.get("reference"), Path(path).resolve().parent if path is not None else None)
    return Study(file=file, text=text, name=str(raw.get("name", Path(file).stem)), seed=seed, world=world,
                 models=models, datasets=datasets, measurements=measurements,
                 description=str(raw.get("description", "")), executor=executor, zoos=zoos, reference=reference,
                 zoo_skips=zoo_skips)


def _check_executor(loc: Located, path: tuple, raw) -> dict:
    """The ``executor:`` mapping (``slurm``/``local`` sections of ``study/executors.py``), checked."""
    from .executors import LOCAL_KEYS, SLURM_KEYS

    _check_keys(loc, path, raw, ("slurm", "local"), "executor")
    for name, keys in (("slurm", SLURM_KEYS), ("local", LOCAL_KEYS)):
        section = raw.get(name)
        if section is None:
            continue
        _check_keys(loc, path + (name,), section, list(keys), f"executor.{name}")
        for k, v in section.items():
            _expect(loc, path + (name, k), v, keys[k], k)
    return raw


REFERENCE_KEYS = ("files", "datasets", "fit")


def check_reference(loc, raw, base: Path | None) -> dict | None:
    """The study file's ``reference`` value (``study/reference.py``) -> ``{"files": [absolute paths], "datasets": {..},
    "fit": bool}`` (None when absent); an error names the key and line."""
    if raw is None:
        return None
    if isinstance(raw, (str, list)):
        raw = {"files": raw}
    _check_keys(loc, ("reference",), raw, REFERENCE_KEYS, "reference")
    files = raw.get("files")
    files = [files] if isinstance(files, str) else files
    if not files or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise loc.error(("reference", "files"), f"reference needs one CSV path or a list of them, got {files!r}")
    paths = []
    for f in files:
        p = Path(f).expanduser()
        p = p if p.is_absolute() or base is None else base / p
        if not p.is_file():
            raise loc.error(("reference",), f"reference table {f!r} is not a file ({p})")
        paths.append(str(p.resolve()))
    datasets = raw.get("datasets") or {}
    _expect(loc, ("reference", "datasets"), datasets, dict, "reference.datasets")
    for k, v in datasets.items():
        _expect(loc, ("reference", "datasets", k), v, str, f"reference.datasets.{k}")
    fit = _expect(loc, ("reference", "fit"), raw.get("fit", False), bool, "reference.fit")
    return {"files": paths, "datasets": dict(datasets), "fit": fit}


def _expand_zoo(loc: Located, p: tuple, name: str, m: dict, models: dict, skips: list) -> list[str]:
    """A ``zoo:`` entry -> its models added to ``models`` (named ``ENTRY/ARCH@TAG``)."""
    from .zoo import ZOO_KEYS, expand_zoo

    _check_keys(loc, p, m, (*ZOO_KEYS, *LOAD_KEYS, "gpus"), f"zoo {name!r}")
    load = {k: _expect(loc, p + (k,), m[k], LOAD_KEYS[k], k) for k in LOAD_KEYS if k in m}
    for k in ("match", "pretrained", "exclude"):
        if k in m:
            _expect(loc, p + (k,), m[k], (str, list), k)
    if "limit" in m:
        _expect(loc, p + ("limit",), m["limit"], int, "limit")
    try:
        expanded = expand_zoo(name, {k: m[k] for k in ZOO_KEYS if k in m}, skips)
    except ValueError as e:
        raise loc.error(p, f"zoo {name!r}: {e}") from None
    if not expanded:
        raise loc.error(p, f"zoo {name!r} matches no model of the {m['zoo']} registry")
    for z in expanded:
        models[z.name] = ModelEntry(z.name, z.kind, z.spec, dict(load), gpus=m.get("gpus", 1), meta=z.meta)
    return [z.name for z in expanded]


__all__ = ["Study", "StudyFileError", "load_study", "model_kind"]
