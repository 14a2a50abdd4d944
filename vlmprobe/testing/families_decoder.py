"""Tiny random-weight checkpoints of the decoder-only VLM families (registered by model type).

Every builder here writes a complete ``hf:`` directory from transformers' own config classes
(``vlmprobe.testing.families``): a vision tower of 2 layers, width 64, 32 px images, a language
model of 2 layers, width 64 (``initializer_range`` 0.2: decisive random logits, so greedy ties
cannot flip on float noise), a byte-level BPE tokenizer trained here
(``vlmprobe.testing.build_tokenizer``) with the family's special tokens, the family's processor
and a chat template shaped like the released checkpoints' (rendering described per builder).

=====================  ==============================================================================
``llava_next_video``   LLaVA-NeXT-Video (single images): CLIP tower + Llama, llava-v1.6 ``USER:`` turns
``llava_onevision``    LLaVA-OneVision: SigLIP tower + Qwen2, AnyRes, ChatML
``qwen2_5_vl``         Qwen2.5-VL: windowed ViT + Qwen2.5 LM with M-RoPE, ChatML
``qwen3_vl``           Qwen3-VL: ViT with DeepStack + Qwen3 LM with interleaved M-RoPE, ChatML
``mistral3``           Mistral3 (Pixtral tower, patch merger) + Mistral LM, ``[INST]`` turns
``internvl``           InternVL: InternViT + pixel-shuffle MLP + Qwen2, ``<img><IMG_CONTEXT>...</img>``
``gemma3``             Gemma 3: SigLIP + pooled projector + Gemma3 LM, ``<start_of_turn>`` turns
``idefics3``           Idefics3: SigLIP + pixel-shuffle connector + Llama, ``User:<image>...``
``smolvlm``            SmolVLM: as Idefics3 with SmolVLM's processor and template
=====================  ==============================================================================
"""
from __future__ import annotations

from pathlib import Path

from . import (IMAGE_SIZE, LLAVA_NEXT_CHAT_TEMPLATE, LM_VOCAB, PATCH_SIZE, QWEN2_VL_CHAT_TEMPLATE,
               QWEN_PATCH, QWEN_SPECIALS, GRID_PINPOINTS, _clip_image_processor, _llama_config, _save_vlm,
               _vision_config, build_tokenizer, llama_tokenizer, qwen2_tokenizer)
from .families import tiny_builder

TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.2)
TINY_SIGLIP = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)


def special_tokenizer(specials: tuple[str, ...], bos: str | None, eos: str, pad: str, first: tuple[str, ...] = (),
                      extra: dict | None = None, bos_prefix: bool = False):
    """Byte-level BPE fast tokenizer with ``first`` specials at ids 0.. and ``specials`` appended
    (all special, never split); ``bos_prefix``: every text starts with ``bos``."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    tok = build_tokenizer(LM_VOCAB - len(specials), first_specials=first)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if bos_prefix:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                          special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   padding_side="left", model_max_length=4096, clean_up_tokenization_spaces=False,
                                   extra_special_tokens=extra or {})


def chatml_template(image: str, system: str | None = "You are a helpful assistant.") -> str:
    """ChatML as the Qwen / LLaVA-OneVision / InternVL checkpoints render it: an optional default
    system turn, then ``<|im_start|>role\\n`` + images (``image`` each) + text + ``<|im_end|>\\n``."""
    sys_turn = ("{% if loop.first and message['role'] != 'system' %}{{ '<|im_start|>system\\n" + system
                + "<|im_end|>\\n' }}{% endif %}") if system else ""
    return ("{% for message in messages %}" + sys_turn +
            "{{ '<|im_start|>' + message['role'] + '\\n' }}"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '" + image + "' }}"
            "{% endfor %}"
            "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
            "{% endif %}{{ '<|im_end|>\\n' }}"
            "{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _qwen_ids(tok) -> dict:
    return {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}


def _qwen_image_processor(cls):
    return cls(patch_size=QWEN_PATCH, merge_size=2, temporal_patch_size=2, min_pixels=IMAGE_SIZE * IMAGE_SIZE,
               max_pixels=4 * IMAGE_SIZE * IMAGE_SIZE, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


@tiny_builder("qwen2_5_vl")
def build_qwen2_5_vl(out: Path) -> None:
    """Qwen2.5-VL: window-attention ViT (window 16 px, full attention in block 1) with an MLP
    merger, Qwen2.5 LM with M-RoPE sections [2, 3, 3]; Qwen2-VL's image processor and ChatML."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tok = qwen2_tokenizer()
    ids = _qwen_ids(tok)
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                  patch_size=QWEN_PATCH, spatial_merge_size=2, temporal_patch_size=2, window_size=32,
                  fullatt_block_indexes=[1])
    text = dict(vocab_size=len(tok), **TINY_TEXT, bos_token_id=None, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    processor = Qwen2_5_VLProcessor(image_processor=_qwen_image_processor(Qwen2VLImageProcessor), tokenizer=tok,
                                    video_processor=Qwen2VLVideoProcessor(patch_size=QWEN_PATCH, merge_size=2),
                                    chat_template=QWEN2_VL_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("llava_next_video")
def build_llava_next_video(out: Path) -> None:
    """LLaVA-NeXT-Video used on single images: the LLaVA-NeXT tiny model (CLIP tower, AnyRes
    pinpoints, Llama) with a ``<video>`` token and LLaVA-NeXT-Video's processor."""
    from tokenizers import AddedToken
    from transformers import (LlavaNextImageProcessor, LlavaNextVideoConfig,
                              LlavaNextVideoForConditionalGeneration, LlavaNextVideoProcessor,
                              LlavaNextVideoVideoProcessor)

    tok = llama_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [AddedToken("<video>", special=True, normalized=False)]})
    config = LlavaNextVideoConfig(vision_config=_vision_config(), text_config=_llama_config(tok),
                                  image_token_index=tok.convert_tokens_to_ids("<image>"),
                                  video_token_index=tok.convert_tokens_to_ids("<video>"),
                                  image_grid_pinpoints=GRID_PINPOINTS, image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
                                  vision_feature_select_strategy="default", vision_feature_layer=-2,
                                  spatial_pool_stride=2)
    model = LlavaNextVideoForConditionalGeneration(config).eval()
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                              crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                              image_grid_pinpoints=GRID_PINPOINTS)
    video_processor = LlavaNextVideoVideoProcessor(size={"shortest_edge": IMAGE_SIZE},
                                                   crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaNextVideoProcessor(video_processor=video_processor, image_processor=image_processor,
                                        tokenizer=tok, patch_size=PATCH_SIZE, vision_feature_select_strategy="default",
                                        num_additional_image_tokens=1, chat_template=LLAVA_NEXT_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("llava_onevision")
def build_llava_onevision(out: Path) -> None:
    """LLaVA-OneVision: SigLIP tower (no CLS: "full" features of the last layer), 2-layer MLP
    projector, AnyRes on the pinpoints with ``anyres_max_9`` unpadding, Qwen2 LM, ChatML with
    ``<image>\\n`` before the question (as llava-onevision-qwen2 renders it)."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor)

    tok = special_tokenizer(QWEN_SPECIALS[:3] + ("<image>", "<video>"), bos=None, eos="<|im_end|>",
                            pad="<|endoftext|>", extra={"image_token": "<image>", "video_token": "<video>"})
    text = dict(model_type="qwen2", vocab_size=len(tok), **TINY_TEXT, bos_token_id=None,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    vision = dict(model_type="siglip_vision_model", **TINY_SIGLIP, vision_use_head=False)
    config = LlavaOnevisionConfig(vision_config=vision, text_config=text,
                                  image_token_index=tok.convert_tokens_to_ids("<image>"),
                                  video_token_index=tok.convert_tokens_to_ids("<video>"),
                                  image_grid_pinpoints=GRID_PINPOINTS, vision_feature_select_strategy="full",
                                  vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9",
                                  tie_word_embeddings=False)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    image_processor = LlavaOnevisionImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                                   image_grid_pinpoints=GRID_PINPOINTS)
    video_processor = LlavaOnevisionVideoProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                        num_image_tokens=(IMAGE_SIZE // PATCH_SIZE) ** 2,
                                        vision_feature_select_strategy="full",
                                        chat_template=chatml_template("<image>\\n"))
    _save_vlm(model, processor, tok, out)


MISTRAL_TEMPLATE = (  # Mistral-Small-3.1 / Pixtral: "<s>[INST][IMG]...{question}[/INST]{answer}</s>"
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST]' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '[IMG]' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{{ '[/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{{ eos_token }}{% endif %}{% endfor %}"
)


@tiny_builder("mistral3")
def build_mistral3(out: Path) -> None:
    """Mistral3: Pixtral vision tower (2-D RoPE, patch 8, any size up to 64 px) + 2x2 patch
    merger + Mistral LM (no sliding window); Pixtral's processor (``[IMG]`` per merged patch,
    ``[IMG_BREAK]`` per row, ``[IMG_END]``) and Mistral's ``[INST]`` template."""
    from transformers import (Mistral3Config, Mistral3ForConditionalGeneration, PixtralImageProcessor,
                              PixtralProcessor)

    specials = ("[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]", "<pad>")
    tok = special_tokenizer(specials, bos="<s>", eos="</s>", pad="<pad>", first=("<unk>", "<s>", "</s>"))
    vision = dict(model_type="pixtral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, image_size=2 * IMAGE_SIZE, patch_size=PATCH_SIZE, head_dim=16)
    text = dict(model_type="mistral", vocab_size=len(tok), **TINY_TEXT, sliding_window=None,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                tie_word_embeddings=False, head_dim=16)
    config = Mistral3Config(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                            spatial_merge_size=2, vision_feature_layer=-1, tie_word_embeddings=False)
    model = Mistral3ForConditionalGeneration(config).eval()
    image_processor = PixtralImageProcessor(size={"longest_edge": 2 * IMAGE_SIZE}, patch_size=PATCH_SIZE)
    processor = PixtralProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH_SIZE,
                                 spatial_merge_size=2, chat_template=MISTRAL_TEMPLATE)
    _save_vlm(model, processor, tok, out)
