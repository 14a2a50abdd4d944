"""Family adapters of the hybrid VLMs: language models with recurrent, linear-attention, state-space
or short-convolution layers beside attention (``vlmprobe.models.families`` explains the fields).

Their fast likelihood is the ``state`` path of ``vlmprobe.models.likelihood`` (chosen from the
config by ``likelihood.fast_path``): the image + prompt once, then the candidates continue from
copies of its cache, since a recurrent state cannot be masked per candidate like keys and values.

===================  =====================================================================================
``qwen3_5``          Qwen3.5 (and ``qwen3_5_moe``): Qwen3-VL-style ViT + patch merger, a language model of
                     Gated DeltaNet (linear attention with a short convolution) and gated full-attention
                     layers, interleaved M-RoPE
``lfm2_vl``          LFM2-VL: SigLIP2 NaFlex tower + pixel-unshuffle MLP projector, LFM2 language model of
                     gated short-convolution and attention layers
``lfm3_vl``          LFM3-VL: a ViT of convolution and attention layers with a 2x2 merger (Qwen2-VL's image
                     processor), LFM3 language model of short-convolution, sliding-window and full
                     attention layers
``nemotron_h_omni``  Nemotron-3-Nano-Omni: RADIO tower + pixel-shuffle MLP projector, Nemotron-H
                     language model of Mamba-2, MoE, attention and MLP blocks
``minicpmv4_6``      MiniCPM-V 4.6 / 4.7: ViT with a window merger + 2x2 merger around a Qwen3.5 language
``minicpmv4_7``      model; 4.7 adds canvas M-RoPE (``canvas_positions``). Their merger returns one tensor per
                     image (the feature hook concatenates them)
``inkling2``         Inkling-2: ViT + merged-patch MLP, language model of "hybrid" layers (attention whose
                     keys and values pass short convolutions), sliding-window and global
===================  =====================================================================================

Imported by ``vlmprobe.models`` (its ``__init__``), so the records are registered before any model
is loaded.
"""
from __future__ import annotations

import torch

from ..errors import VlmprobeError
from .families import (NESTED_IMAGE_PROCESSORS, Family, mrope_positions, register_family, split_rows_by_grid,
                       split_rows_by_tokens)

NESTED_IMAGE_PROCESSORS.add("Lfm2VlProcessor")  # takes images nested per text row, like Idefics3's


def split_rows_by_slots(config, batch: dict, x: torch.Tensor, n_images: int) -> list[torch.Tensor]:
    """LFM2-VL's projector rows -> per image. ``get_image_features`` lays every image's token
    slots side by side (``ntok`` = padded patches / f^2 slots per image, f = ``downsample_factor``;
    image i's first ``(h_i/f)(w_i/f)`` slots are real, ``spatial_shapes`` [N, 2] in patches, the
    rest read patch 0): the projector's input is one grid [1, f, slots * f, D] (slot s = columns
    s*f .. s*f+f-1, f x f patches), its output [.., slots, D]. One row of ``spatial_shapes`` per
    image (no tiling), else a one-line error."""
    shapes = batch.get("spatial_shapes")
    if shapes is None or len(shapes) != n_images:
        raise VlmprobeError(f"cannot map vision rows to {n_images} images (tiled images?); request lm.* layers only")
    f = config.downsample_factor
    counts = ((shapes[:, 0] // f) * (shapes[:, 1] // f)).tolist()
    if x.dim() == 4 and x.shape[1] == f > 1:  # the projector's input grid (its output is [1, 1, slots, D])
        slots = x.shape[2] // f
        x = x[0].reshape(f, slots, f, x.shape[-1]).transpose(0, 1).reshape(slots, f * f, x.shape[-1])
    else:
        x = x.reshape(-1, 1, x.shape[-1])
    per = x.shape[0] // n_images
    if per * n_images != x.shape[0] or max(counts) > per:
        raise VlmprobeError(f"{x.shape[0]} projector slots do not divide into {n_images} images of {counts} tokens")
    return [x[i * per:i * per + c].reshape(-1, x.shape[-1]) for i, c in enumerate(counts)]


QWEN3_5 = register_family(Family(
    "qwen3.5", ("qwen3_5", "qwen3_5_moe", "qwen4_exp"), projector=("merger",), split_patch_rows=split_rows_by_grid,
    positions=mrope_positions,
    notes="Qwen3.5 / Qwen3.5-MoE (Gated DeltaNet + gated attention hybrid LM, interleaved M-RoPE; fast = state path)"))
LFM2_VL = register_family(Family(
    "lfm2-vl", ("lfm2_vl",), split_patch_rows=split_rows_by_slots,
    notes="LFM2-VL (SigLIP2 NaFlex + pixel-unshuffle projector, LFM2 short-conv + attention LM; fast = state path)"))
LFM3_VL = register_family(Family(
    "lfm3-vl", ("lfm3_vl",), split_patch_rows=split_rows_by_grid,
    notes="LFM3-VL (conv/attention ViT with a 2x2 merger, LFM3 LM of short-conv, sliding-window and full attention "
          "layers; fast = state path)"))
def split_rows_by_grid_hw(config, batch: dict, x: torch.Tensor, n_images: int) -> list[torch.Tensor]:
    """``split_rows_by_grid`` for processors that give a 2-D patch grid per image, ``image_grid_hw``
    [N, 2] (Nemotron-H Omni: the projector's rows are the pixel-shuffled tokens, 1 / 4 of the patches)."""
    grid = batch.get("image_grid_hw")
    thw = None if grid is None else torch.cat([torch.ones_like(grid[:, :1]), grid], dim=1)
    return split_rows_by_grid(config, {**batch, "image_grid_thw": thw}, x, n_images)


NEMOTRON_H_OMNI = register_family(Family(
    "nemotron-h-omni", ("nemotron_h_omni",), split_patch_rows=split_rows_by_grid_hw,
    notes="Nemotron-3-Nano-Omni on images (RADIO + pixel shuffle, Nemotron-H LM of Mamba-2, MoE, attention and MLP "
          "blocks; fast = state path)"))
# MiniCPM-V's ``merger`` returns one tensor per image (a list; the feature hook concatenates it);
# its input is the packed [1, patches, D] tower output, 4 rows per image token (2x2 merge).
def canvas_positions(model, batch: dict) -> torch.Tensor:
    """MiniCPM-V 4.7's canvas M-RoPE positions [3, B, L] from the model's public ``get_rope_index``
    (anchored on each crop's markers, ``target_sizes`` per crop); plain positions without an image."""
    from .families import plain_positions

    if batch.get("target_sizes") is None:
        return plain_positions(model, batch).expand(3, -1, -1)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    fn = getattr(inner, "get_rope_index", None) or inner.model.get_rope_index
    return fn(input_ids=batch["input_ids"], mm_token_type_ids=batch.get("mm_token_type_ids"),
              target_sizes=batch["target_sizes"], attention_mask=batch["attention_mask"])[0]


MINICPMV4_6 = register_family(Family(
    "minicpm-v-4.6", ("minicpmv4_6", "minicpm_ocr"), projector=("merger",), split_patch_rows=split_rows_by_tokens,
    notes="MiniCPM-V 4.6 (SigLIP-style ViT with window merger, Qwen3.5 Gated DeltaNet hybrid LM; fast = state path)"))
MINICPMV4_7 = register_family(Family(
    "minicpm-v-4.7", ("minicpmv4_7",), projector=("merger",), split_patch_rows=split_rows_by_tokens,
    positions=canvas_positions,
    notes="MiniCPM-V 4.7 (MiniCPM-V 4.6 with canvas M-RoPE; fast = state path)"))
INKLING2 = register_family(Family(
    "inkling-2", ("inkling2", "inkling2_loop"), split_patch_rows=split_rows_by_tokens,
    notes="Inkling-2 (ViT + merged-patch MLP, LM of hybrid attention+conv layers, sliding and global; fast = state path)"))
