"""What is trained, per ``model_kind``: building the trainable model and datasets, the loss of a
batch, and the saved result (a model spec that ``vlmprobe eval`` loads).

- ``VLMTask``: next-token cross-entropy on answer tokens only,
  ``loss = mean_{t: label_t != -100} -log p(x_t | x_<t, image)``. Saved as a peft adapter
  (``hf:BASE+adapter:OUT/adapter``) or, for projector-only training, a full model (``hf:OUT/model``).
- ``ClipTask`` (the paper's fine-tuned CLIP row): logits ``s * normalize(f(x)) @ W^T`` with ``W``
  [K, D] the class-name text classifier (frozen text tower) and ``s`` the model's logit scale;
  cross-entropy over K classes trains the image tower. Saved in the model's own format, so
  ``vlmprobe eval --method zeroshot`` with the same templates scores exactly these logits.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import DataError, VlmprobeError
from .collate import IGNORE, ChatCollator, clip_collate


def base_reference(spec: str) -> str:
    """The path/id a model spec loads from (``hf:X`` -> X; ``toy:vlm`` -> its built directory)."""
    if "+adapter:" in spec:
        raise VlmprobeError(f"model {spec!r}: fine-tune a merged model (vlmprobe merge), not base+adapter")
    from ..models.registry import resolve_alias

    if resolve_alias(spec) != spec:
        return base_reference(resolve_alias(spec))
    if spec.startswith("hf:"):
        ref = spec[3:]
        return str(Path(ref).expanduser().resolve()) if Path(ref).expanduser().exists() else ref
    return str(Path(spec).expanduser().resolve())


def load_datasets(cfg):
    """(train, val or None) ImageDatasets from the data section."""
    from ..data import load_dataset

    d = cfg.data
    train = load_dataset(d.train, split=d.train_split, limit=d.train_limit, seed=cfg.train.seed, classes=d.classes)
    val = None
    if d.val:
        val = load_dataset(d.val, split=d.val_split, limit=d.val_limit, seed=cfg.train.seed, classes=d.classes)
        if val.classnames != train.classnames:
            raise DataError(f"val dataset {d.val!r} has other class names than train {d.train!r}")
    return train, val


class VLMTask:
    """Instruction fine-tuning of a VLM (module docstring)."""

    seq2seq = False  # an encoder-decoder language model (set from the loaded model)

    def __init__(self, cfg, device: str = "cpu"):
        from ..models.registry import load_model
        from .lora import setup_vlm_training

        self.cfg = cfg
        self.vlm = load_model(cfg.model.model, dtype=cfg.model.dtype, load_in_4bit=cfg.model.load_in_4bit,
                              device=device)
        if self.vlm.kind != "vlm":
            raise VlmprobeError(f"model_kind vlm: {cfg.model.model!r} is a {self.vlm.kind} model")
        self.processor = self.vlm.processor
        self.model = setup_vlm_training(self.vlm.model, cfg.adapter, cfg.train.gradient_checkpointing)
        from ..models.likelihood import is_encoder_decoder

        self.seq2seq = is_encoder_decoder(self.vlm.model)  # decoder logits align with labels (no shift)
        self.collate = ChatCollator(self.processor, cfg.data.max_length, self.vlm.family, self.seq2seq)

    def datasets(self, train, val):
        from .data import ConversationDataset, build_conversations, classification_conversations

        d = self.cfg.data
        tr = ConversationDataset(build_conversations(d, train, self.cfg.train.seed))
        va = ConversationDataset(classification_conversations(val, d.question, d.answer_template)) if val else None
        return tr, va

    def forward(self, model, batch):
        """-> (mean NLL over answer tokens, per-example {"nll": sum [B], "units": tokens [B],
        "correct": all answer tokens argmax [B]})."""
        from ..models.vlm import cast_inputs

        inputs = cast_inputs({k: v for k, v in batch.items() if k not in ("labels", "skipped", "empty")}, model)
        if self.seq2seq:  # encoder-decoder: the decoder input is the labels shifted right, logits [B, T, V]
            logits = model(**inputs, labels=batch["labels"]).logits
            labels = batch["labels"]
        else:
            logits = model(**inputs).logits[:, :-1]
            labels = batch["labels"][:, 1:]
        sel = labels != IGNORE
        picked = logits[sel].float()  # [T, V]: only supervised positions in fp32
        target = labels[sel]
        tok_nll = F.cross_entropy(picked, target, reduction="none")
        rows = sel.nonzero()[:, 0]
        B = labels.shape[0]
        nll = torch.zeros(B, device=logits.device).index_add(0, rows, tok_nll.detach())
        wrong = torch.zeros(B, device=logits.device).index_add(0, rows, (picked.argmax(-1) != target).float())
        units = sel.sum(1).float()
        loss = tok_nll.mean() if tok_nll.numel() else logits.sum() * 0.0
        return loss, {"nll": nll, "units": units, "correct": ((wrong == 0) & (units > 0)).float()}

    def save(self, accelerator, model, out: Path) -> str:
        """peft adapter -> ``out/adapter`` (spec ``hf:BASE+adapter:...``); projector-only ->
        full model in ``out/model`` (spec ``hf:...``). Processor saved beside either."""
        state = accelerator.get_state_dict(model)
        unwrapped = accelerator.unwrap_model(model)
        is_peft = hasattr(unwrapped, "peft_config")
        target = (out / ("adapter" if is_peft else "model")).resolve()
        if accelerator.is_main_process:
            unwrapped.save_pretrained(str(target), state_dict=state)
            self.processor.save_pretrained(str(target))
        if is_peft:
            return f"hf:{base_reference(self.cfg.model.model)}+adapter:{target}"
        return f"hf:{target}"


class ClipClassifier(torch.nn.Module):
    """``pixel_values`` [B, 3, H, W] -> logits [B, K] = s * normalize(image embed) @ W^T."""

    def __init__(self, clip, classifier: torch.Tensor):
        super().__init__()
        self.clip = clip.model
        self._embed = clip._image_embed  # the wrapper's own image-embedding path (same module)
        self.scale = clip.logit_scale
        self.register_buffer("classifier", classifier.to(clip.device, torch.float32))

    def forward(self, pixel_values):
        emb = F.normalize(self._embed(pixel_values).float(), dim=-1)
        return self.scale * emb @ self.classifier.T


def _vision_parameters(model) -> list:
    if hasattr(model, "visual"):  # open_clip
        return list(model.visual.parameters())
    if hasattr(model, "vision_model"):  # transformers CLIPModel
        return list(model.vision_model.parameters()) + list(model.visual_projection.parameters())
    raise VlmprobeError(f"{type(model).__name__}: cannot find the image tower to fine-tune")


class ClipTask:
    """Cross-entropy fine-tuning of a CLIP image tower over its text classifier (module docstring)."""

    def __init__(self, cfg, device: str = "cpu"):
        from ..models.registry import load_model

        self.cfg = cfg
        if cfg.adapter.method != "lora" or cfg.model.load_in_4bit:
            raise VlmprobeError("model_kind clip fine-tunes the image tower in full; adapter settings do not apply")
        self.wrapper = load_model(cfg.model.model, dtype=cfg.model.dtype, device=device)
        if self.wrapper.kind != "clip":
            raise VlmprobeError(f"model_kind clip: {cfg.model.model!r} is a {self.wrapper.kind} model")
        self.collate = clip_collate
        self.model = None  # built in datasets(), once the class names are known

    def datasets(self, train, val):
        from ..data import load_templates
        from .data import LabeledImageDataset

        templates = load_templates(self.cfg.data.clip_templates)
        classifier = self.wrapper.text_classifier(train.classnames, templates)
        for p in self.wrapper.model.parameters():
            p.requires_grad_(False)
        for p in _vision_parameters(self.wrapper.model):
            p.requires_grad_(True)
        self.model = ClipClassifier(self.wrapper, classifier)
        pre = self.wrapper.preprocess
        return LabeledImageDataset(train, pre), (LabeledImageDataset(val, pre) if val else None)

    def forward(self, model, batch):
        logits = model(batch["pixel_values"])
        nll = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
        correct = (logits.argmax(-1) == batch["labels"]).float()
        return nll.mean(), {"nll": nll.detach(), "units": torch.ones_like(nll), "correct": correct}

    def save(self, accelerator, model, out: Path) -> str:
        """open_clip -> ``out/model`` in the ``local-dir:`` format; transformers CLIP ->
        ``save_pretrained`` + processor. Returns the spec that loads it."""
        state = accelerator.get_state_dict(model)
        state = {k[len("clip."):]: v for k, v in state.items() if k.startswith("clip.")}
        target = (out / "model").resolve()
        if hasattr(self.wrapper, "processor"):  # HFClipModel
            if accelerator.is_main_process:
                accelerator.unwrap_model(model).clip.save_pretrained(str(target), state_dict=state)
                self.wrapper.processor.save_pretrained(str(target))
            return f"hfclip:{target}"
        if accelerator.is_main_process:
            save_open_clip(self.wrapper, state, target)
        return f"openclip:local-dir:{target}"


def save_open_clip(wrapper, state: dict, target: Path) -> None:
    """``open_clip_config.json`` (copied from a local-dir source, else built from the zoo config)
    + ``open_clip_model.safetensors``."""
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    source = Path(str(wrapper.fingerprint[0]))
    if (source / "open_clip_config.json").exists():
        for f in source.iterdir():
            if f.is_file() and f.name not in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
                shutil.copy2(f, target / f.name)
    else:
        arch = str(wrapper.fingerprint[0])
        save_config_for_hf(wrapper.model, target / "open_clip_config.json",
                           model_config=open_clip.get_model_config(arch))
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(target / "open_clip_model.safetensors"))
    (target / "finetuned_from.json").write_text(json.dumps({"spec": wrapper.spec}) + "\n")


def build_task(cfg, device: str = "cpu"):
    return {"vlm": VLMTask, "clip": ClipTask}[cfg.model.model_kind](cfg, device)
