"""Tiny random-weight checkpoints of the newer chat VLM families (issue 32), a few lines of config
each on top of shared shapes:

- ``_llava_like``: CLIP-style tower + MLP projector + Llama-style LM, ``LlavaProcessor`` (one
  ``<image>`` expanded to 16 patch tokens), ``USER: <image>\\n{q} ASSISTANT:``;
- ``_qwen_vl`` (``families_decoder``): Qwen-VL-style ViT with patch merger + M-RoPE LM, Qwen2-VL's
  image processor (a 32 px image -> 4 ``<|image_pad|>`` tokens), ChatML;
- ``_glm_vl``: GLM-4.xV (ViT with merger, 3-D RoPE LM), ``[gMASK]<sop><|user|>\\n...<|assistant|>\\n``.

Every size follows ``families_decoder``: towers and LMs of 2 layers, width 64, 32 px images,
``initializer_range`` 0.2; mixture-of-experts LMs have 4 experts, 2 active.
"""
from __future__ import annotations

from pathlib import Path

from . import (IMAGE_SIZE, LLAVA_CHAT_TEMPLATE, PATCH_SIZE, QWEN_PATCH, _clip_image_processor, _llama_config,
               _save_vlm, _vision_config, llama_tokenizer)
from .families import tiny_builder
from .families_decoder import TINY_TEXT, _qwen_vl, chatml_template, special_tokenizer

TINY_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)  # Qwen-style MoE names
QWEN3_TEMPLATE = chatml_template("<|vision_start|><|image_pad|><|vision_end|>", system=None)


# ----------------------------------------------------------------------------- Qwen-VL shapes
@tiny_builder("qwen3_vl_moe")
def build_qwen3_vl_moe(out: Path) -> None:
    """Qwen3-VL-MoE: the Qwen3-VL tiny model with a sparse-MoE LM (4 experts, top-2)."""
    from transformers import (Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration, Qwen3VLProcessor,
                              Qwen3VLVideoProcessor)

    _qwen_vl(out, Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor,
             vision=dict(num_position_embeddings=64, deepstack_visual_indexes=[0]),
             rope={"mrope_section": [2, 3, 3], "mrope_interleaved": True}, head_dim=16,
             template=QWEN3_TEMPLATE, decoder_sparse_step=1, **TINY_MOE)


@tiny_builder("cosmos3_omni")
def build_cosmos3_omni(out: Path) -> None:
    """Cosmos3-Omni (image path): a Qwen3-VL tower and LM under Cosmos' classes; Qwen3-VL's processor."""
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor
    from transformers.models.cosmos3_omni import Cosmos3OmniConfig, Cosmos3OmniForConditionalGeneration

    _qwen_vl(out, Cosmos3OmniConfig, Cosmos3OmniForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor,
             vision=dict(num_position_embeddings=64, deepstack_visual_indexes=[0]),
             rope={"mrope_section": [2, 3, 3], "mrope_interleaved": True}, head_dim=16, template=QWEN3_TEMPLATE)


# ----------------------------------------------------------------------------- LLaVA shapes
def _llava_like(out: Path, config_cls, model_cls, **config) -> None:
    """CLIP tower (32 px, patch 8: 16 tokens) + projector + tiny Llama, ``LlavaProcessor`` and
    LLaVA-1.5's ``USER: <image>\\n{q} ASSISTANT:`` template."""
    from transformers import LlavaProcessor

    tok = llama_tokenizer()
    cfg = config_cls(vision_config=_vision_config(), text_config=_llama_config(tok),
                     image_token_index=tok.convert_tokens_to_ids("<image>"), **config)
    model = model_cls(cfg).eval()
    processor = LlavaProcessor(image_processor=_clip_image_processor(), tokenizer=tok, patch_size=PATCH_SIZE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token="<image>", chat_template=LLAVA_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("vipllava")
def build_vipllava(out: Path) -> None:
    """VipLLaVA: LLaVA-1.5 whose projector reads a concatenation of several tower layers."""
    from transformers import VipLlavaConfig, VipLlavaForConditionalGeneration

    _llava_like(out, VipLlavaConfig, VipLlavaForConditionalGeneration, vision_feature_layer=[-2, -1],
                image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2)


# ----------------------------------------------------------------------------- GLM-4.xV
GLM_SPECIALS = ("<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
                "<|begin_of_image|>", "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>",
                "<|video|>")
GLM_TEMPLATE = (  # GLM-4.1V-Thinking / GLM-4.5V: "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{q}<|assistant|>\n"
    "[gMASK]<sop>{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<|begin_of_image|><|image|><|end_of_image|>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def _glm_vl(out: Path, config_cls, model_cls, processor_cls, image_cls, video_cls, **text_extra) -> None:
    """GLM-4.xV: ViT (patch 8, 2x2 merger: a 32 px image -> 4 ``<|image|>`` tokens) + GLM-4 LM
    with 3-D RoPE; ``<|user|>`` / ``<|assistant|>`` turns after ``[gMASK]<sop>``."""
    tok = special_tokenizer(GLM_SPECIALS, bos=None, eos="<|user|>", pad="<|endoftext|>",
                            extra={"image_token": "<|image|>", "video_token": "<|video|>"})
    ids = {t: tok.convert_tokens_to_ids(t) for t in GLM_SPECIALS}
    text = dict(vocab_size=len(tok), **TINY_TEXT, head_dim=16, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                                "mrope_section": [2, 1, 1], "partial_rotary_factor": 0.5})
    text.update(text_extra)
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                  image_size=IMAGE_SIZE, patch_size=QWEN_PATCH, spatial_merge_size=2, temporal_patch_size=2)
    config = config_cls(text_config=text, vision_config=vision, image_token_id=ids["<|image|>"],
                        video_token_id=ids["<|video|>"], image_start_token_id=ids["<|begin_of_image|>"],
                        image_end_token_id=ids["<|end_of_image|>"], video_start_token_id=ids["<|begin_of_video|>"],
                        video_end_token_id=ids["<|end_of_video|>"], tie_word_embeddings=False)
    model = model_cls(config).eval()
    image_processor = image_cls(patch_size=QWEN_PATCH, merge_size=2, temporal_patch_size=2,
                                size={"shortest_edge": IMAGE_SIZE * IMAGE_SIZE, "longest_edge": 4 * IMAGE_SIZE * IMAGE_SIZE},
                                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = processor_cls(image_processor=image_processor, tokenizer=tok,
                              video_processor=video_cls(patch_size=QWEN_PATCH, merge_size=2), chat_template=GLM_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("glm4v")
def build_glm4v(out: Path) -> None:
    """GLM-4.1V: the shared GLM-4.xV shape."""
    from transformers import (Glm4vConfig, Glm4vForConditionalGeneration, Glm4vImageProcessor, Glm4vProcessor,
                              Glm4vVideoProcessor)

    _glm_vl(out, Glm4vConfig, Glm4vForConditionalGeneration, Glm4vProcessor, Glm4vImageProcessor, Glm4vVideoProcessor)


@tiny_builder("glm46v")
def build_glm46v(out: Path) -> None:
    """GLM-4.6V: the GLM-4.xV shape under GLM-4.6V's classes and processor."""
    from transformers import (Glm46VConfig, Glm46VForConditionalGeneration, Glm46VImageProcessor, Glm46VProcessor,
                              Glm46VVideoProcessor)

    _glm_vl(out, Glm46VConfig, Glm46VForConditionalGeneration, Glm46VProcessor, Glm46VImageProcessor,
            Glm46VVideoProcessor)


@tiny_builder("glm4v_moe")
def build_glm4v_moe(out: Path) -> None:
    """GLM-4.5V: the GLM-4.xV shape with a MoE LM (4 routed experts, top-2, one shared; layer 0 dense)."""
    from transformers import (Glm4vImageProcessor, Glm4vMoeConfig, Glm4vMoeForConditionalGeneration, Glm4vProcessor,
                              Glm4vVideoProcessor)

    _glm_vl(out, Glm4vMoeConfig, Glm4vMoeForConditionalGeneration, Glm4vProcessor, Glm4vImageProcessor,
            Glm4vVideoProcessor, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
            moe_intermediate_size=32, first_k_dense_replace=1)


@tiny_builder("glmga")
def build_glmga(out: Path) -> None:
    """GLM-GA: GLM-4.6V's model class under the ``glmga`` config and image processor."""
    from transformers import Glm46VForConditionalGeneration, Glm46VProcessor
    from transformers.models.glmga import GlmgaConfig, GlmgaImageProcessor, GlmgaVideoProcessor

    _glm_vl(out, GlmgaConfig, Glm46VForConditionalGeneration, Glm46VProcessor, GlmgaImageProcessor,
            GlmgaVideoProcessor)


# ----------------------------------------------------------------------------- Qwen2-VL image processor, 1-D RoPE LM
def _qwen_processor_vl(out: Path, config_cls, model_cls, text: dict, vision: dict, temporal_patch: int = 2,
                       processor_cls=None, **config) -> None:
    """A Qwen-style ViT with merger (patch 8, 2x2 merge: 4 ``<|image_pad|>`` per 32 px image)
    in front of a 1-D RoPE LM, ``processor_cls`` (default ``Exaone4_5_Processor``; Qwen2-VL image
    processor) and ChatML."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor
    from transformers.models.exaone4_5 import Exaone4_5_Processor

    processor_cls = processor_cls or Exaone4_5_Processor
    from . import qwen2_tokenizer
    from .families_decoder import _qwen_ids

    tok = qwen2_tokenizer()
    ids = _qwen_ids(tok)
    text = dict(vocab_size=len(tok), **TINY_TEXT, head_dim=16, bos_token_id=None, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, **text)
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                  patch_size=QWEN_PATCH, spatial_merge_size=2, **vision)
    cfg = config_cls(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                     video_token_id=ids["<|video_pad|>"], tie_word_embeddings=False, **config)
    model = model_cls(cfg).eval()
    image_processor = Qwen2VLImageProcessor(patch_size=QWEN_PATCH, merge_size=2, temporal_patch_size=temporal_patch,
                                            min_pixels=IMAGE_SIZE * IMAGE_SIZE, max_pixels=4 * IMAGE_SIZE * IMAGE_SIZE,
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = processor_cls(image_processor=image_processor, tokenizer=tok,
                              video_processor=Qwen2VLVideoProcessor(patch_size=QWEN_PATCH, merge_size=2),
                              chat_template=QWEN3_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("llava_onevision1_5")
def build_llava_onevision1_5(out: Path) -> None:
    """LLaVA-OneVision-1.5: RICE ViT (2-D axial RoPE, 2x2 merger, single-frame patches) + Qwen3 LM, ChatML."""
    from transformers.models.llava_onevision1_5 import (LlavaOnevision15Config,
                                                        LlavaOnevision15ForConditionalGeneration)

    from . import qwen2_tokenizer
    from .families_decoder import _qwen_ids

    ids = _qwen_ids(qwen2_tokenizer())
    _qwen_processor_vl(out, LlavaOnevision15Config, LlavaOnevision15ForConditionalGeneration,
                       text=dict(model_type="qwen3"), vision=dict(), temporal_patch=1, vision_start_token_id=ids["<|vision_start|>"],
                       vision_end_token_id=ids["<|vision_end|>"])


@tiny_builder("exaone4_5")
def build_exaone4_5(out: Path) -> None:
    """EXAONE 4.5: Qwen2.5-VL-style windowed ViT + EXAONE 4 LM (sliding-window and global layers)."""
    from transformers.models.exaone4_5 import Exaone4_5_Config, Exaone4_5_ForConditionalGeneration

    _qwen_processor_vl(out, Exaone4_5_Config, Exaone4_5_ForConditionalGeneration,
                       text=dict(model_type="exaone4", sliding_window=8, sliding_window_pattern=2),
                       vision=dict(temporal_patch_size=2, window_size=32, fullatt_block_indexes=[1],
                                   num_key_value_heads=2))


# ----------------------------------------------------------------------------- Aya Vision
AYA_SPECIALS = ("<PAD>", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>",
                "<|CHATBOT_TOKEN|>", "<image>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>",
                "<|IMG_LINE_BREAK|>", "TILE", "TILE_GLOBAL")
AYA_TEMPLATE = (  # aya-vision-8b: "<BOS_TOKEN><|START_OF_TURN_TOKEN|><|USER_TOKEN|><image>{q}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|START_OF_TURN_TOKEN|>' + ('<|CHATBOT_TOKEN|>' if message['role'] == 'assistant' else '<|USER_TOKEN|>') }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|END_OF_TURN_TOKEN|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}"
)
TINY_SIGLIP = dict(model_type="siglip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, vision_use_head=False)


def _cohere2_text(tok) -> dict:
    """A tiny Cohere2 LM (sliding-window layers, then a global one) for the Cohere VLMs."""
    return dict(model_type="cohere2", vocab_size=len(tok), **TINY_TEXT, head_dim=16, sliding_window=8,
                layer_types=["sliding_attention", "full_attention"], bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)


@tiny_builder("aya_vision")
def build_aya_vision(out: Path) -> None:
    """Aya Vision: SigLIP (32 px, patch 8) + pixel-shuffle (2) adapter -> 4 ``<|IMG_PATCH|>`` per
    image + Cohere2 LM; the processor writes ``<|START_OF_IMG|>TILE_GLOBAL`` + patches +
    ``<|END_OF_IMG|>``; Aya's ``<|START_OF_TURN_TOKEN|>`` template."""
    from transformers import (AyaVisionConfig, AyaVisionForConditionalGeneration, AyaVisionProcessor,
                              GotOcr2ImageProcessor)

    tok = special_tokenizer(AYA_SPECIALS, bos="<BOS_TOKEN>", eos="<|END_OF_TURN_TOKEN|>", pad="<PAD>",
                            extra={"image_token": "<image>"})
    config = AyaVisionConfig(vision_config=TINY_SIGLIP, text_config=_cohere2_text(tok), downsample_factor=2,
                             image_token_index=tok.convert_tokens_to_ids("<|IMG_PATCH|>"),
                             vision_feature_select_strategy="full", tie_word_embeddings=False)
    model = AyaVisionForConditionalGeneration(config).eval()
    image_processor = GotOcr2ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, crop_to_patches=False)
    processor = AyaVisionProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH_SIZE,
                                   img_size=IMAGE_SIZE, downsample_factor=2, chat_template=AYA_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("cohere2_vision")
def build_cohere2_vision(out: Path) -> None:
    """Command A Vision: SigLIP (32 px tile, patch 8) + pixel-shuffle (2) SwiGLU adapter -> 2x2
    ``<|IMG_PATCH|>`` + ``<|IMG_LINE_BREAK|>`` per tile between ``<|START_OF_IMG|>`` /
    ``<|END_OF_IMG|>``, Cohere2 LM; Aya's turn template with ``<|IMG_PATCH|>`` as the placeholder."""
    from transformers import (Cohere2VisionConfig, Cohere2VisionForConditionalGeneration,
                              Cohere2VisionImageProcessor, Cohere2VisionProcessor)

    tok = special_tokenizer(AYA_SPECIALS, bos="<BOS_TOKEN>", eos="<|END_OF_TURN_TOKEN|>", pad="<PAD>",
                            extra={"image_token": "<|IMG_PATCH|>", "boi_token": "<|START_OF_IMG|>",
                                   "eoi_token": "<|END_OF_IMG|>", "img_line_break_token": "<|IMG_LINE_BREAK|>"})
    config = Cohere2VisionConfig(vision_config=TINY_SIGLIP, text_config=_cohere2_text(tok), downsample_factor=2,
                                 alignment_intermediate_size=128, image_token_id=tok.convert_tokens_to_ids("<|IMG_PATCH|>"),
                                 tie_word_embeddings=False)
    model = Cohere2VisionForConditionalGeneration(config).eval()
    image_processor = Cohere2VisionImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, patch_size=2,
                                                  crop_to_patches=False, max_patches=1)
    processor = Cohere2VisionProcessor(image_processor=image_processor, tokenizer=tok,
                                       chat_template=AYA_TEMPLATE.replace("'<image>'", "'<|IMG_PATCH|>'"))
    _save_vlm(model, processor, tok, out)


# ----------------------------------------------------------------------------- DeepSeek-VL / Janus
DEEPSEEK_SPECIALS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<image_placeholder>", "<begin_of_image>",
                     "<end_of_image>", "<pad>")
DEEPSEEK_TEMPLATE = (  # deepseek-vl-chat / Janus-Pro: "<bos>User: <image_placeholder>\n{q}\n\nAssistant:"
    "{{ bos_token }}{% for message in messages %}"
    "{{ ('Assistant: ' if message['role'] == 'assistant' else 'User: ') }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image_placeholder>\\n' }}"
    "{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ (eos_token if message['role'] == 'assistant' else '\\n\\n') }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _deepseek_tokenizer():
    return special_tokenizer(DEEPSEEK_SPECIALS, bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", pad="<pad>",
                             extra={"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>",
                                    "eoi_token": "<end_of_image>"})


def _llama_text(tok) -> dict:
    return dict(model_type="llama", vocab_size=len(tok), **TINY_TEXT, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)


def _deepseek_vl(out: Path, config_cls, model_cls, image_cls, processor_cls, image_kw: dict | None = None,
                 **config) -> None:
    """DeepSeek-VL layout: a tower + aligner in front of a tiny Llama, 16 ``<image_placeholder>``
    per 32 px image, ``User: ... Assistant:`` turns."""
    tok = _deepseek_tokenizer()
    cfg = config_cls(text_config=_llama_text(tok), image_token_id=tok.convert_tokens_to_ids("<image_placeholder>"),
                     tie_word_embeddings=False, **config)
    model = model_cls(cfg).eval()
    image_processor = image_cls(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, min_size=PATCH_SIZE, **(image_kw or {}))
    processor = processor_cls(image_processor=image_processor, tokenizer=tok, chat_template=DEEPSEEK_TEMPLATE,
                              num_image_tokens=(IMAGE_SIZE // PATCH_SIZE) ** 2)
    _save_vlm(model, processor, tok, out)


@tiny_builder("deepseek_vl")
def build_deepseek_vl(out: Path) -> None:
    """DeepSeek-VL: SigLIP (32 px, patch 8: 16 tokens) + MLP aligner + Llama."""
    from transformers import (DeepseekVLConfig, DeepseekVLForConditionalGeneration, DeepseekVLImageProcessor,
                              DeepseekVLProcessor)

    _deepseek_vl(out, DeepseekVLConfig, DeepseekVLForConditionalGeneration, DeepseekVLImageProcessor,
                 DeepseekVLProcessor, vision_config=TINY_SIGLIP)


@tiny_builder("janus")
def build_janus(out: Path) -> None:
    """Janus(-Pro): SigLIP-style tower (32 px, patch 8: 16 tokens) + aligner + Llama, plus the
    image-generation VQ model and head (tiny, unused by understanding); ``<begin_of_image>`` +
    16 ``<image_placeholder>`` + ``<end_of_image>``."""
    from transformers import JanusConfig, JanusForConditionalGeneration, JanusImageProcessor, JanusProcessor

    vision = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=IMAGE_SIZE,
                  patch_size=PATCH_SIZE, mlp_ratio=2.0, projection_dim=64, num_image_tokens=16)
    vq = dict(embed_dim=8, num_embeddings=64, latent_channels=32, base_channels=32, channel_multiplier=[1, 1],
              num_res_blocks=1, num_patches=4, projection_dim=64, image_token_embed_dim=64)
    _deepseek_vl(out, JanusConfig, JanusForConditionalGeneration, JanusImageProcessor, JanusProcessor,
                 vision_config=vision, vq_config=vq)


@tiny_builder("deepseek_vl_hybrid")
def build_deepseek_vl_hybrid(out: Path) -> None:
    """DeepSeek-VL hybrid: DeepSeek-VL plus a SAM high-resolution tower (64 px, patch 8, windowed)
    whose neck features join the SigLIP ones in the aligner."""
    from transformers import (DeepseekVLHybridConfig, DeepseekVLHybridForConditionalGeneration,
                              DeepseekVLHybridImageProcessor, DeepseekVLHybridProcessor)

    sam = dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=2 * IMAGE_SIZE,
               patch_size=PATCH_SIZE, global_attn_indexes=[1], window_size=4, mlp_dim=64)
    _deepseek_vl(out, DeepseekVLHybridConfig, DeepseekVLHybridForConditionalGeneration, DeepseekVLHybridImageProcessor,
                 DeepseekVLHybridProcessor, image_kw={"high_res_size": {"height": 2 * IMAGE_SIZE, "width": 2 * IMAGE_SIZE}},
                 vision_config=TINY_SIGLIP, high_res_vision_config=sam)


# ----------------------------------------------------------------------------- Llama 4
LLAMA4_SPECIALS = ("<|begin_of_text|>", "<|eot|>", "<|header_start|>", "<|header_end|>", "<|finetune_right_pad|>",
                   "<|image_start|>", "<|image_end|>", "<|image|>", "<|patch|>", "<|tile_x_separator|>",
                   "<|tile_y_separator|>", "<|python_start|>", "<|python_end|>")


@tiny_builder("llama4")
def build_llama4(out: Path) -> None:
    """Llama 4: tiled ViT (32 px tiles, patch 8, pixel shuffle 0.5 -> 4 ``<|patch|>`` per tile;
    at most 2 tiles + the global view) + MoE LM (4 experts, top-1, a shared expert; NoPE every
    4th layer, chunked attention); transformers' own Llama 4 chat template."""
    from transformers import Llama4Config, Llama4ForConditionalGeneration, Llama4ImageProcessor, Llama4Processor
    from transformers.models.llama4.processing_llama4 import chat_template

    tok = special_tokenizer(LLAMA4_SPECIALS, bos="<|begin_of_text|>", eos="<|eot|>", pad="<|finetune_right_pad|>")
    vision = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,  # 256: shuffle MLP in
                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, vision_output_dim=64, projector_input_dim=64,
                  projector_output_dim=64, pixel_shuffle_ratio=0.5, rope_parameters={"rope_type": "default",
                                                                                     "rope_theta": 10000.0})
    text = dict(vocab_size=len(tok), **{k: v for k, v in TINY_TEXT.items()}, intermediate_size_mlp=128, head_dim=16,
                num_local_experts=4, num_experts_per_tok=1, interleave_moe_layer_step=1, attention_chunk_size=8192,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    ids = {t: tok.convert_tokens_to_ids(t) for t in LLAMA4_SPECIALS}
    config = Llama4Config(vision_config=vision, text_config=text, boi_token_index=ids["<|image_start|>"],
                          eoi_token_index=ids["<|image_end|>"], image_token_index=ids["<|patch|>"],
                          tie_word_embeddings=False)
    model = Llama4ForConditionalGeneration(config).eval()
    image_processor = Llama4ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, max_patches=2)
    processor = Llama4Processor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH_SIZE,
                                pixel_shuffle_ratio=0.5, chat_template=chat_template)
    _save_vlm(model, processor, tok, out)


# ----------------------------------------------------------------------------- Gemma 4
GEMMA4_SPECIALS = ("<pad>", "<eos>", "<bos>", "<|turn>", "<turn|>", "<|image>", "<image|>", "<|image|>",
                   "<|audio>", "<audio|>", "<|audio|>", "<|video|>")
GEMMA4_TEMPLATE = (  # Gemma 4 prompt format: "<bos><|turn>user\n<|image|>{q}<turn|>\n<|turn>model\n"
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<|image|>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] | trim }}{% endfor %}"
    "{% endif %}{{ '<turn|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|turn>model\\n' }}{% endif %}"
)


@tiny_builder("gemma4")
def build_gemma4(out: Path) -> None:
    """Gemma 4: ViT (patch 4, 2-D RoPE, 3x3 pooling: 70 soft tokens per image, the smallest
    budget) + Gemma 4 LM (sliding-window and global layers, per-layer inputs), the audio
    feature extractor and video processor its processor requires; ``<|turn>`` template."""
    from transformers import (Gemma4AudioFeatureExtractor, Gemma4Config, Gemma4ForConditionalGeneration,
                              Gemma4ImageProcessor, Gemma4Processor, Gemma4VideoProcessor)

    tok = special_tokenizer(GEMMA4_SPECIALS, bos="<bos>", eos="<turn|>", pad="<pad>",
                            extra={"image_token": "<|image|>", "boi_token": "<|image>", "eoi_token": "<image|>",
                                   "audio_token": "<|audio|>", "boa_token": "<|audio>", "eoa_token": "<audio|>"})
    ids = {t: tok.convert_tokens_to_ids(t) for t in GEMMA4_SPECIALS}
    text = dict(vocab_size=len(tok), **TINY_TEXT, head_dim=16, global_head_dim=16, sliding_window=8,
                layer_types=["sliding_attention", "full_attention"], vocab_size_per_layer_input=len(tok),
                hidden_size_per_layer_input=16, bos_token_id=ids["<bos>"], eos_token_id=ids["<turn|>"],
                pad_token_id=ids["<pad>"], tie_word_embeddings=False)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=4, head_dim=16, patch_size=4, pooling_kernel_size=3, position_embedding_size=256)
    config = Gemma4Config(text_config=text, vision_config=vision, boi_token_id=ids["<|image>"],
                          eoi_token_id=ids["<image|>"], image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
                          boa_token_id=ids["<|audio>"], eoa_token_index=ids["<audio|>"], audio_token_id=ids["<|audio|>"],
                          tie_word_embeddings=False)
    model = Gemma4ForConditionalGeneration(config).eval()
    image_processor = Gemma4ImageProcessor(patch_size=4, pooling_kernel_size=3, max_soft_tokens=70)
    video_processor = Gemma4VideoProcessor(patch_size=4, pooling_kernel_size=3, max_soft_tokens=70)
    processor = Gemma4Processor(feature_extractor=Gemma4AudioFeatureExtractor(), image_processor=image_processor,
                                tokenizer=tok, video_processor=video_processor, chat_template=GEMMA4_TEMPLATE,
                                image_seq_length=70)
    _save_vlm(model, processor, tok, out)


# ----------------------------------------------------------------------------- Mistral Large 4
@tiny_builder("mistral_large4")
def build_mistral_large4(out: Path) -> None:
    """Mistral Large 4: the Pixtral shape of Mistral3 with Mistral Large 4's LM: multi-head latent
    attention, a sparse-attention indexer and MoE (4 routed experts, top-2, one shared; layer 0
    dense)."""
    from transformers.models.mistral_large4 import MistralLarge4Config, MistralLarge4ForConditionalGeneration

    from .families_decoder import _pixtral_vlm

    _pixtral_vlm(out, MistralLarge4Config, MistralLarge4ForConditionalGeneration,
                 **{**TINY_TEXT, "num_key_value_heads": 4}, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
                 v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
                 first_k_dense_replace=1, index_n_heads=2, index_head_dim=16, index_topk=2048)


# ----------------------------------------------------------------------------- Kimi K2.5
KIMI_SPECIALS = ("[BOS]", "[EOS]", "[PAD]", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>", "<|im_end|>",
                 "<|media_begin|>", "<|media_content|>", "<|media_end|>", "<|media_pad|>",
                 "<|kimi_k25_video_placeholder|>")
KIMI_TEMPLATE = (  # Kimi-K2.5: "<|im_user|>user<|im_middle|><|media_begin|>image<|media_content|><|media_pad|><|media_end|>{q}<|im_end|><|im_assistant|>assistant<|im_middle|>"
    "{% for message in messages %}"
    "{{ ('<|im_assistant|>assistant' if message['role'] == 'assistant' else '<|im_user|>user') + '<|im_middle|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<|media_begin|>image<|media_content|><|media_pad|><|media_end|>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_assistant|>assistant<|im_middle|>' }}{% endif %}"
)
TINY_MLA_MOE = dict(kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, n_routed_experts=4,
                    num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32, first_k_dense_replace=1,
                    n_group=1, topk_group=1)  # DeepSeek-V3-style latent attention + MoE, tiny


@tiny_builder("kimi_k25")
def build_kimi_k25(out: Path) -> None:
    """Kimi K2.5: MoonViT (patch 8, 2-D RoPE, 2x2 merge: 4 ``<|media_pad|>`` per 32 px image) +
    MLP projector + DeepSeek-V3 LM (latent attention, MoE); Kimi's ``<|im_user|>`` template."""
    from transformers.models.kimi_k25 import (Kimi_K25Config, Kimi_K25ForConditionalGeneration,
                                              Kimi_K25ImageProcessor, Kimi_K25Processor, Kimi_K25VideoProcessor)

    tok = special_tokenizer(KIMI_SPECIALS, bos="[BOS]", eos="<|im_end|>", pad="[PAD]")
    ids = {t: tok.convert_tokens_to_ids(t) for t in KIMI_SPECIALS}
    text = dict(model_type="deepseek_v3", vocab_size=len(tok), **{**TINY_TEXT, "num_key_value_heads": 4},
                head_dim=8, **TINY_MLA_MOE, bos_token_id=ids["[BOS]"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["[PAD]"], tie_word_embeddings=False)
    vision = dict(patch_size=PATCH_SIZE, pos_emb_height=8, pos_emb_width=8, num_attention_heads=4, num_hidden_layers=2,
                  hidden_size=64, intermediate_size=128, merge_kernel_size=[2, 2])
    config = Kimi_K25Config(text_config=text, vision_config=vision, projection_hidden_size=64,
                            image_token_id=ids["<|media_pad|>"], video_token_id=ids["<|kimi_k25_video_placeholder|>"],
                            vision_start_token_id=ids["<|media_begin|>"], vision_end_token_id=ids["<|media_end|>"],
                            tie_word_embeddings=False)
    model = Kimi_K25ForConditionalGeneration(config).eval()
    image_processor = Kimi_K25ImageProcessor(patch_size=PATCH_SIZE, merge_size=2, max_patches=64,
                                             size={"max_height": 2 * IMAGE_SIZE, "max_width": 2 * IMAGE_SIZE})
    processor = Kimi_K25Processor(image_processor=image_processor, tokenizer=tok,
                                  video_processor=Kimi_K25VideoProcessor(patch_size=PATCH_SIZE, merge_size=2),
                                  chat_template=KIMI_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("glm_ocr")
def build_glm_ocr(out: Path) -> None:
    """GLM-OCR: the GLM-4.xV shape (it is chat-templated like GLM-4.1V) under GLM-OCR's classes."""
    from transformers import Glm4vImageProcessor, Glm4vProcessor, Glm4vVideoProcessor
    from transformers.models.glm_ocr import GlmOcrConfig, GlmOcrForConditionalGeneration

    _glm_vl(out, GlmOcrConfig, GlmOcrForConditionalGeneration, Glm4vProcessor, Glm4vImageProcessor,
            Glm4vVideoProcessor)


@tiny_builder("video_llava")
def build_video_llava(out: Path) -> None:
    """Video-LLaVA on single images: CLIP image tower (and its video tower) + projector + Llama,
    ``VideoLlavaProcessor``, LLaVA-1.5's ``USER: <image>\\n{q} ASSISTANT:`` template."""
    from transformers import (VideoLlavaConfig, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor,
                              VideoLlavaProcessor, VideoLlavaVideoProcessor)

    tok = llama_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<video>"]})
    config = VideoLlavaConfig(vision_config=_vision_config(), text_config=_llama_config(tok),
                              image_token_index=tok.convert_tokens_to_ids("<image>"),
                              video_token_index=tok.convert_tokens_to_ids("<video>"),
                              image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2 + 1, video_seq_length=8 * 17,
                              vision_feature_select_strategy="default", vision_feature_layer=-2)
    model = VideoLlavaForConditionalGeneration(config).eval()
    image_processor = VideoLlavaImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                               crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    video_processor = VideoLlavaVideoProcessor(size={"shortest_edge": IMAGE_SIZE},
                                               crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = VideoLlavaProcessor(image_processor=image_processor, video_processor=video_processor, tokenizer=tok,
                                    patch_size=PATCH_SIZE,
                                    vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                    chat_template=LLAVA_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("hyperclovax_vision_v2")
def build_hyperclovax_vision_v2(out: Path) -> None:
    """HyperCLOVA X SEED Vision v2: Qwen2.5-VL windowed ViT + projector + HyperCLOVA X LM (muP-style
    multipliers), its Qwen-style processor and ChatML."""
    from transformers.models.hyperclovax_vision_v2 import (HyperCLOVAXVisionV2Config,
                                                           HyperCLOVAXVisionV2ForConditionalGeneration,
                                                           HyperCLOVAXVisionV2Processor)

    _qwen_processor_vl(out, HyperCLOVAXVisionV2Config, HyperCLOVAXVisionV2ForConditionalGeneration,
                       text=dict(model_type="hyperclovax"),
                       vision=dict(model_type="qwen2_5_vl_vision", temporal_patch_size=2, window_size=32,
                                   fullatt_block_indexes=[1]),
                       processor_cls=HyperCLOVAXVisionV2Processor)


@tiny_builder("qianfan_ocr")
def build_qianfan_ocr(out: Path) -> None:
    """Qianfan-OCR (chat-templated, InternVL layout): InternViT-style tower (32 px, patch 8),
    pixel shuffle -> 4 ``<IMG_CONTEXT>`` between ``<img>`` / ``</img>`` + Qwen3 LM; ChatML whose
    ``<image>`` the processor expands."""
    from transformers import GotOcr2ImageProcessor
    from transformers.models.qianfan_ocr import QianfanOCRConfig, QianfanOCRForConditionalGeneration, QianfanOCRProcessor

    from .families_decoder import INTERNVL_SPECIALS

    tok = special_tokenizer(INTERNVL_SPECIALS + ("<image>",), bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                            extra={"start_image_token": "<img>", "end_image_token": "</img>",
                                   "context_image_token": "<IMG_CONTEXT>"})
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=[IMAGE_SIZE, IMAGE_SIZE], patch_size=[PATCH_SIZE, PATCH_SIZE], drop_path_rate=0.0)
    text = dict(model_type="qwen3", vocab_size=len(tok), **TINY_TEXT, head_dim=16, bos_token_id=None,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    config = QianfanOCRConfig(vision_config=vision, text_config=text, image_seq_length=4,
                              image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), tie_word_embeddings=False)
    model = QianfanOCRForConditionalGeneration(config).eval()
    image_processor = GotOcr2ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, crop_to_patches=False)
    processor = QianfanOCRProcessor(image_processor=image_processor, tokenizer=tok, image_seq_length=4,
                                    chat_template=chatml_template("<image>\\n", system=None))
    _save_vlm(model, processor, tok, out)


@tiny_builder("video_llama_3")
def build_video_llama_3(out: Path) -> None:
    """VideoLLaMA 3 on images: SigLIP-style ViT with 2-D RoPE (patch 8) + MLP projector with 2x2
    merge -> 4 ``<|image_pad|>`` per 32 px image, Qwen2 LM; ChatML."""
    from transformers import (VideoLlama3Config, VideoLlama3ForConditionalGeneration, VideoLlama3ImageProcessor,
                              VideoLlama3Processor, VideoLlama3VideoProcessor)

    from . import qwen2_tokenizer
    from .families_decoder import _qwen_ids

    tok = qwen2_tokenizer()
    ids = _qwen_ids(tok)
    text = dict(model_type="qwen2", vocab_size=len(tok), **TINY_TEXT, bos_token_id=None, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, patch_size=PATCH_SIZE)
    config = VideoLlama3Config(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                               video_token_id=ids["<|video_pad|>"], tie_word_embeddings=False)
    model = VideoLlama3ForConditionalGeneration(config).eval()
    image_processor = VideoLlama3ImageProcessor(patch_size=PATCH_SIZE, merge_size=2,
                                                size={"shortest_edge": IMAGE_SIZE * IMAGE_SIZE,
                                                      "longest_edge": 4 * IMAGE_SIZE * IMAGE_SIZE})
    processor = VideoLlama3Processor(image_processor=image_processor, tokenizer=tok,
                                     video_processor=VideoLlama3VideoProcessor(patch_size=PATCH_SIZE),
                                     chat_template=chatml_template("<|image_pad|>\\n", system=None))
    _save_vlm(model, processor, tok, out)


@tiny_builder("lighton_ocr")
def build_lighton_ocr(out: Path) -> None:
    """LightOnOCR (chat-templated): Pixtral tower (patch 8, any size up to 64 px) + 2x2 merger +
    Qwen3 LM; ``<|image_pad|>`` per merged patch; ChatML."""
    from transformers import PixtralImageProcessor
    from transformers.models.lighton_ocr import LightOnOcrConfig, LightOnOcrForConditionalGeneration, LightOnOcrProcessor

    from . import QWEN_SPECIALS

    tok = special_tokenizer(QWEN_SPECIALS + ("<|vision_pad|>", "<|image_break|>", "<|image_end|>"), bos=None,
                            eos="<|im_end|>", pad="<|endoftext|>",
                            extra={"image_token": "<|image_pad|>", "image_break_token": "<|image_break|>",
                                   "image_end_token": "<|image_end|>"})
    vision = dict(model_type="pixtral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, image_size=2 * IMAGE_SIZE, patch_size=PATCH_SIZE, head_dim=16)
    text = dict(model_type="qwen3", vocab_size=len(tok), **TINY_TEXT, head_dim=16, bos_token_id=None,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    config = LightOnOcrConfig(vision_config=vision, text_config=text, spatial_merge_size=2,
                              image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"), tie_word_embeddings=False)
    model = LightOnOcrForConditionalGeneration(config).eval()
    image_processor = PixtralImageProcessor(size={"longest_edge": 2 * IMAGE_SIZE}, patch_size=PATCH_SIZE)
    processor = LightOnOcrProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH_SIZE,
                                    spatial_merge_size=2, chat_template=QWEN3_TEMPLATE.replace(
                                        "<|vision_start|><|image_pad|><|vision_end|>", "<|image_pad|>"))
    _save_vlm(model, processor, tok, out)


ARIA_SPECIALS = ("<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<fim_prefix>", "<fim_suffix>", "<|img|>")
ARIA_TEMPLATE = (  # Aria: "<|im_start|>user\n<fim_prefix><|img|><fim_suffix>{q}<|im_end|>\n<|im_start|>assistant\n"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<fim_prefix><|img|><fim_suffix>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@tiny_builder("aria")
def build_aria(out: Path) -> None:
    """Aria: Idefics3-style tower (images padded to 490 px, the smallest size Aria's image
    processor takes; patch 14: 35x35 patches) + cross-attention projector with 128 learned
    queries -> 128 ``<|img|>`` per image + MoE LM (4 experts, top-2, one shared); Aria's ChatML
    with ``<fim_prefix><|img|><fim_suffix>``."""
    from transformers import AriaConfig, AriaForConditionalGeneration, AriaImageProcessor, AriaProcessor

    tok = special_tokenizer(ARIA_SPECIALS, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                            extra={"image_token": "<|img|>"})
    text = dict(vocab_size=len(tok), **TINY_TEXT, moe_num_experts=4, moe_topk=2, moe_num_shared_experts=1,
                bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=490, patch_size=14)
    config = AriaConfig(vision_config=vision, text_config=text, projector_patch_to_query_dict={35 * 35: 128},
                        image_token_index=tok.convert_tokens_to_ids("<|img|>"), tie_word_embeddings=False)
    model = AriaForConditionalGeneration(config).eval()
    image_processor = AriaImageProcessor(max_image_size=490, min_image_size=336, split_image=False)
    processor = AriaProcessor(image_processor=image_processor, tokenizer=tok, size_conversion={490: 128},
                              chat_template=ARIA_TEMPLATE)
    _save_vlm(model, processor, tok, out)


OVIS_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<ovis_image_atom>", "<ovis_image_start>",
                 "<ovis_image_end>", "<ovis_video_atom>", "<ovis_video_start>", "<ovis_video_end>")


@tiny_builder("ovis2_5")
def build_ovis2_5(out: Path) -> None:
    """Ovis2.5: NaViT-style ViT (patch 8, 2x2 merge: 4 image atoms per 32 px image) whose
    outputs become probabilities over a visual vocabulary (64 entries here) embedded by a table
    + Qwen3 LM; ChatML with ``<ovis_image_start>`` + atoms + ``<ovis_image_end>``."""
    from transformers.models.ovis2_5 import (Ovis2_5Config, Ovis2_5ForConditionalGeneration, Ovis2_5ImageProcessor,
                                             Ovis2_5Processor, Ovis2_5VideoProcessor)

    tok = special_tokenizer(OVIS_SPECIALS, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                            extra={"image_token": "<ovis_image_atom>", "image_start_token": "<ovis_image_start>",
                                   "image_end_token": "<ovis_image_end>", "video_token": "<ovis_video_atom>",
                                   "video_start_token": "<ovis_video_start>", "video_end_token": "<ovis_video_end>"})
    ids = {t: tok.convert_tokens_to_ids(t) for t in OVIS_SPECIALS}
    text = dict(model_type="qwen3", vocab_size=len(tok), **TINY_TEXT, head_dim=16, bos_token_id=None,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  patch_size=PATCH_SIZE, spatial_merge_size=2, image_size=IMAGE_SIZE, window_size=32, vocab_size=64,
                  num_visual_indicator_tokens=4, max_position_embeddings=64)
    config = Ovis2_5Config(text_config=text, vision_config=vision, image_token_id=ids["<ovis_image_atom>"],
                           video_token_id=ids["<ovis_video_atom>"], image_start_token_id=ids["<ovis_image_start>"],
                           image_end_token_id=ids["<ovis_image_end>"], video_start_token_id=ids["<ovis_video_start>"],
                           video_end_token_id=ids["<ovis_video_end>"], tie_word_embeddings=False)
    model = Ovis2_5ForConditionalGeneration(config).eval()
    image_processor = Ovis2_5ImageProcessor(patch_size=PATCH_SIZE, merge_size=2,
                                            size={"shortest_edge": IMAGE_SIZE * IMAGE_SIZE,
                                                  "longest_edge": 4 * IMAGE_SIZE * IMAGE_SIZE})
    processor = Ovis2_5Processor(image_processor=image_processor, tokenizer=tok,
                                 video_processor=Ovis2_5VideoProcessor(patch_size=PATCH_SIZE, merge_size=2),
                                 chat_template=chatml_template("<ovis_image_atom>\\n", system=None))
    _save_vlm(model, processor, tok, out)


@tiny_builder("cosmos3_edge")
def build_cosmos3_edge(out: Path) -> None:
    """Cosmos3-Edge: SigLIP-2-style NaViT tower (patch 8, learned 8x8 position grid, 2x2 merge:
    4 ``<|image_pad|>`` per 32 px image) + MLP projector + Mistral-style LM with 3-D M-RoPE;
    ChatML."""
    from transformers import Qwen2VLVideoProcessor
    from transformers.models.cosmos3_edge import (Cosmos3EdgeConfig, Cosmos3EdgeForConditionalGeneration,
                                                  Cosmos3EdgeImageProcessor, Cosmos3EdgeProcessor)

    from . import qwen2_tokenizer
    from .families_decoder import _qwen_ids

    tok = qwen2_tokenizer()
    ids = _qwen_ids(tok)
    text = dict(vocab_size=len(tok), **TINY_TEXT, head_dim=16, bos_token_id=None, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  patch_size=PATCH_SIZE, num_patches=64, spatial_merge_size=2)
    config = Cosmos3EdgeConfig(text_config=text, vision_config=vision, projector_hidden_size=128,
                               image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                               vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                               tie_word_embeddings=False)
    model = Cosmos3EdgeForConditionalGeneration(config).eval()
    image_processor = Cosmos3EdgeImageProcessor(patch_size=PATCH_SIZE, merge_size=2,
                                                size={"shortest_edge": IMAGE_SIZE * IMAGE_SIZE,
                                                      "longest_edge": 4 * IMAGE_SIZE * IMAGE_SIZE})
    processor = Cosmos3EdgeProcessor(image_processor=image_processor, tokenizer=tok,
                                     video_processor=Qwen2VLVideoProcessor(patch_size=PATCH_SIZE, merge_size=2),
                                     chat_template=QWEN3_TEMPLATE)
    _save_vlm(model, processor, tok, out)


PADDLE_SPECIALS = ("<unk>", "<|begin_of_sentence|>", "<|end_of_sentence|>", "<|IMAGE_START|>", "<|IMAGE_END|>",
                   "<|IMAGE_PLACEHOLDER|>", "<|VIDEO_PLACEHOLDER|>", "<pad>")
PADDLE_TEMPLATE = (  # PaddleOCR-VL-style: "<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>{q}\nAssistant:"
    "{{ bos_token }}{% for message in messages %}"
    "{{ ('Assistant: ' if message['role'] == 'assistant' else 'User: ') }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ (eos_token if message['role'] == 'assistant' else '\\n') }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


@tiny_builder("paddleocr_vl")
def build_paddleocr_vl(out: Path) -> None:
    """PaddleOCR-VL (chat-templated): NaViT tower (patch 8, 2-D RoPE, 2x2 merge: 4
    ``<|IMAGE_PLACEHOLDER|>`` per 32 px image) + projector + ERNIE-4.5-style LM with 3-D M-RoPE;
    ``User: ... Assistant:`` turns."""
    from transformers.models.paddleocr_vl import (PaddleOCRVLConfig, PaddleOCRVLForConditionalGeneration,
                                                  PaddleOCRVLImageProcessor, PaddleOCRVLProcessor)

    tok = special_tokenizer(PADDLE_SPECIALS, bos="<|begin_of_sentence|>", eos="<|end_of_sentence|>", pad="<pad>",
                            extra={"image_token": "<|IMAGE_PLACEHOLDER|>"})
    ids = {t: tok.convert_tokens_to_ids(t) for t in PADDLE_SPECIALS}
    text = dict(vocab_size=len(tok), **TINY_TEXT, head_dim=16, bos_token_id=ids["<|begin_of_sentence|>"],
                eos_token_id=ids["<|end_of_sentence|>"], pad_token_id=ids["<pad>"], tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, spatial_merge_size=2)
    config = PaddleOCRVLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|IMAGE_PLACEHOLDER|>"],
                               video_token_id=ids["<|VIDEO_PLACEHOLDER|>"], vision_start_token_id=ids["<|IMAGE_START|>"],
                               vision_end_token_id=ids["<|IMAGE_END|>"], tie_word_embeddings=False)
    model = PaddleOCRVLForConditionalGeneration(config).eval()
    image_processor = PaddleOCRVLImageProcessor(patch_size=PATCH_SIZE, merge_size=2,
                                                size={"shortest_edge": IMAGE_SIZE * IMAGE_SIZE,
                                                      "longest_edge": 4 * IMAGE_SIZE * IMAGE_SIZE})
    processor = PaddleOCRVLProcessor(image_processor=image_processor, tokenizer=tok, chat_template=PADDLE_TEMPLATE)
    _save_vlm(model, processor, tok, out)


OVIS2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<IMG_ATOM>", "<IMG_START>", "<IMG_GRID>",
                  "<IMG_COL>", "<IMG_ROW>", "<IMG_END>")


@tiny_builder("ovis2")
def build_ovis2(out: Path) -> None:
    """Ovis2: ViT (32 px, patch 8: 16 ``<IMG_ATOM>`` per image, no crops) whose outputs become
    probabilities over a visual vocabulary (64 entries) embedded by a table, indicator tokens
    ``<IMG_START>`` / ``<IMG_GRID>`` / ``<IMG_END>`` around them; Qwen2 LM, ChatML with ``<image>\\n``."""
    from transformers import Ovis2Config, Ovis2ForConditionalGeneration, Ovis2ImageProcessor, Ovis2Processor

    tok = special_tokenizer(OVIS2_SPECIALS, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                            extra={"image_token": "<image>"})
    ids = {t: tok.convert_tokens_to_ids(t) for t in OVIS2_SPECIALS}
    text = dict(model_type="qwen2", vocab_size=len(tok), **TINY_TEXT, bos_token_id=None,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, vocab_size=64, num_visual_indicator_tokens=5)
    indicators = [ids[t] for t in ("<IMG_START>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>")]
    config = Ovis2Config(text_config=text, vision_config=vision, image_token_id=ids["<IMG_ATOM>"],
                         visual_indicator_token_ids=indicators, vocab_size=len(tok), hidden_size=64,
                         tie_word_embeddings=False)
    model = Ovis2ForConditionalGeneration(config).eval()
    image_processor = Ovis2ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, crop_to_patches=False)
    processor = Ovis2Processor(image_processor=image_processor, tokenizer=tok,
                               image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
                               chat_template=chatml_template("<image>\\n", system=None))
    _save_vlm(model, processor, tok, out)


@tiny_builder("glm5_next")
def build_glm5_next(out: Path) -> None:
    """GLM-5-Next: the GLM-4.xV shape with GLM-5-Next's LM: a Kimi-delta linear-attention layer and
    an indexed (DSA, NoPE latent) attention layer, a dense and a MoE MLP (4 experts, top 2, shared),
    2 hyper-connection streams; the indexer's top-k (16 pools of 4 tokens) above every prompt."""
    from transformers.models.glm5_next import (Glm5NextConfig, Glm5NextForConditionalGeneration,
                                               Glm5NextImageProcessor, Glm5NextProcessor, Glm5NextVideoProcessor)

    _glm_vl(out, Glm5NextConfig, Glm5NextForConditionalGeneration, Glm5NextProcessor, Glm5NextImageProcessor,
            Glm5NextVideoProcessor, **{**TINY_MLA_MOE, "num_key_value_heads": 4, "q_lora_rank": 32,
                                       "qk_rope_head_dim": 0, "qk_nope_head_dim": 16},
            layer_types=["linear_attention", "indexed_attention"], mlp_layer_types=["dense", "sparse"], index_topk=64,
            index_kpool=4, index_head_dim=16, index_n_heads=2, linear_head_dim=16, linear_num_heads=4, hc_mult=2)


MUSE_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|patch|>", "<|image_start|>", "<|image_end|>",
                 "<|video|>", "<|vid_frame_separator|>", "<|vid_start|>", "<|vid_end|>")


def _muse(out: Path, config_cls, model_cls, processor_cls, text: dict | None = None, processor: dict | None = None,
          **config) -> None:
    """A Muse VLM: ViT with 2-D RoPE (patch 8, 2x2 merge: 4 ``<|patch|>`` per 32 px image inside
    ``<|image_start|>...<|image_end|>``) + MLP projector, LM of a sliding-window and a global layer
    with sandwich norms and soft-capped logits (+ ``text``), MuseGlimmer's image / video processors;
    ChatML turns (the tiny tokenizer's)."""
    from transformers.models.muse_glimmer import MuseGlimmerImageProcessor, MuseGlimmerVideoProcessor

    tok = special_tokenizer(MUSE_SPECIALS, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                            extra={"image_token": "<|patch|>"})
    text = dict(vocab_size=len(tok), **TINY_TEXT, head_dim=16, bos_token_id=None, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                **(text or {}))
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  patch_size=QWEN_PATCH, pos_emb_height=4, pos_emb_width=4, max_position_embeddings=16, merge_size=2)
    cfg = config_cls(text_config=text, vision_config=vision, out_hidden_size=4 * 64, projector_hidden_size=64,
                     image_token_id=tok.convert_tokens_to_ids("<|patch|>"),
                     video_token_id=tok.convert_tokens_to_ids("<|video|>"), tie_word_embeddings=False, **config)
    model = model_cls(cfg).eval()
    sizes = dict(patch_size=QWEN_PATCH, merge_size=2)
    proc = processor_cls(image_processor=MuseGlimmerImageProcessor(**sizes, max_image_tokens=16),
                         video_processor=MuseGlimmerVideoProcessor(**sizes), tokenizer=tok,
                         chat_template=chatml_template("<|patch|>", system=None), **(processor or {}))
    _save_vlm(model, proc, tok, out)


@tiny_builder("muse_glimmer")
def build_muse_glimmer(out: Path) -> None:
    """Muse Glimmer: the shared Muse shape (``_muse``)."""
    from transformers.models.muse_glimmer import (MuseGlimmerConfig, MuseGlimmerForConditionalGeneration,
                                                  MuseGlimmerProcessor)

    _muse(out, MuseGlimmerConfig, MuseGlimmerForConditionalGeneration, MuseGlimmerProcessor)


@tiny_builder("muse_spark")
def build_muse_spark(out: Path) -> None:
    """Muse Spark: the Muse shape with a MoE LM (4 experts, top 2; layer 0 dense) and an audio tower
    (4 tiny stages) the image checks never feed."""
    from transformers.models.muse_spark import (MuseSparkConfig, MuseSparkFeatureExtractor,
                                                MuseSparkForConditionalGeneration, MuseSparkProcessor)

    _muse(out, MuseSparkConfig, MuseSparkForConditionalGeneration, MuseSparkProcessor,
          text=dict(moe_intermediate_size=32, num_local_experts=4, num_experts_per_tok=2, moe_hidden_size=64,
                    mlp_layer_types=["dense", "sparse"]),
          processor=dict(feature_extractor=MuseSparkFeatureExtractor()),
          audio_config=dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], out_hidden_size=64))


@tiny_builder("hy_v4_vl")
def build_hy_v4_vl(out: Path) -> None:
    """HY-V4-VL: NaViT-style ViT (patch 8, 2x2 merge, a newline token closing each row of merged
    tokens) + an LM of latent attention with a sparse-attention indexer (its top-k above every
    prompt), MoE (4 experts, top 2, shared; layer 0 dense), 2 hyper-connection streams and 3-D
    M-RoPE on the rotary part of the head; ChatML."""
    from transformers.models.hy_v4_vl import (HYV4VLConfig, HYV4VLForConditionalGeneration, HYV4VLImageProcessor,
                                              HYV4VLProcessor, HYV4VLVideoProcessor)

    from . import qwen2_tokenizer
    from .families_decoder import _qwen_ids

    tok = qwen2_tokenizer()
    ids = _qwen_ids(tok)
    text = dict(vocab_size=len(tok), **{**TINY_TEXT, **TINY_MLA_MOE, "num_key_value_heads": 4}, q_lora_rank=32,
                bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, index_topk=64,
                index_head_dim=16, index_n_heads=2, hc_mult=2,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]})
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  out_hidden_size=64, patch_size=QWEN_PATCH, spatial_merge_size=2, max_image_size=IMAGE_SIZE * 4)
    config = HYV4VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                          video_token_id=ids["<|video_pad|>"], tie_word_embeddings=False)
    model = HYV4VLForConditionalGeneration(config).eval()
    sizes = dict(patch_size=QWEN_PATCH, merge_size=2)
    image_processor = HYV4VLImageProcessor(**sizes, size={"shortest_edge": IMAGE_SIZE * IMAGE_SIZE,
                                                          "longest_edge": 4 * IMAGE_SIZE * IMAGE_SIZE})
    processor = HYV4VLProcessor(image_processor=image_processor, tokenizer=tok,
                                video_processor=HYV4VLVideoProcessor(**sizes), chat_template=QWEN3_TEMPLATE)
    _save_vlm(model, processor, tok, out)


def _idefics_parts(**tokens):
    """The Idefics3 layout's tokenizer (``<image>`` + ``tokens`` named on it) with tiny LM and
    SigLIP-style tower config dicts (32 px, patch 8): Granite-Docling, Idefics2."""
    from .families_decoder import IDEFICS3_SPECIALS

    tok = special_tokenizer(IDEFICS3_SPECIALS, bos="<|begin_of_text|>", eos="<end_of_utterance>", pad="<pad>",
                            extra={"image_token": "<image>", **tokens})
    text = dict(vocab_size=len(tok), **TINY_TEXT, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    return tok, text, vision


@tiny_builder("granite_docling")
def build_granite_docling(out: Path) -> None:
    """Granite-Docling: SigLIP-style tower (32 px, patch 8), pixel-shuffle connector (scale 2: 4
    ``<image>`` per image, one tile, no fine route) + Granite LM (embedding / residual / attention
    multipliers, scaled logits); Idefics3's ``User:<image>{q}<end_of_utterance>\\nAssistant:`` layout."""
    from transformers.models.granite_docling import (GraniteDoclingConfig, GraniteDoclingForConditionalGeneration,
                                                     GraniteDoclingImageProcessor, GraniteDoclingProcessor)

    from .families_decoder import IDEFICS3_TEMPLATE

    tok, text, vision = _idefics_parts()
    vision.update(out_hidden_size=64, scale_factor=2, use_fine_route=False)
    config = GraniteDoclingConfig(text_config=text, vision_config=vision, pad_token_id=tok.pad_token_id,
                                  image_token_id=tok.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    model = GraniteDoclingForConditionalGeneration(config).eval()
    image_processor = GraniteDoclingImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                                   crop_to_patches=False)
    processor = GraniteDoclingProcessor(image_processor=image_processor, tokenizer=tok, image_seq_len=4,
                                        chat_template=IDEFICS3_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("idefics2")
def build_idefics2(out: Path) -> None:
    """Idefics2: SigLIP-style tower (32 px, patch 8) + perceiver resampler (4 latents: 4 ``<image>``
    per image, no splitting) + Mistral-style LM; Idefics3's ``User:<image>{q}<end_of_utterance>\\nAssistant:``
    layout (the processor writes ``<fake_token_around_image>`` + 4 x ``<image>`` +
    ``<fake_token_around_image>`` and a space before the text that follows)."""
    from transformers import Idefics2Config, Idefics2ForConditionalGeneration, Idefics2ImageProcessor, Idefics2Processor

    from .families_decoder import IDEFICS3_TEMPLATE

    tok, text, vision = _idefics_parts(image_boundary_token="<fake_token_around_image>")
    text["model_type"] = "mistral"
    perceiver = dict(hidden_size=64, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=4,
                     resampler_head_dim=16, num_key_value_heads=2)
    config = Idefics2Config(vision_config=vision, perceiver_config=perceiver, text_config=text,
                            image_token_id=tok.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    model = Idefics2ForConditionalGeneration(config).eval()
    image_processor = Idefics2ImageProcessor(size={"shortest_edge": IMAGE_SIZE, "longest_edge": IMAGE_SIZE},
                                             do_image_splitting=False)
    processor = Idefics2Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    _save_vlm(model, processor, tok, out)


ERNIE_SPECIALS = PADDLE_SPECIALS + ("<|VIDEO_START|>", "<|VIDEO_END|>")


@tiny_builder("ernie4_5_vl_moe")
def build_ernie4_5_vl_moe(out: Path) -> None:
    """ERNIE-4.5-VL: ViT (patch 8, 2x2 merge: 4 ``<|IMAGE_PLACEHOLDER|>`` per 32 px image) +
    variable-resolution resampler + ERNIE-4.5 MoE LM with 3-D M-RoPE and separate text / vision
    experts (4 each, top 2, one shared; layer 0 dense); PaddleOCR-VL's ``User: ... Assistant:`` turns."""
    from transformers import (Ernie4_5_VLMoeConfig, Ernie4_5_VLMoeForConditionalGeneration,
                              Ernie4_5_VLMoeImageProcessor, Ernie4_5_VLMoeProcessor, Ernie4_5_VLMoeVideoProcessor)

    names = dict(image_token="<|IMAGE_PLACEHOLDER|>", image_start_token="<|IMAGE_START|>",
                 image_end_token="<|IMAGE_END|>", video_token="<|VIDEO_PLACEHOLDER|>",
                 video_start_token="<|VIDEO_START|>", video_end_token="<|VIDEO_END|>")
    tok = special_tokenizer(ERNIE_SPECIALS, bos="<|begin_of_sentence|>", eos="<|end_of_sentence|>", pad="<pad>",
                            extra=names)
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in names.items()}
    text = dict(vocab_size=len(tok), **TINY_TEXT, head_dim=16, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
                moe_intermediate_size=[32, 32], moe_k=2, moe_num_experts=4, moe_num_shared_experts=1,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [3, 3, 2]})
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=PATCH_SIZE,
                  spatial_merge_size=2)
    config = Ernie4_5_VLMoeConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                                  **{f"{k}_id": v for k, v in ids.items()})
    model = Ernie4_5_VLMoeForConditionalGeneration(config).eval()
    sizes = dict(patch_size=PATCH_SIZE, merge_size=2)
    image_processor = Ernie4_5_VLMoeImageProcessor(**sizes, size={"shortest_edge": IMAGE_SIZE * IMAGE_SIZE,
                                                                  "longest_edge": 4 * IMAGE_SIZE * IMAGE_SIZE})
    processor = Ernie4_5_VLMoeProcessor(image_processor=image_processor, tokenizer=tok,
                                        video_processor=Ernie4_5_VLMoeVideoProcessor(**sizes, draw_on_frames=False),
                                        chat_template=PADDLE_TEMPLATE)
    _save_vlm(model, processor, tok, out)
