"""Probe a transformers image-text-to-text model type that has no tiny builder.

``probe_type(model_type)`` first looks the type up in ``NOT_CHAT`` (model types in the mapping
that are not chat VLMs: no question can be put to them through a chat template, so the
conformance checks do not apply; each with its reason, listed in their own section of the
matrix). Otherwise it instantiates ``AutoModelForImageTextToText`` from the type's default
config class with every layer count cut to 1, on the ``meta`` device (no memory, no weights,
nothing downloaded), and resolves its parts by role (``Family.find_module``: transformers'
``get_decoder`` / ``get_encoder("image")``, then the family's names). Result, one of:

- ``not-chat``: listed in ``NOT_CHAT`` (reason given);
- ``partial``: the model builds and its language model and vision tower resolve (checks
  ``build``, ``modules``); the conformance checks proper need a tiny processor and tokenizer,
  i.e. a registered tiny builder, and were not run;
- ``unsupported``: transformers cannot instantiate the type from its own default config, or
  the model has no separate language model or vision encoder module; the reason is the
  model's (the one-line transformers error, or which part the model lacks).
"""
from __future__ import annotations

LAYER_KEYS = ("num_hidden_layers", "num_layers", "depth", "encoder_layers", "decoder_layers", "text_layers",
              "vision_layers", "num_encoder_layers", "num_decoder_layers")


def _sub_configs(cfg) -> list:
    from transformers import PretrainedConfig

    out, stack, seen = [], [cfg], set()
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        out.append(c)
        stack += [v for v in vars(c).values() if isinstance(v, PretrainedConfig)]
    return out


def shrink_layers(cfg) -> None:
    """Set every integer layer count (``LAYER_KEYS``) of ``cfg`` and its sub-configs to 1, and
    cut per-layer lists to their first entry (``layer_types`` etc.)."""
    for c in _sub_configs(cfg):
        for key in LAYER_KEYS:
            if isinstance(getattr(c, key, None), int) and not isinstance(getattr(c, key), bool):
                setattr(c, key, 1)
        for key in ("layer_types", "fullatt_block_indexes", "deepstack_visual_indexes"):
            v = getattr(c, key, None)
            if isinstance(v, list) and v:
                setattr(c, key, v[:1] if key == "layer_types" else [0])


# Model types in transformers' image-text-to-text mapping that are not chat VLMs (transformers 5.25).
NOT_CHAT = {
    "pi0": "robot-action model (PaliGemma backbone + flow-matching action expert): it outputs actions, not text",
    "pi05": "robot-action model (pi0.5: PaliGemma backbone + action expert): it outputs actions, not text",
    "blip": "encoder-decoder captioner / VQA model (BERT-style text decoder), released without a chat template",
    "git": "GIT captioner: one decoder over image and caption tokens, released without a chat template",
    "pix2struct": "encoder-decoder screenshot / document parser, released without a chat template",
    "udop": "encoder-decoder document model (T5 with layout), task prompts, no chat template",
    "vision-encoder-decoder": "generic encoder-decoder wrapper (TrOCR, Donut, captioners): no chat template",
    "pp_formulanet": "encoder-decoder formula recognizer (image -> LaTeX), no chat template",
    "kosmos-2": "grounded captioner prompted with '<grounding>' text, released without a chat template",
    "kosmos-2.5": "OCR / markdown document model prompted with '<ocr>' / '<md>' tasks, no chat template",
    "florence2": "encoder-decoder vision model driven by task tokens ('<CAPTION>', '<OCR>'), no chat template",
    "got_ocr2": "OCR model: its processor writes the fixed OCR prompt itself; no free-form question",
    "pp_chart2table": "chart-to-table OCR model (GOT-OCR2 architecture) with a fixed task prompt",
    "evolla": "protein-sequence + text model (no image input)",
    "diffusion_gemma": "block-diffusion language model: no left-to-right next-token likelihood or greedy decoding",
    "shieldgemma2": "image-safety classifier: its processor renders fixed policy prompts and it answers Yes/No",
    "mistral4": "a text-only causal LM (Mistral4ForCausalLM) registered in the mapping: no vision module",
    "fuyu": "base model released without a chat template (raw text prompts); patches enter through a linear layer",
}


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"


def probe_type(model_type: str) -> dict:
    """``{"model_type", "family", "status", "checks", "reason"}`` (module docstring)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from ..models.families import family_for_type

    fam = family_for_type(model_type)
    res = {"model_type": model_type, "family": fam.name, "status": "unsupported", "checks": {}, "reason": ""}
    if model_type in NOT_CHAT:
        return {**res, "status": "not-chat", "reason": NOT_CHAT[model_type]}
    model = None
    for shrink in (True, False):  # one layer first (cheap); the untouched default config if cutting breaks it
        try:
            cfg = AutoConfig.for_model(model_type)
            if shrink:
                shrink_layers(cfg)
            with torch.device("meta"):
                model = AutoModelForImageTextToText.from_config(cfg)
            break
        except Exception as err:  # noqa: BLE001 (the reason is the result)
            error = err
    if model is None:
        res["reason"] = f"transformers cannot instantiate it from its own default config: {_one_line(error)}"
        return res
    res["checks"]["build"] = {"status": "pass", "reason": type(model).__name__}
    missing = [role.replace("_", " ") for role in ("language_model", "vision_tower")
               if fam.find_module(model, role, required=False) is None]
    if missing:
        res["checks"]["modules"] = {"status": "fail", "reason": "no " + " and no ".join(missing)}
        res["reason"] = (f"{type(model).__name__} has no separate {' and no '.join(missing)} module "
                         "(get_decoder / get_encoder('image') return the model itself)")
        return res
    res["checks"]["modules"] = {"status": "pass", "reason": ""}
    res["status"] = "partial"
    projector = fam.find_module(model, "projector", required=False)
    res["reason"] = (f"{type(model).__name__} builds and its parts resolve by role"
                     f"{'' if projector else ' (no projector module)'}; no tiny builder yet: generation, "
                     "likelihood, features, batch and LoRA checks not run")
    return res
