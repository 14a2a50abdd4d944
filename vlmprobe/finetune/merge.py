"""Fold a LoRA adapter into its base: ``W' = W + (alpha / r) * B A`` for every adapted layer
(peft ``merge_and_unload``), saved with the processor so the result loads as ``hf:OUT``."""
from __future__ import annotations

from pathlib import Path

from ..errors import VlmprobeError


def merge_adapter(spec: str, out: str, dtype: str = "float32") -> str:
    """``hf:BASE+adapter:PATH`` -> a plain model directory ``out``; returns ``hf:<out>``."""
    from ..models.registry import load_model

    if "+adapter:" not in spec:
        raise VlmprobeError(f"merge: --model {spec!r} has no adapter (expected hf:BASE+adapter:PATH)")
    target = Path(out).expanduser().resolve()
    if target.exists() and any(target.iterdir()):
        raise VlmprobeError(f"merge: --out {target} exists and is not empty")
    vlm = load_model(spec, dtype=dtype)
    merged = vlm.model.merge_and_unload()
    target.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(target))
    vlm.processor.save_pretrained(str(target))
    return f"hf:{target}"
