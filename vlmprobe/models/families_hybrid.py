"""Family adapters of the hybrid VLMs: language models with recurrent, linear-attention, state-space
or short-convolution layers beside attention (``vlmprobe.models.families`` explains the fields).

Their fast likelihood is the ``state`` path of ``vlmprobe.models.likelihood`` (chosen from the
config by ``likelihood.fast_path``): the image + prompt once, then the candidates continue from
copies of its cache, since a recurrent state cannot be masked per candidate like keys and values.

=================  =====================================================================================
``qwen3_5``        Qwen3.5 (and ``qwen3_5_moe``): Qwen3-VL-style ViT + patch merger, a language model of
                   Gated DeltaNet (linear attention with a short convolution) and gated full-attention
                   layers, interleaved M-RoPE
``lfm2_vl``        LFM2-VL: SigLIP2 NaFlex tower + pixel-unshuffle MLP projector, LFM2 language model of
                   gated short-convolution and attention layers
=================  =====================================================================================

Imported by ``vlmprobe.models`` (its ``__init__``), so the records are registered before any model
is loaded.
"""
from __future__ import annotations

from .families import Family, mrope_positions, register_family, split_rows_by_grid

QWEN3_5 = register_family(Family(
    "qwen3.5", ("qwen3_5", "qwen3_5_moe"), projector=("merger",), split_patch_rows=split_rows_by_grid,
    positions=mrope_positions,
    notes="Qwen3.5 / Qwen3.5-MoE (Gated DeltaNet + gated attention hybrid LM, interleaved M-RoPE; fast = state path)"))
