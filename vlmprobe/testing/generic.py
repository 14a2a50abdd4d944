"""Probe a transformers image-text-to-text model type that has no tiny builder.

``probe_type(model_type)`` instantiates ``AutoModelForImageTextToText`` from the type's default
config class with every layer count cut to 1, on the ``meta`` device (no memory, no weights,
nothing downloaded), and asks the family adapter (``vlmprobe.models.families``) to find the
language model, vision tower and projector in it. Result, one of:

- ``partial``: the model builds and the adapter finds its modules (checks ``build``, ``modules``
  pass); the conformance checks proper (generation, likelihood, features, LoRA) need a tiny
  processor and tokenizer, i.e. a registered tiny builder, and were not run;
- ``unsupported``: the config or the model cannot be built from defaults, or a module role is
  not found; the reason is the one-line error.
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


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"


def probe_type(model_type: str) -> dict:
    """``{"model_type", "family", "status", "checks", "reason"}`` (module docstring)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from ..models.families import family_for_type

    fam = family_for_type(model_type)
    res = {"model_type": model_type, "family": fam.name, "status": "unsupported", "checks": {}, "reason": ""}
    try:
        cfg = AutoConfig.for_model(model_type)
        shrink_layers(cfg)
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(cfg)
    except Exception as err:  # noqa: BLE001 (the reason is the result)
        res["reason"] = f"no model from a default tiny config: {_one_line(err)}"
        return res
    res["checks"]["build"] = {"status": "pass", "reason": type(model).__name__}
    missing = []
    for role in ("language_model", "vision_tower", "projector"):
        if fam.find_module(model, role, required=False) is None:
            missing.append(f"{role.replace('_', ' ')} (looked for {', '.join(getattr(fam, role))})")
    if missing:
        res["checks"]["modules"] = {"status": "fail", "reason": "not found: " + "; ".join(missing)}
        res["reason"] = f"{type(model).__name__}: the {fam.name} adapter finds no " + "; no ".join(missing)
        return res
    res["checks"]["modules"] = {"status": "pass", "reason": ""}
    res["status"] = "partial"
    res["reason"] = (f"{type(model).__name__} builds and its modules resolve ({fam.name} adapter"
                     f"{', naive likelihood only' if fam.fast_likelihood else ''}); no tiny builder: "
                     "generation, likelihood, features, batch and LoRA checks not run")
    return res
