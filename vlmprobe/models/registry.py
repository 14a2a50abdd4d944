"""Model spec strings -> loaded models.

=============================  ==========================================================
``openclip:ARCH@PRETRAINED``   open_clip zoo, e.g. ``openclip:ViT-B-32@openai``
``openclip:ARCH``              open_clip architecture with random weights
``openclip:local-dir:PATH``    an open_clip model saved on disk (``open_clip_config.json``)
``openclip:hf-hub:ID``         open_clip weights on the Hugging Face hub
``hfclip:ID_OR_PATH``          transformers ``CLIPModel`` + processor
``hf:ID_OR_PATH``              any ``AutoModelForImageTextToText`` + processor + chat template
``hf:BASE+adapter:PATH``       the same with a peft (LoRA) adapter applied
``timm:NAME[@random]``         timm classifier (pretrained from timm's sources, or random weights)
``timm:local-dir:PATH``        timm classifier saved in timm's hub layout (config.json + weights)
``torchvision:NAME[@WEIGHTS]`` torchvision classifier: WEIGHTS an enum name (IMAGENET1K_V2; default DEFAULT), random, or a .pth file
``openai:MODEL[@URL]``          a chat-completions API model (``models.api``; ``--api-base``)
``sglang:MODEL@URL``            an SGLang server's native /generate (``models.api``)
``toy:clip`` / ``toy:vlm``     the embedded miniature world (built on first use);
                               ``toy:vlm+adapter:PATH`` with a fine-tuned adapter
``PATH``                       a local directory; its kind is detected from its files
=============================  ==========================================================

The prefixes live in ``vlmprobe.specs.MODEL_SPECS`` (``toy:`` is registered by the toy plugin)
=============================  ==========================================================
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..cache import path_fingerprint
from ..errors import ModelLoadError
from ..specs import MODEL_SPECS
from .base import LoadOptions, VisionModel



def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or os.path.exists(ref)


def _check_local(ref: str, spec: str, must_have: str | None = None) -> str:
    path = Path(ref).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model spec {spec!r}: path {ref} does not exist")
    if must_have and not (path / must_have).exists():
        raise ModelLoadError(f"model spec {spec!r}: {path / must_have} is missing")
    return str(path)


def detect_local_kind(path: str) -> str:
    """``openclip`` (open_clip_config.json), ``hfclip`` (config.json of model_type clip) or ``hf``."""
    p = Path(path)
    if (p / "open_clip_config.json").exists():
        return "openclip"
    cfg = p / "config.json"
    if cfg.exists():
        try:
            model_type = json.loads(cfg.read_text()).get("model_type")
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{cfg}: not valid JSON ({e})") from None
        return "hfclip" if model_type == "clip" else "hf"
    raise ModelLoadError(f"{path}: no open_clip_config.json or config.json; not a model directory")


def _fingerprint(ref: str) -> list:
    return [ref, path_fingerprint(ref)] if os.path.exists(ref) else [ref]


# callables run on every model ``load_model`` returns; empty in vlmprobe itself: only a test entry
# point fills it (``python -m vlmprobe.testing.fault``: one rank's model fails on purpose)
LOAD_HOOKS: list = []


def load_model(spec: str, options: LoadOptions | None = None, **option_overrides) -> VisionModel:
    """Load a model from its spec string (table above). ``option_overrides`` set LoadOptions
    fields (``device``, ``dtype``, ``load_in_4bit``...). Raises ModelLoadError with one line."""
    options = options or LoadOptions()
    for k, v in option_overrides.items():
        if not hasattr(options, k):
            raise ModelLoadError(f"unknown load option {k!r}")
        setattr(options, k, v)
    import torch

    try:
        model = _load(spec, options)
    except (ModelLoadError, torch.OutOfMemoryError):  # out of memory is not a bad model: keep its type
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # missing files, offline hub, bad config
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelLoadError(f"could not load model {spec!r}: {type(e).__name__}: {first} "
                             "(--debug shows the traceback)") from e
    for hook in LOAD_HOOKS:  # empty unless a test entry point added one (vlmprobe.testing.fault)
        hook(model)
    return model


def resolve_alias(spec: str) -> str:
    """Follow alias prefixes (``toy:vlm`` -> ``hf:<dir>``) to the spec a model is loaded from;
    a ``+adapter:PATH`` suffix is kept."""
    entry = MODEL_SPECS.find(spec)
    if entry is None or not entry.alias:
        return spec
    base, _, adapter = spec.partition("+adapter:")
    return resolve_alias(entry.resolve(base) + (f"+adapter:{adapter}" if adapter else ""))


def _load(spec: str, options: LoadOptions) -> VisionModel:
    entry = MODEL_SPECS.find(spec)
    if entry is None:
        if not _looks_local(spec):
            raise ModelLoadError(f"unknown model spec {spec!r}: use one of {', '.join(MODEL_SPECS.prefixes())} "
                                 "or a local directory")
        path = _check_local(spec, spec)
        return _load(f"{detect_local_kind(path)}:{path}", options)._respec(spec)
    if entry.alias:
        return _load(resolve_alias(spec), options)._respec(spec)
    if not spec[len(entry.prefix):]:
        raise ModelLoadError(f"model spec {spec!r} names no model")
    return entry.resolve(spec, options)


def _load_openclip(spec: str, options: LoadOptions) -> VisionModel:
    from .clip import OpenClipModel

    ref = spec.split(":", 1)[1]
    if ref.startswith("local-dir:") or _looks_local(ref):
        path = _check_local(ref.removeprefix("local-dir:"), spec, "open_clip_config.json")
        if not any(any(Path(path).glob(pattern)) for pattern in ("*.safetensors", "*.bin", "*.pth")):
            # open_clip would only log a warning and return random weights
            raise ModelLoadError(f"model spec {spec!r}: no weights (*.safetensors, *.bin, *.pth) in {path}")
        return OpenClipModel(spec, options, f"local-dir:{path}", None, _fingerprint(path))
    arch, _, pretrained = ref.partition("@")
    if not ref.startswith("hf-hub:"):
        import open_clip

        if arch not in open_clip.list_models():
            raise ModelLoadError(f"model spec {spec!r}: open_clip has no architecture {arch!r} "
                                 "(see open_clip.list_models())")
    return OpenClipModel(spec, options, arch, pretrained or None, [arch, pretrained])


def _load_hfclip(spec: str, options: LoadOptions) -> VisionModel:
    from .clip import HFClipModel

    ref = spec.split(":", 1)[1]
    if _looks_local(ref):
        ref = _check_local(ref, spec, "config.json")
        if detect_local_kind(ref) != "hfclip":  # transformers would load it with random CLIP weights
            raise ModelLoadError(f"model spec {spec!r}: {Path(ref) / 'config.json'} is not a CLIP model "
                                 "(model_type must be 'clip')")
    return HFClipModel(spec, options, ref, _fingerprint(ref))


def _load_hf(spec: str, options: LoadOptions) -> VisionModel:
    from .vlm import VisionLanguageModel

    base, _, adapter = spec.split(":", 1)[1].partition("+adapter:")
    if _looks_local(base) or _looks_like_path(base):
        base = _check_local(base, spec, "config.json")
    if adapter:
        adapter = _check_local(adapter, spec, "adapter_config.json")
    return VisionLanguageModel(spec, options, base, _fingerprint(base) + (_fingerprint(adapter) if adapter else []),
                               adapter=adapter or None)


def _looks_like_path(ref: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything with more parts, or a leading dot, is a path."""
    return ref.startswith(".") or ref.count("/") > 1


def _load_classifier(spec: str, options: LoadOptions) -> VisionModel:
    """``timm:`` / ``torchvision:`` supervised classifiers (``models.classifier``)."""
    from .classifier import load_timm, load_torchvision

    prefix, ref = spec.split(":", 1)
    local = ref.removeprefix("local-dir:").partition("@")[0] if prefix == "timm" else ref.partition("@")[2]
    loader = load_timm if prefix == "timm" else load_torchvision
    return loader(spec, ref, options, _fingerprint(local) if local and os.path.exists(local) else [ref])


MODEL_SPECS.register("openclip:", _load_openclip, "open_clip zoo ARCH@PRETRAINED, local-dir:PATH or hf-hub:ID")
MODEL_SPECS.register("hfclip:", _load_hfclip, "transformers CLIPModel + processor (hub id or path)")
MODEL_SPECS.register("hf:", _load_hf, "AutoModelForImageTextToText + processor + chat template; +adapter:PATH")
MODEL_SPECS.register("timm:", _load_classifier, "supervised timm classifier: NAME[@random] or local-dir:PATH")
MODEL_SPECS.register("torchvision:", _load_classifier, "supervised torchvision classifier: NAME[@WEIGHTS|@random|@FILE.pth] (default: DEFAULT weights)")


def _load_api(spec: str, options: LoadOptions) -> VisionModel:
    from .api import load_api_model

    return load_api_model(spec, options, resolve_alias)


MODEL_SPECS.register("openai:", _load_api, "chat-completions API model MODEL[@URL] (OpenAI or any compatible server)")
MODEL_SPECS.register("sglang:", _load_api, "SGLang server MODEL@URL through its native /generate (MODEL: the served checkpoint, whose processor renders the prompts)")
