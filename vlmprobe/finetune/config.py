"""Fine-tuning configuration: four option dataclasses (model, data, adapter, train; fields
declared once with ``vlmprobe.options.option``: default, help, choices, check) read from YAML,
then overridden on the command line by field name (``--config x.yaml --lr 1e-4 --lora_r 16``).
Values are converted by ``options.coerce`` and checked by ``options.validate``.

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

from .. import options
from ..errors import VlmprobeError

# Default LoRA targets (leaf names inside the language model): LLaMA-style attention + MLP, and
# T5's (q, k, v, o, wi_0, wi_1, wo: BLIP-2 / InstructBLIP with Flan-T5); the names that exist are hit.
LANGUAGE_MODEL_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                          "q", "k", "v", "o", "wi_0", "wi_1", "wo"]


O = options.option
_positive = dict(check=lambda n: n >= 1, requirement="must be >= 1")


@dataclass
class ModelArgs(options.Options):
    model: str = O("toy:vlm", "model spec (vlmprobe.models.registry): hf:ID, toy:vlm, openclip:..., a path")
    model_kind: str = O("vlm", "vlm: instruction fine-tuning of a VLM | clip: CE over the text classifier",
                        choices=("vlm", "clip"))
    dtype: str = O("float32", "weights as loaded: float32 | bfloat16 | float16 (mixed precision is separate)")
    load_in_4bit: bool = O(False, "bitsandbytes NF4 base weights (QLoRA); set by method: qlora")


@dataclass
class DataArgs(options.Options):
    train: str = O("toy:digits", "dataset spec (vlmprobe.data.load_dataset)")
    train_split: str | None = O("train", "split of the training set")
    val: str | None = O(None, "dataset spec of the validation set (None: no evaluation)")
    val_split: str | None = O("val", "split of the validation set")
    classes: str | None = O(None, "class-name source (imagenet | JSON list), as in `vlmprobe eval`")
    train_limit: int | None = O(None, "seeded random subset of the training set")
    val_limit: int | None = O(None, "seeded random subset of the validation set")
    question: str = O("What type of object is in the photo?", "the paper's fine-tuning question")
    answer_template: str = O("{}", "answer text; {} is the class name (paper: the bare label)")
    instruct_json: str | None = O(None, "general instruction data in LLaVA JSON format, mixed in")
    instruct_image_dir: str | None = O(None, "its images' root (default: the JSON file's directory)")
    instruct_fraction: float = O(0.0, "fraction of the mixed training set drawn from instruct_json",
                                 check=lambda x: 0.0 <= x < 1.0, requirement="must be in [0, 1)")
    max_length: int = O(2048, "tokens per example after image expansion (longer: text cut on the right)")
    clip_templates: str | None = O(None, "CLIP text-classifier templates (vlmprobe.data.load_templates)")
    num_workers: int = O(0, "DataLoader worker processes")


@dataclass
class AdapterArgs(options.Options):
    method: str = O("lora", "lora | qlora (4-bit base + LoRA) | projector (full FT of the projector only); "
                            "model_kind clip ignores it and fine-tunes the image tower (finetune/clip.py)",
                    choices=("lora", "qlora", "projector"))
    lora_r: int = O(8, "LoRA rank", **_positive)
    lora_alpha: int = O(16, "LoRA alpha (scale alpha / r)")
    lora_dropout: float = O(0.0, "LoRA dropout")
    target_modules: list = O(None, "LoRA target linear layers, inside the language model only",
                             factory=lambda: list(LANGUAGE_MODEL_LINEARS))
    train_projector: bool = O(False, "also train the multimodal projector in full (peft modules_to_save)")
    clip_train_text: bool = O(False, "clip: also fine-tune the text tower (default: frozen classifier)")


@dataclass
class TrainArgs(options.Options):
    output_dir: str = O("runs/finetune", "output directory (config, log.jsonl, checkpoints, adapter)")
    seed: int = O(0, "seed")
    lr: float = O(2e-4, "learning rate")
    weight_decay: float = O(0.0, "AdamW weight decay")
    epochs: float = O(1.0, "epochs (used when max_steps is None)")
    max_steps: int | None = O(None, "optimizer steps (overrides epochs)")
    per_device_batch_size: int = O(4, "examples per process per micro-batch", **_positive)
    grad_accum: int = O(1, "micro-batches per optimizer step; global batch = batch * accum * processes",
                        **_positive)
    mixed_precision: str = O("no", "no | bf16 | fp16 (accelerate autocast)", choices=("no", "bf16", "fp16"))
    gradient_checkpointing: bool = O(False, "recompute activations in the backward pass (saves memory)")
    warmup_ratio: float = O(0.03, "linear warmup over this fraction of the steps, then cosine to 0")
    max_grad_norm: float | None = O(1.0, "gradient clipping norm (None: no clipping)")
    log_every: int = O(1, "optimizer steps between loss records in log.jsonl", **_positive)
    eval_every: int | None = O(None, "steps between validation passes (None: only at the end)")
    save_every: int | None = O(50, "steps between resumable checkpoints (accelerate save_state)")
    save_total_limit: int = O(2, "checkpoints kept (oldest deleted)", **_positive)
    resume: str = O("auto", "auto: latest checkpoint in output_dir if any | never | PATH of a checkpoint")
    report_to: str = O("none", "accelerate trackers: none | tensorboard | wandb | all, or a comma list "
                               "(offline-safe; finetune/trackers.py)")
    tracker_project: str = O("vlmprobe-finetune", "tracker project / run group name")


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
        setattr(getattr(self, section), name, options.coerce(value, ftype, where))


def _field_types(cls) -> dict:
    return options.field_types(cls)


def _owner(name: str, source: str) -> str:
    for section, cls in SECTIONS.items():
        if name in _field_types(cls):
            return section
    raise VlmprobeError(f"{source}: unknown field {name!r} (see vlmprobe/finetune/config.py)")


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
    """Each section's field checks (``options.validate``), then the rules across fields."""
    for section in SECTIONS:
        options.validate(getattr(cfg, section))
    if cfg.data.instruct_fraction > 0 and not cfg.data.instruct_json:
        raise VlmprobeError("instruct_fraction > 0 needs instruct_json (a LLaVA-format JSON file)")
    if cfg.adapter.method == "qlora":
        cfg.model.load_in_4bit = True


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
                               help=f"{options.help_of(f)} (default: {getattr(cls(), f.name)!r})")
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
