"""Model-family adapters: everything vlmprobe must know about one ``AutoModelForImageTextToText``
family, in one small object per family, so the rest of the library is family-agnostic.

A ``Family`` answers:

- which ``config.model_type`` values it covers;
- the image-placeholder token id (``config.image_token_id`` or the older ``image_token_index``);
- module paths, found by role (``find_module``): the language model (LoRA targets) from
  transformers' own ``get_decoder()``, the vision tower (frozen, kept unquantized) from
  ``get_encoder(modality="image")``; the family's names (matched on the last component of module
  names, ``model.visual.merger`` -> ``merger``) only where that API is silent (it returns the
  model itself or nothing). The projector (``vision`` / ``projector`` features, projector
  training) has no transformers API: it is the outermost module named as in the family record
  or ``PROJECTOR_NAMES``, and it is optional (a model without one has no projector features);
- how the projector's input/output rows map to images (``split_patch_rows``): LLaVA-1.5 gives
  one [P, D] row block per image, LLaVA-NeXT one per AnyRes view, Qwen2-VL one flat [sum P, D]
  tensor cut by ``image_grid_thw``;
- the rotary positions of a prefix (``positions``): a candidate token at trie depth ``d`` sits at
  ``position of the prefix's last token + 1 + d`` on every axis. LLaVA: plain 1-D positions.
  Qwen2-VL's M-RoPE gives text after an image ``index + rope delta`` on all three axes (the
  image's 2-D grid spans fewer positions than it has tokens), read from ``get_rope_index``;
- whether the fast shared-prefix likelihood is allowed (``fast_likelihood``: None, or why not) and
  whether it may take the tree path (``tree_mask``: None, or why this family takes the state path);
- the prompt format of checkpoints released without a chat template (``prompt_format``, e.g.
  BLIP-2's ``Question: {question} Answer:``; the processor inserts the image tokens itself);
- whether the model runs without an image (``text_only``: None, or why not; BLIP-2's forward
  needs ``pixel_values``), which the ``pmi`` normalisation and text-only prompts need;
- input quirks of the naive likelihood's appended answer tokens: per-token inputs repeat the
  prefix's last position unless ``suffix_inputs`` names a value (PaliGemma's ``token_type_ids``
  = 1: the causal suffix); ``prompt_inputs`` describe the whole prompt and stay as they are
  (InstructBLIP's Q-Former text); ``encode`` replaces the processor call where its layout cannot carry an answer (PaliGemma);
  ``rendered`` rewrites a rendered prompt as the processor will tokenize it (Idefics2's space
  after an image), so the tokenizer's candidate ids align with the processor's.

Supporting a new family is one ``Family(...)`` passed to ``register_family`` (docs/extending.md,
"A model family"). Unknown model types get ``GENERIC``: parts by role, naive likelihood only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import VlmprobeError


def _views_llava(config, batch: dict, rows: int, n_images: int) -> list[int]:
    """Projector rows per image: one per image, or LLaVA-NeXT's AnyRes views (base + crops)."""
    if rows == n_images:
        return [1] * n_images
    if "image_sizes" in batch and getattr(config, "image_grid_pinpoints", None):
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        counts = [int(image_size_to_num_patches(image_size=s, grid_pinpoints=config.image_grid_pinpoints,
                                                patch_size=config.vision_config.image_size))
                  for s in batch["image_sizes"].tolist()]
        if sum(counts) == rows:
            return counts
    raise VlmprobeError(f"cannot map {rows} vision-tower rows to {n_images} images; request lm.* layers only")


def split_rows_by_view(config, batch: dict, x: torch.Tensor, n_images: int) -> list[torch.Tensor]:
    """LLaVA-style projector tensors [R, P, D] -> per image [views * P, D]."""
    counts = _views_llava(config, batch, x.shape[0], n_images)
    return [chunk.reshape(-1, chunk.shape[-1]) for chunk in torch.split(x, counts, dim=0)]


def split_rows_by_grid(config, batch: dict, x: torch.Tensor, n_images: int) -> list[torch.Tensor]:
    """Qwen2-VL tensors [sum_i t_i h_i w_i / r, D] (patches, r = 1, or merged tokens, r = merge^2)
    -> per image, using ``image_grid_thw`` [N, 3] (patch grid per image)."""
    grid = batch.get("image_grid_thw")
    if grid is None or len(grid) != n_images:
        raise VlmprobeError(f"cannot map vision rows to {n_images} images: no image_grid_thw in the batch")
    patches = grid.prod(-1).tolist()
    x = x.reshape(-1, x.shape[-1])  # Kimi's merger input is [tokens, merge^2, D]: one row per patch
    ratio = sum(patches) // max(x.shape[0], 1)
    if ratio < 1 or sum(patches) != ratio * x.shape[0]:
        raise VlmprobeError(f"{x.shape[0]} vision rows do not divide the image grids {grid.tolist()}")
    return list(torch.split(x, [p // ratio for p in patches], dim=0))


def split_rows_by_size(config, batch: dict, x: torch.Tensor, n_images: int) -> list[torch.Tensor]:
    """Pixtral-style tensors [sum_i h_i w_i / r, D] (patches, r = 1, or merged tokens,
    r = merge^2) -> per image, using ``image_sizes`` [N, 2] (pixels, h and w)."""
    sizes = batch.get("image_sizes")
    if sizes is None or len(sizes) != n_images:
        raise VlmprobeError(f"cannot map vision rows to {n_images} images: no image_sizes in the batch")
    patch = config.vision_config.patch_size
    patches = [int(h) // patch * (int(w) // patch) for h, w in sizes.tolist()]
    x = x.reshape(-1, x.shape[-1])
    ratio = sum(patches) // max(x.shape[0], 1)
    if ratio < 1 or sum(patches) != ratio * x.shape[0]:
        raise VlmprobeError(f"{x.shape[0]} vision rows do not divide the image sizes {sizes.tolist()}")
    return list(torch.split(x, [p // ratio for p in patches], dim=0))


def split_rows_by_tokens(config, batch: dict, x: torch.Tensor, n_images: int) -> list[torch.Tensor]:
    """Token-aligned tensors (InternVL's crops: [sum_i crops_i, T, D], one row per image token
    after flattening, or r rows per token before a pixel shuffle, as Aya Vision's adapter input)
    -> per image, counting each text row's image tokens in ``input_ids`` (one image per text row)."""
    ids = batch["input_ids"]
    if ids.shape[0] != n_images:
        raise VlmprobeError(f"cannot map vision rows to {n_images} images: {ids.shape[0]} text rows")
    counts = (ids == Family.image_token_id(config)).sum(1).tolist()
    x = x.reshape(-1, x.shape[-1])
    ratio = x.shape[0] // max(sum(counts), 1)  # r rows per image token (a pixel shuffle's input: r = 4)
    if ratio < 1 or sum(counts) * ratio != x.shape[0]:
        raise VlmprobeError(f"{x.shape[0]} vision rows for {sum(counts)} image tokens")
    return list(torch.split(x, [c * ratio for c in counts], dim=0))


# Processors that take images nested per text row ([[img], [img], ...]) and count them per row.
NESTED_IMAGE_PROCESSORS = {"Gemma3Processor", "Idefics3Processor", "SmolVLMProcessor", "MllamaProcessor",
                           "Gemma4Processor"}


def processor_images(processor, images: list) -> list:
    """``images`` (one per text row, None for a text-only row) in the form ``processor`` takes:
    flat (LLaVA, Qwen, ...; None rows dropped) or nested per row (``NESTED_IMAGE_PROCESSORS``)."""
    if type(processor).__name__ in NESTED_IMAGE_PROCESSORS:
        return [[] if im is None else [im] for im in images]
    return [im for im in images if im is not None]


def plain_positions(model, batch: dict) -> torch.Tensor:
    """1-D rotary positions of a right-padded prefix batch: [1, B, L] = 0, 1, 2, ..."""
    B, L = batch["input_ids"].shape
    return torch.arange(L, device=batch["input_ids"].device).expand(1, B, L)


def mrope_positions(model, batch: dict) -> torch.Tensor:
    """Qwen2-VL M-RoPE positions [3, B, L] (temporal, height, width) from the model's public
    ``get_rope_index``; text tokens carry the same value on all three axes, and a text token
    after an image sits at ``index + rope delta`` (the image's grid is shorter than its tokens)."""
    import inspect

    if batch.get("image_grid_thw") is None:  # text only: plain positions on all three axes
        return plain_positions(model, batch).expand(3, -1, -1)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    fn = getattr(inner, "get_rope_index", None) or inner.model.get_rope_index
    kwargs = dict(input_ids=batch["input_ids"], image_grid_thw=batch["image_grid_thw"],
                  attention_mask=batch["attention_mask"])
    if "mm_token_type_ids" in inspect.signature(fn).parameters:
        kwargs["mm_token_type_ids"] = batch.get("mm_token_type_ids")
    return fn(**kwargs)[0]


def append_text(text: str, more: str) -> str:
    """``text`` followed by ``more``, a space between them unless ``text`` is empty or ends in a
    space or newline (how an answer, or an answer prefix, follows a rendered prompt)."""
    return text + (more if not text or text.endswith((" ", "\n")) else " " + more)


def prefix_lm_encode(processor, text, images=None, **kwargs):
    """PaliGemma's input layout ``<image> * image_seq_length + <bos> + text`` (its processor's),
    without the ``"\n"`` that processor appends to every text: the rendered prompt already ends
    in it (``answer en {question}\n``), and an answer prefix or a scored candidate must follow
    it unchanged. ``token_type_ids`` are 0 (the bidirectional prefix); the likelihood engine
    marks appended answer tokens 1 (``Family.suffix_inputs``), as the processor's ``suffix`` does."""
    tok = processor.tokenizer
    n = processor.image_seq_length if images is not None else 0
    enc = tok([processor.image_token * n + tok.bos_token + t for t in text], add_special_tokens=False, **kwargs)
    enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
    if images is not None:
        enc["pixel_values"] = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return enc


# Module names transformers' get_encoder(modality="image") looks for (kept unquantized by name).
IMAGE_ENCODER_NAMES = ("vision_tower", "visual", "vision_model", "vision_encoder", "image_tower")
# Projector module names across transformers' image-text-to-text models (no API names the projector).
PROJECTOR_NAMES = ("multi_modal_projector", "mm_projector", "connector", "aligner", "merger", "projector",
                   "vision_projection", "language_projection", "image_to_text_projection", "resampler_model",
                   "embed_vision")


def _api_path(model: torch.nn.Module, role: str) -> str | None:
    """Path of transformers' own answer for ``role`` (``get_decoder`` / ``get_encoder("image")``)
    inside ``model``; None where the API is missing, fails or answers with the model itself."""
    if role not in ("language_model", "vision_tower"):
        return None
    try:
        mod = model.get_decoder() if role == "language_model" else model.get_encoder(modality="image")
    except Exception:  # noqa: BLE001 (a model without the API: the family record answers)
        return None
    base = getattr(model, "base_model", model)
    if not isinstance(mod, torch.nn.Module) or mod is model or mod is base:
        return None
    return next((n for n, m in model.named_modules() if m is mod and n), None)


def image_processor_sized_encode(processor, **kwargs):
    """The processor call with the image processor's own ``max_image_size`` (Aria's processor
    defaults to 980 px whatever its image processor was saved with, and maps the padded size
    to a token count through ``size_conversion``)."""
    if kwargs.get("images") is not None:
        kwargs.setdefault("max_image_size", processor.image_processor.max_image_size)
    return processor(**kwargs)


def space_after_image(processor, text: str) -> str:
    """A rendered prompt with the space Idefics2's processor writes between an image and the text
    right after it (its ``closing_fake_pattern``: ``<fake_token_around_image>`` followed by anything
    but whitespace or ``<`` gets a space), written before tokenization, so the tokenizer's ids of
    the prompt (and of prompt + candidate) are the processor's: ``User:<image>Q`` -> ``User:<image> Q``.
    The model sees the same tokens either way (the processor leaves an existing space alone)."""
    import re

    image = re.escape(getattr(processor, "image_token", "<image>"))
    return re.sub(rf"({image})(?=[^\s<])", r"\1 ", text)


def mm_token_types_encode(processor, **kwargs):
    """The processor call asking for ``mm_token_type_ids`` (Cosmos3-Edge's M-RoPE needs them and
    its processor returns them only on request)."""
    return processor(**kwargs, return_mm_token_type_ids=True)


@dataclass(frozen=True)
class Family:
    """One family's quirks (module docstring). Module names are matched on their last component."""

    name: str
    model_types: tuple[str, ...]
    language_model: tuple[str, ...] = ("language_model",)  # fallback names; the API (get_decoder) comes first
    vision_tower: tuple[str, ...] = ("vision_tower", "vision_model", "visual")  # fallback; get_encoder("image") first
    projector: tuple[str, ...] = ("multi_modal_projector", "mm_projector")  # tried before PROJECTOR_NAMES
    split_patch_rows: Callable = split_rows_by_view
    positions: Callable = plain_positions  # (model, prefix batch) -> rotary positions [axes, B, L]
    fast_likelihood: str | None = None  # None: supported; else the reason it is not
    tree_mask: str | None = None  # None: the tree path where the LM allows it; else why this family takes the state path
    prompt_format: str | None = None  # "{question}" template used when the processor has no chat template
    text_only: str | None = None  # None: the model runs without an image; else the reason it cannot
    suffix_inputs: tuple = ()  # (name, value) of per-token inputs for appended answer tokens (PaliGemma)
    prompt_inputs: tuple = ()  # inputs that encode the whole prompt, not its tokens (InstructBLIP's Q-Former text)
    encode: Callable | None = None  # (processor, text, images, **kw) -> inputs, replacing the processor's call
    rendered: Callable | None = None  # (processor, rendered prompt) -> the text as the processor tokenizes it (Idefics2)
    candidate_module: str | None = None  # role whose module runs the fast path's candidate chunks (None: the model)
    notes: str = ""

    # ------------------------------------------------------------------ config / tokens
    @staticmethod
    def image_token_id(config) -> int | None:
        """``config.image_token_id`` (transformers >= 4.47) or ``image_token_index``."""
        tid = getattr(config, "image_token_id", None)
        return getattr(config, "image_token_index", None) if tid is None else tid

    def uses_prompt_format(self, processor) -> bool:
        """True when prompts are rendered with ``prompt_format`` (the processor has no chat template)."""
        return self.prompt_format is not None and not getattr(processor, "chat_template", None)

    def render_messages(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """A conversation through ``prompt_format`` (checkpoints without a chat template): each
        user turn's text becomes ``prompt_format.format(question=text)``, each assistant turn's
        text follows as the answer, joined by ``append_text`` (BLIP-2: ``Question: q Answer: a``;
        PaliGemma: ``answer en q\na``). Image parts are dropped: the processor (or ``encode``)
        inserts the image tokens itself. ``add_generation_prompt`` changes nothing (the format
        ends where the answer starts), so the rendering is prefix-stable."""
        if self.prompt_format is None:
            raise VlmprobeError(f"the {self.name} family has no prompt format")
        text = ""
        for m in messages:
            content = m["content"]
            words = content if isinstance(content, str) else " ".join(
                c["text"] for c in content if c.get("type") == "text")
            text = append_text(text, self.prompt_format.format(question=words) if m["role"] == "user" else words)
        return text

    def keep_unquantized(self) -> list[str]:
        """Module-name patterns kept in full precision under 4/8-bit loading (as LLaVA's QLoRA):
        vision tower, projector, output head."""
        names = dict.fromkeys(self.vision_tower + IMAGE_ENCODER_NAMES + self.projector + PROJECTOR_NAMES)
        return [rf".*{n}" for n in names] + ["lm_head"]

    # ------------------------------------------------------------------- module paths
    def find_module(self, model: torch.nn.Module, role: str, required: bool = True) -> str | None:
        """Dotted path of the module playing ``role`` (language_model | vision_tower | projector)
        in ``model`` (a transformers model or a peft wrapper of one):

        - ``language_model``: transformers' ``get_decoder()``; ``vision_tower``:
          ``get_encoder(modality="image")``; where the API returns the model itself (or a module
          outside it), the outermost module whose last name component is one of the family's names;
        - ``projector``: no transformers API; the outermost module named as in the family record,
          else one of ``PROJECTOR_NAMES``. Optional: callers that can do without pass
          ``required=False`` (None when absent)."""
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        offset = next((n + "." for n, m in model.named_modules() if m is inner and n), "")
        path = _api_path(inner, role)
        if path:
            return offset + path
        names = getattr(self, role) + (PROJECTOR_NAMES if role == "projector" else ())
        hits = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in names]
        if hits:
            own = getattr(self, role)  # the family's own names before the generic ones, then the outermost
            return min(hits, key=lambda n: (n.rsplit(".", 1)[-1] not in own, n.count(".")))
        if required:
            how = {"language_model": "get_decoder() returns the model itself; ",
                   "vision_tower": "get_encoder(modality='image') returns the model itself; "}.get(role, "")
            raise VlmprobeError(f"{type(inner).__name__} ({self.name} family): no {role.replace('_', ' ')} "
                                f"module ({how}looked for {', '.join(names)})")
        return None

    def module_by_name(self, model: torch.nn.Module, role: str) -> str:
        """The outermost module named as the family record's ``role`` (no API lookup): the
        fast path's ``candidate_module`` (BLIP-2's causal LM with its head, not its decoder)."""
        hits = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in getattr(self, role)]
        if not hits:
            raise VlmprobeError(f"{type(model).__name__} ({self.name} family): no module named "
                                f"{', '.join(getattr(self, role))}")
        return min(hits, key=lambda n: n.count("."))

    def check_fast_likelihood(self, model_type: str | None = None) -> None:
        """One-line error naming ``--scoring naive`` when the fast path is not exact here."""
        if self.fast_likelihood is not None:
            raise VlmprobeError(f"fast likelihood scoring does not support model type {model_type or self.name!r} "
                                f"({self.name} family: {self.fast_likelihood}); use scoring='naive' (--scoring naive)")

    def check_text_only(self, model_type: str | None = None) -> None:
        """One-line error when a prompt without an image (text-only rows, ``pmi``) cannot run here."""
        if self.text_only is not None:
            raise VlmprobeError(f"model type {model_type or self.name!r} cannot score a prompt without an image "
                                f"({self.name} family: {self.text_only})")


LLAVA = Family("llava", ("llava",), notes="LLaVA-1.5 (one image = P patch tokens)")
LLAVA_NEXT = Family("llava-next", ("llava_next",), notes="LLaVA-NeXT (AnyRes views)")
QWEN2_VL = Family("qwen2-vl", ("qwen2_vl",), projector=("merger",), split_patch_rows=split_rows_by_grid,
                  positions=mrope_positions, notes="Qwen2-VL (dynamic resolution, M-RoPE)")
QWEN2_5_VL = Family("qwen2.5-vl", ("qwen2_5_vl",), projector=("merger",), split_patch_rows=split_rows_by_grid,
                    positions=mrope_positions, notes="Qwen2.5-VL (window-attention ViT, M-RoPE)")
LLAVA_NEXT_VIDEO = Family("llava-next-video", ("llava_next_video",), notes="LLaVA-NeXT-Video on single images")
LLAVA_ONEVISION = Family("llava-onevision", ("llava_onevision",), notes="LLaVA-OneVision (SigLIP, AnyRes max 9)")
MISTRAL3 = Family("mistral3", ("mistral3", "mistral_large4", "lighton_ocr"), split_patch_rows=split_rows_by_size,
                  notes="Mistral3 / Pixtral (any-size patches, 2x2 merger)")
QWEN3_VL = Family("qwen3-vl", ("qwen3_vl", "qwen3_vl_moe", "cosmos3_omni"), projector=("merger",), split_patch_rows=split_rows_by_grid,
                  positions=mrope_positions, notes="Qwen3-VL (DeepStack, interleaved M-RoPE)")
INTERNVL = Family("internvl", ("internvl", "qianfan_ocr"), split_patch_rows=split_rows_by_tokens, notes="InternVL (pixel shuffle 0.5, <img>...</img>)")
GEMMA3 = Family("gemma3", ("gemma3",),  # fast = the state path (sliding windows; image tokens attend
                # bidirectionally inside the prefix, which runs whole): exact, tests/test_likelihood_state.py
                notes="Gemma 3 (pooled SigLIP tokens, sliding-window LM)")
IDEFICS3 = Family("idefics3", ("idefics3", "smolvlm"), language_model=("text_model",), projector=("connector",),
                  notes="Idefics3 / SmolVLM (pixel-shuffle connector)")
IDEFICS2 = Family("idefics2", ("idefics2",), language_model=("text_model",), projector=("connector",),
                   rendered=space_after_image,
                   notes="Idefics2 (SigLIP, perceiver-resampler connector, Mistral LM; the space its processor "
                         "writes after an image is written at rendering)")
GRANITE_DOCLING = Family("granite-docling", ("granite_docling",), language_model=("text_model",), projector=("connector",),
                         split_patch_rows=split_rows_by_tokens,
                         notes="Granite-Docling (Idefics3 layout, pixel-shuffle connector with DeepStack outputs, Granite LM)")
BLIP2 = Family("blip-2", ("blip-2",), vision_tower=("vision_model", "qformer"), projector=("language_projection",),
               candidate_module="language_model",
               prompt_format="Question: {question} Answer:",
               text_only="its forward requires pixel_values (the Q-Former's query tokens lead every prompt)",
               notes="BLIP-2 with an OPT decoder (no chat template: 'Question: {q} Answer:'; "
                     "vision = Q-Former output, projector = language_projection)")
MLLAMA = Family("mllama", ("mllama",), projector=("multi_modal_projector",),
                fast_likelihood="images enter through cross-attention layers whose image states and cross-attention "
                                "mask the shared-prefix cache does not carry for candidate tokens",
                notes="Mllama / Llama 3.2 Vision (tiled ViT, cross-attention layers; one <|image|> token)")
INSTRUCTBLIP = Family("instructblip", ("instructblip",), vision_tower=("vision_model", "qformer"),
                      projector=("language_projection",), candidate_module="language_model",
                      prompt_format="{question}", text_only=BLIP2.text_only,
                      prompt_inputs=("qformer_input_ids", "qformer_attention_mask"),
                      notes="InstructBLIP (Vicuna decoder; the Q-Former also reads the prompt, never the "
                            "scored answer; no chat template: the question is the prompt)")
PALIGEMMA = Family("paligemma", ("paligemma",), fast_likelihood="prefix-LM attention: image and prompt attend "
                   "bidirectionally, which the causal candidate forwards against a cached prefix do not model",
                   prompt_format="answer en {question}\n", suffix_inputs=(("token_type_ids", 1),),
                   encode=prefix_lm_encode,
                   notes="PaliGemma (SigLIP + Gemma; prefix-LM; no chat template: 'answer en {q}\\n')")
VIPLLAVA = Family("vipllava", ("vipllava",), notes="VipLLaVA (projector over several tower layers)")
VIDEO_LLAVA = Family("video-llava", ("video_llava",), notes="Video-LLaVA on images (image tower + projector, Llama)")
GLM4V = Family("glm4v", ("glm4v", "glm46v", "glm4v_moe", "glmga", "glm_ocr"), projector=("merger",),
               split_patch_rows=split_rows_by_grid, positions=mrope_positions,
               notes="GLM-4.1V / 4.5V / 4.6V (ViT with merger, 3-D RoPE; MoE LM in glm4v_moe)")
GLM5_NEXT = Family("glm5-next", ("glm5_next",), projector=("merger",), split_patch_rows=split_rows_by_grid,
                   notes="GLM-5-Next (GLM-4.xV ViT with merger; LM of linear-attention and NoPE indexed-attention "
                         "layers, MoE, hyper-connections; fast = state path)")
MUSE = Family("muse", ("muse_glimmer", "muse_spark"), split_patch_rows=split_rows_by_grid,
              notes="Muse Glimmer / Spark (2-D RoPE ViT, MLP projector, sliding-window + global LM with soft-capped logits; "
                    "Spark: MoE LM and an audio tower)")
HY_V4_VL = Family("hy-v4-vl", ("hy_v4_vl",), split_patch_rows=split_rows_by_grid, positions=mrope_positions,
                  encode=mm_token_types_encode,
                  notes="HY-V4-VL (NaViT ViT with row newlines, latent-attention MoE LM with an indexer, "
                        "hyper-connections, M-RoPE; fast = state path)")
QWEN_VIT_1D = Family("qwen-vit-1d", ("llava_onevision1_5", "exaone4_5", "hyperclovax_vision_v2"), projector=("merger",),
                     split_patch_rows=split_rows_by_grid,
                     notes="Qwen-style ViT with merger in front of a 1-D RoPE LM (LLaVA-OneVision-1.5, EXAONE 4.5)")
AYA_VISION = Family("aya-vision", ("aya_vision", "cohere2_vision"), split_patch_rows=split_rows_by_tokens,
                    notes="Aya Vision / Command A Vision (SigLIP, pixel-shuffle adapter, Cohere2 LM)")
DEEPSEEK_VL = Family("deepseek-vl", ("deepseek_vl", "deepseek_vl_hybrid", "janus"), notes="DeepSeek-VL / Janus (SigLIP, MLP aligner, Llama)")
LLAMA4 = Family("llama4", ("llama4",), split_patch_rows=split_rows_by_tokens,
                notes="Llama 4 (tiled ViT with pixel shuffle, MoE LM with NoPE and chunked attention)")
GEMMA4 = Family("gemma4", ("gemma4",), split_patch_rows=split_rows_by_tokens,
                notes="Gemma 4 (pooled ViT soft tokens, sliding-window LM with per-layer inputs; fast = state path)")
KIMI = Family("kimi", ("kimi_k25",), split_patch_rows=split_rows_by_grid,
              notes="Kimi K2.5 (MoonViT with 2x2 merge, DeepSeek-V3 MoE LM with latent attention)")
VIDEO_LLAMA3 = Family("video-llama3", ("video_llama_3",), split_patch_rows=split_rows_by_tokens,
                      tree_mask="candidate trie chunks against the prefix cache disagree with the per-candidate "
                                "forward (2.7 nats on the tiny checkpoint); continuing each candidate from a copy "
                                "of the prefix cache is exact (3.8e-6)",
                      notes="VideoLLaMA 3 on images (2-D RoPE ViT, merging MLP projector, Qwen2; fast = state path)")
ARIA = Family("aria", ("aria",), encode=image_processor_sized_encode,
              notes="Aria (Idefics3-style tower, cross-attention projector with learned queries, MoE LM)")
OVIS = Family("ovis", ("ovis2_5",), split_patch_rows=split_rows_by_grid,
              notes="Ovis2.5 (NaViT ViT -> probabilities over a visual vocabulary -> embedding table, Qwen3)")
OVIS2 = Family("ovis2", ("ovis2",), split_patch_rows=split_rows_by_tokens,
               notes="Ovis2 (ViT -> probabilities over a visual vocabulary -> embedding table, indicator tokens, Qwen2)")
COSMOS3_EDGE = Family("cosmos3-edge", ("cosmos3_edge",), split_patch_rows=split_rows_by_grid,
                      positions=mrope_positions, encode=mm_token_types_encode,
                      notes="Cosmos3-Edge (NaViT tower, MLP projector, M-RoPE LM)")
PADDLEOCR_VL = Family("paddleocr-vl", ("paddleocr_vl",), split_patch_rows=split_rows_by_grid,
                      positions=mrope_positions, notes="PaddleOCR-VL (NaViT tower, projector, M-RoPE ERNIE-style LM)")
ERNIE4_5_VL = Family("ernie4.5-vl", ("ernie4_5_vl_moe",), split_patch_rows=split_rows_by_grid,
                      positions=mrope_positions, encode=mm_token_types_encode,
                      notes="ERNIE-4.5-VL (ViT, variable-resolution resampler, MoE LM with text / vision experts, "
                            "3-D M-RoPE)")
FAMILIES: list[Family] = [ERNIE4_5_VL, VIPLLAVA, VIDEO_LLAVA, VIDEO_LLAMA3, ARIA, OVIS, OVIS2, COSMOS3_EDGE, PADDLEOCR_VL, GLM4V, GLM5_NEXT, MUSE, HY_V4_VL, QWEN_VIT_1D, AYA_VISION, DEEPSEEK_VL, LLAMA4, GEMMA4, KIMI, LLAVA, LLAVA_NEXT, QWEN2_VL, QWEN2_5_VL, QWEN3_VL, LLAVA_NEXT_VIDEO, LLAVA_ONEVISION,
                          MISTRAL3, INTERNVL, GEMMA3, IDEFICS3, IDEFICS2, GRANITE_DOCLING, BLIP2, MLLAMA, INSTRUCTBLIP, PALIGEMMA]
GENERIC = Family("generic", (), fast_likelihood="only families checked against the naive path are supported",
                 notes="any other AutoModelForImageTextToText (parts by role; naive likelihood only)")


def register_family(family: Family) -> Family:
    """Add (or replace, by name) a family adapter; later registrations win for a model type."""
    FAMILIES[:] = [f for f in FAMILIES if f.name != family.name]
    FAMILIES.insert(0, family)
    return family


def family_of(model_or_config) -> Family:
    """The adapter for a transformers model (or peft wrapper) or its config."""
    return family_for_type(getattr(getattr(model_or_config, "config", model_or_config), "model_type", None))


def family_for_type(model_type: str | None) -> Family:
    """The adapter for a ``config.json`` model_type (before the model is loaded)."""
    return next((f for f in FAMILIES if model_type in f.model_types), GENERIC)
