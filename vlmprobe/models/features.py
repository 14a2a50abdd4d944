"""VLM hidden-state features: every requested layer from ONE model forward per batch.

Layer names
    ``lm.i``       language-model hidden state after decoder layer ``i`` (``lm.0`` = the input
                   embeddings with the projected image tokens spliced in; ``lm.L`` = the last
                   layer's output as transformers returns it, i.e. after the final norm);
    ``vision``     the vision-tower features the VLM consumes (hidden state
                   ``vision_feature_layer``, CLS dropped under the "default" strategy), i.e. the
                   projector's input;
    ``projector``  the projector's output (image tokens in the LM's embedding space).

Poolings of ``lm.i`` (``h`` [B, T, D], attention mask ``m`` [B, T] in {0, 1}):
    ``last``        ``h[b, t*]`` with ``t*`` the last attended position: the last prompt token
                    (the end of the generation prompt, where the answer would start);
    ``image-mean``  ``sum_t m[b,t] * img[b,t] * h[b,t] / sum_t m[b,t] * img[b,t]`` with ``img``
                    marking image-placeholder tokens;
    ``mean``        ``sum_t m[b,t] * h[b,t] / sum_t m[b,t]`` (padding never enters the mean).
``vision`` and ``projector`` are always the mean over the image's patch tokens (over all views
of an image for LLaVA-NeXT's any-resolution crops; over the image's grid for Qwen2-VL, whose
projector is the patch merger); they carry no pooling suffix. The family adapter
(``vlmprobe.models.families``) names the projector module and maps its rows to images.

Sequences are padded on the right and the model runs with its attention mask, so a real token
never attends to padding and keeps its position: an image's features do not depend on what
else is in the batch (``tests/test_probe.py`` checks this).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import VlmprobeError
from .base import PAPER_QUESTION

DEFAULT_PROMPT = PAPER_QUESTION
POOLINGS = ("last", "image-mean", "mean")
PATCH_LAYERS = ("vision", "projector")


def num_lm_layers(vlm) -> int:
    """Number of decoder layers L of the language model (hidden states are lm.0 .. lm.L)."""
    return vlm.num_layers()


def resolve_layers(layers, num_layers: int, patch_layers: tuple[str, ...] = PATCH_LAYERS) -> list[str]:
    """``"all"`` | None | int | str | sequence of ints/names -> canonical names.

    ``"all"`` (and None) = ``lm.0 .. lm.L`` + ``patch_layers`` (``vision`` + ``projector``;
    none for a model without a projector, where naming them is an error); ints index the LM
    hidden states (negative from the end, so -1 = ``lm.L``); names are ``lm.i``, ``vision``,
    ``projector``. Order is kept, duplicates dropped.
    """
    if layers is None or layers == "all":
        return [f"lm.{i}" for i in range(num_layers + 1)] + list(patch_layers)
    if isinstance(layers, (int, str)):
        layers = [layers]
    names: list[str] = []
    for layer in layers:
        if isinstance(layer, str) and layer in PATCH_LAYERS:
            if layer not in patch_layers:
                raise VlmprobeError(f"layer {layer!r}: this model has no projector module, so no vision / "
                                    "projector features (use lm.I layers)")
            name = layer
        else:
            raw = layer[3:] if isinstance(layer, str) and layer.startswith("lm.") else layer
            try:
                i = int(raw)
            except (TypeError, ValueError):
                raise VlmprobeError(f"unknown layer {layer!r}: use all, an integer, lm.I, vision or "
                                    "projector") from None
            if not -(num_layers + 1) <= i <= num_layers:
                raise VlmprobeError(f"layer {layer!r} out of range: the language model has hidden states "
                                    f"lm.0 .. lm.{num_layers}")
            name = f"lm.{i % (num_layers + 1)}"
        if name not in names:
            names.append(name)
    return names


def resolve_poolings(pooling) -> list[str]:
    """str (comma-separated allowed) or sequence -> validated list of pooling names."""
    if pooling is None:
        pooling = ["last"]
    if isinstance(pooling, str):
        pooling = [p.strip() for p in pooling.split(",") if p.strip()]
    bad = [p for p in pooling if p not in POOLINGS]
    if bad or not pooling:
        raise VlmprobeError(f"unknown pooling {bad or pooling!r}: choose from {', '.join(POOLINGS)}")
    return list(dict.fromkeys(pooling))


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor, image_mask: torch.Tensor,
                pooling: str) -> torch.Tensor:
    """One hidden state [B, T, D] -> [B, D] float32 (formulas in the module docstring)."""
    h = hidden.float()
    m = attention_mask.to(h.device).bool()
    if pooling == "last":
        pos = torch.arange(m.shape[1], device=h.device).expand_as(m)
        last = torch.where(m, pos, torch.full_like(pos, -1)).max(dim=1).values  # [B]
        return h[torch.arange(h.shape[0], device=h.device), last]
    if pooling == "image-mean":
        w = (m & image_mask.to(h.device).bool()).float()
    elif pooling == "mean":
        w = m.float()
    else:
        raise VlmprobeError(f"unknown pooling {pooling!r}: choose from {', '.join(POOLINGS)}")
    counts = w.sum(1, keepdim=True)
    if bool((counts == 0).any()):
        raise VlmprobeError(f"pooling {pooling!r}: a sequence has no tokens to average "
                            "(no image tokens found; is the image token id set in the config?)")
    return torch.einsum("bt,btd->bd", w, h) / counts


def _patch_mean(vlm, batch: dict, x: torch.Tensor, n_images: int) -> torch.Tensor:
    """Projector input/output rows -> per-image mean over its patch tokens [N, D] (the family
    adapter maps rows to images: views for LLaVA-NeXT, grids for Qwen2-VL)."""
    parts = vlm.family.split_patch_rows(vlm.model.config, batch, x, n_images)
    return torch.stack([p.float().mean(0) for p in parts])


@torch.no_grad()
def vlm_features(vlm, images: Sequence, layers="all", pooling="last", prompt: str | Sequence[str] = DEFAULT_PROMPT,
                 rendered: bool = False) -> dict[str, torch.Tensor]:
    """Features of ``images`` (N PIL images) from one forward of ``vlm`` (VisionLanguageModel).

    ``prompt``: the user question (rendered with ``vlm.render``), or one per image; with
    ``rendered=True`` already-rendered chat texts. ``pooling``: one name -> keys are layer names
    (``lm.3``); a list or comma-separated string -> keys ``lm.3:last`` etc. ``vision`` and
    ``projector`` keys never carry a pooling. Returns float32 CPU tensors [N, D].
    """
    images = list(images)
    n = len(images)
    poolings = resolve_poolings(pooling)
    suffix = not (pooling is None or (isinstance(pooling, str) and "," not in pooling))
    names = resolve_layers(layers, num_lm_layers(vlm), vlm.patch_layers())
    prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
    if len(prompts) != n:
        raise VlmprobeError(f"got {len(prompts)} prompts for {n} images")
    texts = prompts if rendered else [vlm.render(p, image=True) for p in prompts]
    batch = vlm.encode(images, texts, padding_side="right")

    captured: dict[str, torch.Tensor] = {}
    hook = None
    if any(name in PATCH_LAYERS for name in names):
        def grab(module, args, kwargs, output):  # the input may come by keyword (Gemma 4: inputs_embeds=...)
            captured["vision"] = (args[0] if args else next(v for v in kwargs.values() if torch.is_tensor(v))).detach()
            if isinstance(output, tuple):  # (features, extras): Granite-Docling's connector adds DeepStack features
                output = output[0]
            if isinstance(output, list):  # MiniCPM-V's merger: one tensor per image, rows of all images in order
                output = torch.cat(output)
            captured["projector"] = output.detach()

        projector = vlm.model.get_submodule(vlm.family.find_module(vlm.model, "projector"))
        hook = projector.register_forward_hook(grab, with_kwargs=True)
    try:
        extra = {}
        if getattr(vlm.model.config, "is_encoder_decoder", False):  # Flan-T5: features are the encoder's states
            start = vlm.model.config.get_text_config(decoder=True).decoder_start_token_id
            extra["decoder_input_ids"] = torch.full((n, 1), start, dtype=torch.long, device=batch["input_ids"].device)
        out = vlm.model(**batch, **extra, output_hidden_states=True, use_cache=False, return_dict=True)
    finally:
        if hook is not None:
            hook.remove()

    hidden = getattr(out, "hidden_states", None)
    if hidden is None and getattr(out, "language_model_outputs", None) is not None:  # BLIP-2: the LM's own output
        lm_out = out.language_model_outputs
        hidden = getattr(lm_out, "hidden_states", None) or lm_out.encoder_hidden_states
    mask = batch["attention_mask"]
    image_mask = batch["input_ids"] == vlm.image_token_id
    result: dict[str, torch.Tensor] = {}
    for name in names:
        if name in PATCH_LAYERS:
            if name not in captured:
                raise VlmprobeError(f"the projector did not run: no {name} features (were images passed?)")
            result[name] = _patch_mean(vlm, batch, captured[name], n).cpu()
            continue
        h = hidden[int(name[3:])]
        h = h.flatten(2)  # hyper-connection streams [B, L, streams, D] (GLM-5-Next) side by side, as Qwen4-Exp's
        for p in poolings:
            result[f"{name}:{p}" if suffix else name] = pool_hidden(h, mask, image_mask, p).cpu()
    return result
