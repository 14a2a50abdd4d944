"""Which parameters of a VLM train: LoRA on the language model only, optionally the projector in
full; the projector alone; or QLoRA (4-bit base, ``prepare_model_for_kbit_training``, LoRA).

LoRA targets are chosen explicitly: a regular expression anchored at the language model's module
path (``model.language_model`` in transformers' LLaVA and Qwen2-VL; the family adapter knows
each family's names), because bare names such as ``q_proj``
would also hit the vision tower's attention. The vision tower is always frozen.
LoRA: ``W x + (alpha / r) * B A x`` with ``A`` [r, d_in], ``B`` [d_out, r] (``B`` starts at 0).
"""
from __future__ import annotations

import re

import torch

from ..errors import VlmprobeError
from ..models.families import family_of


def language_model_path(model) -> str:
    """Dotted path of the language model (from the family adapter, ``vlmprobe.models.families``)."""
    return family_of(model).find_module(model, "language_model")


def projector_path(model) -> str:
    return family_of(model).find_module(model, "projector")


def lora_target_regex(model, target_modules: list[str]) -> str:
    """``^<lm path>\\..*\\.(q_proj|...)$`` (peft full-matches it against module names); checked to
    hit at least one Linear and nothing outside the language model. Where a matched name is a
    wrapper rather than a Linear (Inkling-2's ``q_proj`` holds its ``linear`` and a norm), the
    pattern lists the Linear layers themselves: the Linear hits and the wrappers' direct Linear children."""
    prefix = language_model_path(model)
    pattern = rf"{re.escape(prefix)}\..*\.({'|'.join(re.escape(t) for t in target_modules)})"
    modules = dict(model.named_modules())
    hits = [n for n in modules if re.fullmatch(pattern, n)]
    if hits and not all(isinstance(modules[n], torch.nn.Linear) for n in hits):
        linears = list(dict.fromkeys(n for h in hits for n in ([h] if isinstance(modules[h], torch.nn.Linear) else
                                     [f"{h}.{c}" for c, m in modules[h].named_children()
                                      if isinstance(m, torch.nn.Linear)])))
        pattern, hits = "|".join(re.escape(n) for n in linears), linears
    if not hits:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if n.startswith(prefix) and isinstance(m, torch.nn.Linear)})
        raise VlmprobeError(f"target_modules {target_modules} match nothing in {prefix}; its linear layers are "
                            f"named {leaves}")
    return pattern


def count_parameters(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "trainable_fraction": trainable / max(total, 1)}


def setup_vlm_training(model, adapter_args, gradient_checkpointing: bool = False):
    """Freeze everything, then make trainable what ``adapter_args.method`` asks for:

    - ``lora`` / ``qlora``: a peft ``PeftModel`` with LoRA (r, alpha, dropout) on the language
      model's ``target_modules``; with ``train_projector`` the projector (where the family names
      one) is trained in full and saved with the adapter (peft ``modules_to_save``). ``qlora`` expects a 4-bit base and runs
      ``prepare_model_for_kbit_training`` first (fp32 norms, input grads).
    - ``projector``: no adapter; the projector's own weights train.
    Returns the model to train (PeftModel or the original)."""
    for p in model.parameters():
        p.requires_grad_(False)
    method = adapter_args.method
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_quantized", False)
    if method == "qlora" and not quantized:
        raise VlmprobeError("method qlora needs the base loaded in 4-bit (load_in_4bit: true)")
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
        for p in model.parameters():  # prepare_* may unfreeze nothing, but make sure
            p.requires_grad_(False)
    elif gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if method == "projector":
        if quantized:
            raise VlmprobeError("method projector trains the projector in full; load the base without 4-bit")
        for p in model.get_submodule(projector_path(model)).parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    save = None
    if adapter_args.train_projector and family_of(model).find_module(model, "projector", required=False):
        proj = projector_path(model)  # (a family without a projector module trains LoRA alone)
        if any("4bit" in type(m).__name__ or "8bit" in type(m).__name__
               for m in model.get_submodule(proj).modules()):
            raise VlmprobeError("train_projector with qlora: the projector was quantized; it cannot train in full")
        save = [proj.rsplit(".", 1)[-1]]
    config = LoraConfig(r=adapter_args.lora_r, lora_alpha=adapter_args.lora_alpha,
                        lora_dropout=adapter_args.lora_dropout,
                        target_modules=lora_target_regex(model, list(adapter_args.target_modules)),
                        modules_to_save=save, bias="none")
    return get_peft_model(model, config)
