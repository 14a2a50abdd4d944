"""Tiny random-weight VLMs around the REAL tokenizers (``vlmprobe.testing.realtok``): everything small
except the vocabulary, so tokenization, chat templates and special tokens are the checkpoints'.

==================  ========================================================================
``llava-real``      ``LlavaForConditionalGeneration`` shaped like llava-hf/llava-1.5-7b-hf's
                    text side: LLaMA-2 SentencePiece vocabulary + ``<image>`` = 32000 and
                    ``<pad>`` = 32001, embedding tables padded to 32,064 rows, BOS prepended,
                    left padding, llava-hf's chat template
                    (``USER: <image>\\n{q} ASSISTANT:``; assistant turns ``{answer} ``);
                    a 2-layer, 64-wide Llama and the same tiny CLIP tower as ``testing``.
``qwen2-vl-real``   ``Qwen2VLForConditionalGeneration``: Qwen2's byte-level BPE (151,936 ids,
                    Qwen2-VL's ``<|vision_start|>`` / ``<|image_pad|>`` ... at 151652-151656),
                    Qwen2-VL-Instruct's chat template (``<|im_start|>system\\nYou are a helpful
                    assistant.<|im_end|>\\n<|im_start|>user\\n<|vision_start|><|image_pad|>
                    <|vision_end|>{q}<|im_end|>\\n<|im_start|>assistant\\n``), a 2-layer 32-wide
                    M-RoPE language model with tied embeddings (152k x 32: 19 MB), a 2-block
                    vision tower (patch 14, 2x2 merge); images resized to 56..112 px: 4-16
                    image tokens.
==================  ========================================================================

``build_real_models(DIR)`` (or ``python -m vlmprobe.testing --real-tokenizers DIR``) writes
``DIR/tokenizers/{llama,qwen2}`` and ``DIR/{llava-real,qwen2-vl-real}``, reused when complete
(marker file with the recipe version, as in ``vlmprobe.testing``).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..cache import build_dir_once
from . import realtok
from . import (IMAGE_TOKEN, PATCH_SIZE, SEED, _clip_image_processor, _llama_config, _save_vlm,
                      _vision_config)

MARKER = ".vlmprobe-real.json"
RECIPE_VERSION = 1  # bump when a recipe below changes
NAMES = ("llava-real", "qwen2-vl-real")
LLAVA_VOCAB = 32064  # llava-hf/llava-1.5-7b-hf text_config.vocab_size (32,000 + 2 added, padded to 64)
QWEN2_VL_MIN_PIXELS, QWEN2_VL_MAX_PIXELS = 56 * 56, 112 * 112

# llava-hf/llava-1.5-7b-hf's chat_template.json (images first, then text; no system prompt;
# the assistant's text is followed by a space, inside a {% generation %} block).
LLAVA15_HF_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
# Qwen/Qwen2-VL-*-Instruct's chat_template.json
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def llava_real_tokenizer(tokenizer_dir: str):
    """The converted LLaMA-2 tokenizer + ``<image>`` (32000) and ``<pad>`` (32001), left padding."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir, padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(IMAGE_TOKEN, special=True, normalized=False)]})
    tok.add_special_tokens({"pad_token": AddedToken("<pad>", special=True, normalized=False)})
    tok.image_token = IMAGE_TOKEN
    assert tok.convert_tokens_to_ids([IMAGE_TOKEN, "<pad>"]) == [32000, 32001]
    return tok


def _build_llava_real(out: Path, tokenizer_dir: str) -> None:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = llava_real_tokenizer(tokenizer_dir)
    text = _llama_config(tok)
    text.vocab_size = LLAVA_VOCAB
    config = LlavaConfig(vision_config=_vision_config(), text_config=text, image_token_index=32000,
                         image_seq_length=(32 // PATCH_SIZE) ** 2, vision_feature_select_strategy="default",
                         vision_feature_layer=-2, pad_token_id=32001)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(image_processor=_clip_image_processor(), tokenizer=tok, patch_size=PATCH_SIZE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token=IMAGE_TOKEN, chat_template=LLAVA15_HF_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


def _build_qwen2_vl_real(out: Path, tokenizer_dir: str) -> None:
    from transformers import (AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)

    # as Qwen2-VL-Instruct's tokenizer_config: <|im_end|> ends a turn (eos), <|endoftext|> pads
    tok = AutoTokenizer.from_pretrained(tokenizer_dir, padding_side="left", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    ids = tok.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, initializer_range=0.2,
                tie_word_embeddings=True, bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, use_sliding_window=False)
    config = Qwen2VLConfig(vision_config=vision, text_config=text, vision_start_token_id=ids[0],
                           vision_end_token_id=ids[1], image_token_id=ids[2], video_token_id=ids[3],
                           tie_word_embeddings=True)
    model = Qwen2VLForConditionalGeneration(config).eval()
    pixels = dict(min_pixels=QWEN2_VL_MIN_PIXELS, max_pixels=QWEN2_VL_MAX_PIXELS)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels),
                                 video_processor=Qwen2VLVideoProcessor(**pixels), tokenizer=tok,
                                 chat_template=QWEN2_VL_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


_BUILDERS = {"llava-real": (_build_llava_real, "llama"), "qwen2-vl-real": (_build_qwen2_vl_real, "qwen2")}


def build_real_model(root: str | os.PathLike, name: str, force: bool = False, download: bool = True) -> str:
    """Build ``name`` (one of ``NAMES``) as ``root/name`` (reused when complete); returns its path."""
    root = Path(root).expanduser()
    builder, tok_name = _BUILDERS[name]
    meta = {"name": name, "recipe_version": RECIPE_VERSION, "converter_version": realtok.CONVERTER_VERSION}

    def write(tmp: Path) -> dict:
        tok_dir = realtok.real_tokenizers(root / "tokenizers", download=download)[tok_name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            builder(tmp, tok_dir)
        return meta

    return str(build_dir_once(root / name, MARKER, write, current=lambda info: info == meta, force=force))


def build_real_models(root: str | os.PathLike, force: bool = False, download: bool = True) -> dict[str, str]:
    """``{"tokenizers/llama", "tokenizers/qwen2", "llava-real", "qwen2-vl-real"} -> path``."""
    models = {name: build_real_model(root, name, force=force, download=download) for name in NAMES}
    toks = realtok.real_tokenizers(Path(root).expanduser() / "tokenizers", download=download)
    return {**{f"tokenizers/{k}": v for k, v in toks.items()}, **models}
