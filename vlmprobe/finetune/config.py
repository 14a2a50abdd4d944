"""Fine-tuning configuration: four dataclasses (model, data, adapter, train) read from YAML,
then overridden on the command line by field name (``--config x.yaml --lr 1e-4 --lora_r 16``).

A YAML file may group fields under ``model:``, ``data:``, ``adapter:``, ``train:`` or list them
flat; field names are unique across the sections, so a flag names exactly one field. CLI values
are parsed as YAML scalars/lists (``--target_modules "[q_proj, v_proj]"``, ``--val null``).
Unknown keys and ill-typed values raise ``VlmprobeError`` naming the file/flag and field.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import VlmprobeError

LANGUAGE_MODEL_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelArgs:
    model: str = "toy:vlm"  # model spec (vlmprobe.models.registry): hf:ID, toy:vlm, openclip:..., a path
    model_kind: str = "vlm"  # vlm: instruction fine-tuning of a VLM | clip: CE over the text classifier
    dtype: str = "float32"  # weights as loaded: float32 | bfloat16 | float16 (mixed precision is separate)
    load_in_4bit: bool = False  # bitsandbytes NF4 base weights (QLoRA); set by method: qlora


@dataclass
class DataArgs:
    train: str = "toy:digits"  # dataset spec (vlmprobe.data.load_dataset)
    train_split: str | None = "train"
    val: str | None = None  # dataset spec of the validation set (None: no evaluation)
    val_split: str | None = "val"
    classes: str | None = None  # class-name source (imagenet | JSON list), as in `vlmprobe eval`
    train_limit: int | None = None  # seeded random subset of the training set
    val_limit: int | None = None
    question: str = "What type of object is in the photo?"  # paper's fine-tuning question
    answer_template: str = "{}"  # answer text; {} is the class name (paper: the bare label)
    instruct_json: str | None = None  # general instruction data in LLaVA JSON format, mixed in
    instruct_image_dir: str | None = None  # its images' root (default: the JSON file's directory)
    instruct_fraction: float = 0.0  # fraction of the mixed training set drawn from instruct_json
    max_length: int = 2048  # tokens per example after image expansion (longer: text cut on the right)
    clip_templates: str | None = None  # CLIP text-classifier templates (vlmprobe.data.load_templates)
    num_workers: int = 0  # DataLoader worker processes


@dataclass
class AdapterArgs:
    method: str = "lora"  # lora | qlora (4-bit base + LoRA) | projector (full FT of the projector only)
    # (model_kind: clip ignores these and fine-tunes the image tower, see finetune/clip.py)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list = field(default_factory=lambda: list(LANGUAGE_MODEL_LINEARS))  # inside the LM only
    train_projector: bool = False  # also train the multimodal projector in full (peft modules_to_save)
    clip_train_text: bool = False  # clip: also fine-tune the text tower (default: frozen classifier)


@dataclass
class TrainArgs:
    output_dir: str = "runs/finetune"
    seed: int = 0
    lr: float = 2e-4
    weight_decay: float = 0.0
    epochs: float = 1.0  # used when max_steps is None
    max_steps: int | None = None  # optimizer steps (overrides epochs)
    per_device_batch_size: int = 4
    grad_accum: int = 1  # micro-batches per optimizer step; global batch = batch * accum * processes
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate autocast)
    gradient_checkpointing: bool = False
    warmup_ratio: float = 0.03  # linear warmup over this fraction of the steps, then cosine to 0
    max_grad_norm: float | None = 1.0
    log_every: int = 1  # optimizer steps between loss records in log.jsonl
    eval_every: int | None = None  # steps between validation passes (None: only at the end)
    save_every: int | None = 50  # steps between resumable checkpoints (accelerate save_state)
    save_total_limit: int = 2  # checkpoints kept (oldest deleted)
    resume: str = "auto"  # auto: latest checkpoint in output_dir if any | never | PATH of a checkpoint
    report_to: str = "none"  # accelerate trackers: none | tensorboard | wandb | all (offline-safe; trackers.py)
    tracker_project: str = "vlmprobe-finetune"  # tracker project / run group name


SECTIONS = {"model": ModelArgs, "data": DataArgs, "adapter": AdapterArgs, "train": TrainArgs}


@dataclass
class FinetuneConfig:
    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    adapter: AdapterArgs = field(default_factory=AdapterArgs)
    train: TrainArgs = field(default_factory=TrainArgs)

    def to_dict(self) -> dict:
        return asdict(self)

    def set(self, name: str, value, source: str) -> None:
        """Set field ``name`` (in whichever section holds it) after checking its type."""
        section = _owner(name, source)
        ftype = _field_types(SECTIONS[section])[name]
        where = source if source.startswith("--") else f"{source}: {name}"
        setattr(getattr(self, section), name, _coerce(value, ftype, where))


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _owner(name: str, source: str) -> str:
    for section, cls in SECTIONS.items():
        if name in _field_types(cls):
            return section
    raise VlmprobeError(f"{source}: unknown field {name!r} (see vlmprobe/finetune/config.py)")


def _coerce(value, ftype, where: str):
    """Check/convert ``value`` to the annotated type (int->float allowed, None for Optional)."""
    args = typing.get_args(ftype)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), ftype) if args else ftype
    if value is None:
        if optional:
            return None
        raise VlmprobeError(f"{where}: may not be null")
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif base is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return list(value)
    raise VlmprobeError(f"{where}: expected {getattr(base, '__name__', base)}, got {value!r}")


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> FinetuneConfig:
    """Defaults <- YAML file (sectioned or flat) <- ``overrides`` {field: value}."""
    import yaml

    cfg = FinetuneConfig()
    if path:
        p = Path(path)
        if not p.is_file():
            raise VlmprobeError(f"config file {p} does not exist")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise VlmprobeError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise VlmprobeError(f"{p}: expected a mapping of fields")
        for key, value in raw.items():
            if key in SECTIONS and isinstance(value, dict):
                for k, v in value.items():
                    if _owner(k, str(p)) != key:
                        raise VlmprobeError(f"{p}: field {k!r} belongs in section {_owner(k, str(p))!r}, not {key!r}")
                    cfg.set(k, v, str(p))
            else:
                cfg.set(key, value, str(p))
    for k, v in (overrides or {}).items():
        cfg.set(k, v, f"--{k}")
    _validate(cfg)
    return cfg


def _validate(cfg: FinetuneConfig) -> None:
    choices = {("model", "model_kind"): ("vlm", "clip"), ("adapter", "method"): ("lora", "qlora", "projector"),
               ("train", "mixed_precision"): ("no", "bf16", "fp16")}
    for (section, name), allowed in choices.items():
        if getattr(getattr(cfg, section), name) not in allowed:
            raise VlmprobeError(f"{name}: {getattr(getattr(cfg, section), name)!r} is not one of {allowed}")
    if not 0.0 <= cfg.data.instruct_fraction < 1.0:
        raise VlmprobeError(f"instruct_fraction must be in [0, 1), got {cfg.data.instruct_fraction}")
    if cfg.data.instruct_fraction > 0 and not cfg.data.instruct_json:
        raise VlmprobeError("instruct_fraction > 0 needs instruct_json (a LLaVA-format JSON file)")
    if cfg.adapter.method == "qlora":
        cfg.model.load_in_4bit = True
    for name in ("per_device_batch_size", "grad_accum", "lora_r", "log_every", "save_total_limit"):
        section = _owner(name, "config")
        if getattr(getattr(cfg, section), name) < 1:
            raise VlmprobeError(f"{name} must be >= 1")


def parse_args(argv: list[str] | None = None) -> FinetuneConfig:
    """``--config FILE`` plus ``--FIELD VALUE`` for any field (``-`` or ``_`` in the name)."""
    import yaml

    parser = argparse.ArgumentParser(description="vlmprobe fine-tuning", allow_abbrev=False)
    parser.add_argument("--config", help="YAML config (recipes/configs/*.yaml)")
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section)
        for f in fields(cls):
            flags = {f"--{f.name}", f"--{f.name.replace('_', '-')}"}
            group.add_argument(*sorted(flags), dest=f.name, default=dataclasses.MISSING, metavar="VALUE",
                               help=f"(default: {getattr(cls(), f.name)!r})")
    ns = parser.parse_args(argv)
    overrides = {}
    for k, v in vars(ns).items():
        if k == "config" or v is dataclasses.MISSING:
            continue
        ftype = _field_types(SECTIONS[_owner(k, "--" + k)])[k]
        if str in (typing.get_args(ftype) or (ftype,)):  # strings stay verbatim ("{}" is not a dict)
            overrides[k] = None if v in ("null", "None", "~") else v
            continue
        try:
            overrides[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            overrides[k] = v
    return load_config(ns.config, overrides)


def save_config(cfg: FinetuneConfig, path: str | Path) -> None:
    import yaml

    from ..cache import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
