"""Tiny random-weight checkpoints of the hybrid VLM families: language models with recurrent,
linear-attention, state-space or short-convolution layers beside attention, whose fast likelihood is
the ``state`` path (``vlmprobe.models.likelihood``). Registered by model type
(``vlmprobe.testing.families``); same sizes as ``families_decoder`` (2 layers of width 64 on each
side, 32 px images, byte-level BPE trained here, ``initializer_range`` 0.2), one layer of each
kind in the language model.

===================  ==============================================================================
``qwen3_5``          Qwen3.5: Qwen3-VL-style ViT (patch 8, 2x2 merger: 4 ``<|image_pad|>`` per 32 px
                     image) + a Gated DeltaNet layer and a gated full-attention layer, interleaved
                     M-RoPE on a quarter of the head (as released); ChatML without a system turn, the
                     generation prompt closing an empty ``<think>`` block (Qwen3.5's non-thinking mode)
``qwen3_5_moe``      Qwen3.5-MoE: the same with a sparse MoE (4 experts, top 2, a shared expert)
``lfm2_vl``          LFM2-VL: SigLIP2 NaFlex tower (patch 8; a 32 px image -> 16 patches -> 4 ``<image>``
                     after the 2x2 pixel unshuffle, no tiling), LFM2 LM of a gated short-convolution
                     layer and an attention layer; ``<|startoftext|>`` + ChatML turns, the image
                     inside ``<|image_start|>...<|image_end|>``
``lfm3_vl``          LFM3-VL: ViT of a convolution and an attention layer (patch 8, 2x2 merger: 4
                     ``<|image_pad|>`` per 32 px image), LFM3 LM of a short-convolution, a sliding-window
                     (window 8, shorter than every prompt) and a full-attention layer; LFM2-VL's turns
``nemotron_h_omni``  Nemotron-3-Nano-Omni (image side; no audio tower): RADIO ViT (patch 8), pixel
                     shuffle 0.5 + MLP projector (4 ``<image>`` per 32 px image inside ``<img>...</img>``),
                     Nemotron-H LM of a Mamba-2 layer, a MoE layer (4 experts, top 2, shared expert),
                     an attention layer and an MLP layer (the released pattern's four block kinds);
                     ChatML with an empty ``<think></think>`` (reasoning off)
``minicpmv4_6``      MiniCPM-V 4.6: its ViT (patch 8, a window merger inserted after layer 1) + a 2x2
                     merger ("4x" downsampling: 4 image tokens per 32 px image, no slicing, the image
                     id prefix kept) around a Qwen3.5 language model (Gated DeltaNet + attention);
                     Qwen3.5's template with the image as its placeholder token
``minicpmv4_7``      MiniCPM-V 4.7: the same with canvas M-RoPE (positions anchored on the crop markers)
``inkling2``         Inkling-2: ViT (patch 8, 2x2 merge: one ``<|image|>`` per 16 px block) + MLP, LM of a
                     sliding-window (window 8) and a global "hybrid" layer (attention with short
                     convolutions on keys and values), MoE (4 experts, top 2); LFM2-VL's ChatML turns
===================  ==============================================================================
"""
from __future__ import annotations

from pathlib import Path

from . import IMAGE_SIZE, QWEN_PATCH, QWEN_SPECIALS, _save_vlm
from .families import tiny_builder
from .families_decoder import TINY_TEXT, _qwen_image_processor, special_tokenizer

THINK = ("<think>", "</think>")
QWEN3_5_TEMPLATE = (  # Qwen3.5 chat (enable_thinking=False): "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{q}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}{% endif %}"
)
# (an assistant turn opens with the same empty think block, so the template is prefix-stable)
# one linear-attention (Gated DeltaNet) layer, then one full-attention layer; heads of 16 (value 64 wide)
GATED_DELTANET = dict(layer_types=["linear_attention", "full_attention"], linear_conv_kernel_dim=4,
                      linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2,
                      linear_num_value_heads=4, head_dim=32)


def qwen_tokenizer(extra: tuple[str, ...] = ()):
    """Qwen2's specials (+ ``extra``), ``<|im_end|>`` ends a turn, ``<|endoftext|>`` pads."""
    return special_tokenizer(QWEN_SPECIALS + extra, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                             extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})


def qwen_hybrid(out: Path, config_cls, model_cls, text: dict, template: str, extra_tokens: tuple = ()) -> None:
    """A Qwen3-VL-style VLM (ViT with learned position embeddings and a 2x2 merger, Qwen2-VL's
    image processor, Qwen3-VL's processor) around the language model ``text`` (config fields)."""
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

    tok = qwen_tokenizer(extra_tokens)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = dict(vocab_size=len(tok), **TINY_TEXT, bos_token_id=None, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, **text)
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                  patch_size=QWEN_PATCH, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64)
    config = config_cls(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    model = model_cls(config).eval()
    from transformers import Qwen2VLImageProcessor

    processor = Qwen3VLProcessor(image_processor=_qwen_image_processor(Qwen2VLImageProcessor), tokenizer=tok,
                                 video_processor=Qwen3VLVideoProcessor(patch_size=QWEN_PATCH, merge_size=2),
                                 chat_template=template)
    _save_vlm(model, processor, tok, out)


QWEN3_5_ROPE = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25,
                                    "mrope_section": [2, 1, 1], "mrope_interleaved": True}}  # 8 rotary dims of 32


@tiny_builder("qwen3_5")
def build_qwen3_5(out: Path) -> None:
    """Qwen3.5 (module docstring)."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    qwen_hybrid(out, Qwen3_5Config, Qwen3_5ForConditionalGeneration, {**GATED_DELTANET, **QWEN3_5_ROPE},
                QWEN3_5_TEMPLATE, THINK)


@tiny_builder("qwen3_5_moe")
def build_qwen3_5_moe(out: Path) -> None:
    """Qwen3.5-MoE: Qwen3.5 with 4 experts of width 64 (top 2) and a shared expert."""
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration

    moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, shared_expert_intermediate_size=64)
    qwen_hybrid(out, Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration,
                {**GATED_DELTANET, **QWEN3_5_ROPE, **moe}, QWEN3_5_TEMPLATE, THINK)


LFM2_SPECIALS = ("<|pad|>", "<|startoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<|image_start|>",
                 "<|image_end|>", "<|img_thumbnail|>")
LFM2_VL_TEMPLATE = (  # LFM2-VL: "<|startoftext|><|im_start|>user\n<image>{q}<|im_end|>\n<|im_start|>assistant\n"
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@tiny_builder("lfm2_vl")
def build_lfm2_vl(out: Path) -> None:
    """LFM2-VL (module docstring)."""
    from transformers import Lfm2VlConfig, Lfm2VlForConditionalGeneration, Lfm2VlImageProcessor, Lfm2VlProcessor

    tok = special_tokenizer(LFM2_SPECIALS, bos="<|startoftext|>", eos="<|im_end|>", pad="<|pad|>",
                            extra={"image_token": "<image>"})
    text = dict(model_type="lfm2", vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.2,
                layer_types=["conv", "full_attention"], conv_L_cache=3, block_auto_adjust_ff_dim=False,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                tie_word_embeddings=False)
    vision = dict(model_type="siglip2_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, patch_size=8, num_patches=64, vision_use_head=False)
    config = Lfm2VlConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                          projector_hidden_size=64, downsample_factor=2, tie_word_embeddings=False)
    model = Lfm2VlForConditionalGeneration(config).eval()
    image_processor = Lfm2VlImageProcessor(do_image_splitting=False, use_thumbnail=False, encoder_patch_size=8,
                                           downsample_factor=2, min_image_tokens=4, max_image_tokens=16,
                                           tile_size=IMAGE_SIZE, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Lfm2VlProcessor(image_processor=image_processor, tokenizer=tok, chat_template=LFM2_VL_TEMPLATE)
    _save_vlm(model, processor, tok, out)


LFM3_SPECIALS = ("<|pad|>", "<|startoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>")


@tiny_builder("lfm3_vl")
def build_lfm3_vl(out: Path) -> None:
    """LFM3-VL (module docstring)."""
    from transformers import (Lfm3VlConfig, Lfm3VlForConditionalGeneration, Lfm3VlProcessor, Qwen2VLImageProcessor,
                              Qwen3VLVideoProcessor)

    tok = special_tokenizer(LFM3_SPECIALS, bos="<|startoftext|>", eos="<|im_end|>", pad="<|pad|>",
                            extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    ids = {t: tok.convert_tokens_to_ids(t) for t in LFM3_SPECIALS}
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, max_position_embeddings=1024, initializer_range=0.2,
                layer_types=["conv", "sliding_attention", "full_attention"], sliding_window=8,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                tie_word_embeddings=False)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, layer_types=["conv", "full_attention"], patch_size=QWEN_PATCH,
                  spatial_merge_size=2, temporal_patch_size=2)
    config = Lfm3VlConfig(vision_config=vision, text_config=text, image_token_id=ids["<|image_pad|>"],
                          video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                          vision_end_token_id=ids["<|vision_end|>"], projector_hidden_size=64, tie_word_embeddings=False)
    model = Lfm3VlForConditionalGeneration(config).eval()
    processor = Lfm3VlProcessor(image_processor=_qwen_image_processor(Qwen2VLImageProcessor), tokenizer=tok,
                                video_processor=Qwen3VLVideoProcessor(patch_size=QWEN_PATCH, merge_size=2),
                                chat_template=LFM2_VL_TEMPLATE.replace("'<image>'", "'<|vision_start|><|image_pad|><|vision_end|>'"))
    _save_vlm(model, processor, tok, out)


NEMOTRON_SPECIALS = ("<pad>", "<|im_start|>", "<|im_end|>", "<image>", "<img>", "</img>", "<video>", "<so_embedding>",
                     "<think>", "</think>")
NEMOTRON_TEMPLATE = QWEN3_5_TEMPLATE.replace("<think>\\n\\n</think>\\n\\n", "<think></think>").replace(
    "<|vision_start|><|image_pad|><|vision_end|>", "<image>\\n")


@tiny_builder("nemotron_h_omni")
def build_nemotron_h_omni(out: Path) -> None:
    """Nemotron-H Omni (module docstring)."""
    from transformers import (NemotronH_Omni_Reasoning_V3, NemotronH_Omni_Reasoning_V3_Config,
                              NemotronH_Omni_Reasoning_V3ImageProcessor, NemotronH_Omni_Reasoning_V3Processor,
                              NemotronH_Omni_Reasoning_V3VideoProcessor, ParakeetFeatureExtractor)

    tok = special_tokenizer(NEMOTRON_SPECIALS, bos=None, eos="<|im_end|>", pad="<pad>",
                            extra={"image_token": "<image>", "video_token": "<video>"})
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                head_dim=16, max_position_embeddings=1024, initializer_range=0.2,
                layer_types=["linear_attention", "moe", "full_attention", "mlp"], use_mamba_kernels=False,
                ssm_state_size=16, mamba_num_heads=4, mamba_head_dim=32, n_groups=2, conv_kernel=4, chunk_size=16,
                n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                moe_shared_expert_intermediate_size=64, bos_token_id=None, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2.0, patch_size=8,
                  image_size=IMAGE_SIZE, max_img_size=64, num_cls_tokens=1, num_registers=1, video_temporal_patch_size=2)
    config = NemotronH_Omni_Reasoning_V3_Config(vision_config=vision, text_config=text, vision_hidden_size=64,
                                                projector_hidden_size=64, downsample_ratio=0.5,
                                                image_token_id=tok.convert_tokens_to_ids("<image>"),
                                                video_token_id=tok.convert_tokens_to_ids("<video>"),
                                                tie_word_embeddings=False)
    model = NemotronH_Omni_Reasoning_V3(config).eval()
    sizes = dict(patch_size=8, min_num_patches=16, max_num_patches=64, max_model_len=1024)
    processor = NemotronH_Omni_Reasoning_V3Processor(
        image_processor=NemotronH_Omni_Reasoning_V3ImageProcessor(**sizes),
        video_processor=NemotronH_Omni_Reasoning_V3VideoProcessor(patch_size=8), tokenizer=tok,
        feature_extractor=ParakeetFeatureExtractor(), chat_template=NEMOTRON_TEMPLATE)  # (the processor requires one)
    _save_vlm(model, processor, tok, out)


MINICPM_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "image_start_token": "<image>",
                  "image_end_token": "</image>", "slice_start_token": "<slice>", "slice_end_token": "</slice>",
                  "image_id_start_token": "<image_id>", "image_id_end_token": "</image_id>"}


def minicpm_v(out: Path, config_cls, model_cls, processor_cls, markers: bool = False) -> None:
    """A MiniCPM-V 4.x (module docstring) from its config, model and processor classes; ``markers``:
    the config names the crop-marker and newline ids (4.7's canvas M-RoPE anchors on them)."""
    from transformers import MiniCPMV4_6ImageProcessor, MiniCPMV4_6VideoProcessor

    specials = tuple(t for t in MINICPM_TOKENS.values() if t not in QWEN_SPECIALS)
    tok = special_tokenizer(QWEN_SPECIALS + specials + THINK, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                            extra=MINICPM_TOKENS)
    text = dict(model_type="qwen3_5_text", vocab_size=len(tok), **TINY_TEXT, **GATED_DELTANET, **QWEN3_5_ROPE,
                bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE_SIZE, patch_size=QWEN_PATCH, insert_layer_id=1)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in MINICPM_TOKENS.items()}
    config = config_cls(text_config=text, vision_config=vision, insert_layer_id=1, image_size=IMAGE_SIZE,
                        downsample_mode="4x", image_token_id=ids["image_token"], video_token_id=ids["video_token"],
                        tie_word_embeddings=False, **({} if not markers else dict(
                            image_start_id=ids["image_start_token"], image_end_id=ids["image_end_token"],
                            slice_start_id=ids["slice_start_token"], slice_end_id=ids["slice_end_token"],
                            newline_id=tok("\\n", add_special_tokens=False).input_ids[0])))
    model = model_cls(config).eval()
    sizes = dict(scale_resolution=IMAGE_SIZE, patch_size=QWEN_PATCH, slice_mode=False, downsample_mode="4x")
    processor = processor_cls(image_processor=MiniCPMV4_6ImageProcessor(**sizes),
                              video_processor=MiniCPMV4_6VideoProcessor(**sizes), tokenizer=tok,
                              chat_template=QWEN3_5_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>",
                                                                     "<|image_pad|>\\n"))
    _save_vlm(model, processor, tok, out)


@tiny_builder("minicpmv4_6")
def build_minicpmv4_6(out: Path) -> None:
    """MiniCPM-V 4.6 (module docstring)."""
    from transformers import MiniCPMV4_6Config, MiniCPMV4_6ForConditionalGeneration, MiniCPMV4_6Processor

    minicpm_v(out, MiniCPMV4_6Config, MiniCPMV4_6ForConditionalGeneration, MiniCPMV4_6Processor)


@tiny_builder("minicpmv4_7")
def build_minicpmv4_7(out: Path) -> None:
    """MiniCPM-V 4.7: 4.6 with canvas M-RoPE (the crop markers anchor each image's 2-D positions)."""
    from transformers import MiniCPMV4_7Config, MiniCPMV4_7ForConditionalGeneration, MiniCPMV4_7Processor

    minicpm_v(out, MiniCPMV4_7Config, MiniCPMV4_7ForConditionalGeneration, MiniCPMV4_7Processor, markers=True)


def inkling(out: Path, config_cls, model_cls, **text_extra) -> None:
    """An Inkling-2-shaped VLM (module docstring) from its config and model classes; ``text_extra``:
    the language model's own fields."""
    from transformers import Inkling2ImageProcessor, Inkling2Processor

    tok = special_tokenizer(("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image|>"), bos=None, eos="<|im_end|>",
                            pad="<|endoftext|>", extra={"image_token": "<|image|>"})
    text = dict(vocab_size=len(tok), unpadded_vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, swa_num_attention_heads=4, swa_num_key_value_heads=2, swa_head_dim=16,
                sliding_window_size=8, rel_extent=64, layer_types=["hybrid_sliding", "hybrid"], conv_kernel_size=4,
                moe_intermediate_size=64, n_routed_experts=4, num_experts_per_tok=2, n_layers_per_attn_res_block=1,
                max_position_embeddings=1024, initializer_range=0.2, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    text.update(text_extra)
    vision = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=QWEN_PATCH, spatial_merge_size=2,
                  posemb_grid_size=4, projection_hidden_dim=64, text_hidden_size=64)
    config = config_cls(text_config=text, vision_config=vision, image_token_id=tok.convert_tokens_to_ids("<|image|>"))
    model = model_cls(config).eval()
    processor = Inkling2Processor(image_processor=Inkling2ImageProcessor(size={"height": 16, "width": 16}), tokenizer=tok,
                                  chat_template=LFM2_VL_TEMPLATE.replace("{{ bos_token }}", "").replace("'<image>'", "'<|image|>'"))
    _save_vlm(model, processor, tok, out)


@tiny_builder("inkling2")
def build_inkling2(out: Path) -> None:
    """Inkling-2 (module docstring)."""
    from transformers import Inkling2Config, Inkling2ForConditionalGeneration

    inkling(out, Inkling2Config, Inkling2ForConditionalGeneration)


@tiny_builder("inkling2_loop")
def build_inkling2_loop(out: Path) -> None:
    """Inkling-2-Loop: Inkling-2 with 3 layers whose layer 1 runs twice (a looped block, gate of rank 8)."""
    from transformers.models.inkling2_loop import Inkling2LoopConfig, Inkling2LoopForConditionalGeneration

    inkling(out, Inkling2LoopConfig, Inkling2LoopForConditionalGeneration, num_hidden_layers=3,
            layer_types=["hybrid_sliding", "hybrid_sliding", "hybrid"], loop_layer_index_start=1,
            loop_layer_index_end=2, loop_num_passes=2, loop_gate_rank=8)


@tiny_builder("minicpm_ocr")
def build_minicpm_ocr(out: Path) -> None:
    """MiniCPM-OCR: MiniCPM-V 4.6's shape (ViT with window merger, 2x2 merger, Qwen3.5 LM) under its own classes."""
    from transformers.models.minicpm_ocr import (MiniCPMOcrConfig, MiniCPMOcrForConditionalGeneration,
                                                 MiniCPMOcrProcessor)

    minicpm_v(out, MiniCPMOcrConfig, MiniCPMOcrForConditionalGeneration, MiniCPMOcrProcessor)


@tiny_builder("qwen4_exp")
def build_qwen4_exp(out: Path) -> None:
    """Qwen4-Exp: Qwen3.5's shape with a MoE (4 experts, top 2, shared expert) and 2 hyper-connection
    streams of low rank 8 (hidden states are 2 x 64 wide), the sparse-attention indexer's budget
    (2048 tokens) above every prompt."""
    from transformers.models.qwen4_exp import Qwen4ExpConfig, Qwen4ExpForConditionalGeneration

    moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, shared_expert_intermediate_size=64)
    qwen_hybrid(out, Qwen4ExpConfig, Qwen4ExpForConditionalGeneration,
                {**GATED_DELTANET, **QWEN3_5_ROPE, **moe, "hc_count": 2, "hc_lowrank": 8,
                 "indexer_n_heads": 2, "indexer_kv_heads": 1, "indexer_head_dim": 16, "indexer_budget": 2048,
                 "indexer_compress_ratio": 4}, QWEN3_5_TEMPLATE, THINK)
