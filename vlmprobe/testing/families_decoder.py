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
               QWEN_PATCH, QWEN_SPECIALS, GRID_PINPOINTS, _llama_config, _save_vlm,
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


def _qwen_vl(out: Path, config_cls, model_cls, processor_cls, video_cls, vision: dict, rope: dict,
             template: str, head_dim: int | None = None, **text_extra) -> None:
    """A Qwen-VL generation (ViT with patch merger, M-RoPE LM) with Qwen2-VL's image processor
    (patch 8, 2x2 merge: a 32 px image -> 4 ``<|image_pad|>`` tokens) and a ChatML template."""
    from transformers import Qwen2VLImageProcessor

    tok = qwen2_tokenizer()
    ids = _qwen_ids(tok)
    text = dict(vocab_size=len(tok), **TINY_TEXT, bos_token_id=None, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, **rope})
    if head_dim:
        text["head_dim"] = head_dim
    text.update(text_extra)  # MoE sizes etc.
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                  patch_size=QWEN_PATCH, spatial_merge_size=2, temporal_patch_size=2, **vision)
    config = config_cls(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    model = model_cls(config).eval()
    processor = processor_cls(image_processor=_qwen_image_processor(Qwen2VLImageProcessor), tokenizer=tok,
                              video_processor=video_cls(patch_size=QWEN_PATCH, merge_size=2), chat_template=template)
    _save_vlm(model, processor, tok, out)


@tiny_builder("qwen2_5_vl")
def build_qwen2_5_vl(out: Path) -> None:
    """Qwen2.5-VL: window-attention ViT (window 32 px, full attention in block 1) with an MLP
    merger, Qwen2.5 LM with M-RoPE sections [2, 3, 3]; Qwen2-VL-Instruct's ChatML."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLVideoProcessor)

    _qwen_vl(out, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLVideoProcessor,
             vision=dict(window_size=32, fullatt_block_indexes=[1]), rope={"mrope_section": [2, 3, 3]},
             template=QWEN2_VL_CHAT_TEMPLATE)


@tiny_builder("qwen3_vl")
def build_qwen3_vl(out: Path) -> None:
    """Qwen3-VL: ViT with learned position embeddings and DeepStack (block 0's merged features
    added to the first LM layer's image positions), Qwen3 LM with interleaved M-RoPE; ChatML
    without a default system turn (as Qwen3-VL-Instruct renders it)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor

    _qwen_vl(out, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor,
             vision=dict(num_position_embeddings=64, deepstack_visual_indexes=[0]),
             rope={"mrope_section": [2, 3, 3], "mrope_interleaved": True}, head_dim=16,
             template=chatml_template("<|vision_start|><|image_pad|><|vision_end|>", system=None))


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


def _pixtral_vlm(out: Path, config_cls, model_cls, **text) -> None:
    """Pixtral vision tower (2-D RoPE, patch 8, any size up to 64 px) + 2x2 patch merger + the
    LM ``text`` describes; Pixtral's processor (``[IMG]`` per merged patch, ``[IMG_BREAK]`` per
    row, ``[IMG_END]``) and Mistral's ``[INST]`` template."""
    from transformers import PixtralImageProcessor, PixtralProcessor

    specials = ("[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]", "<pad>")
    tok = special_tokenizer(specials, bos="<s>", eos="</s>", pad="<pad>", first=("<unk>", "<s>", "</s>"))
    vision = dict(model_type="pixtral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, image_size=2 * IMAGE_SIZE, patch_size=PATCH_SIZE, head_dim=16)
    text = dict(vocab_size=len(tok), **text, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, tie_word_embeddings=False, head_dim=16)
    config = config_cls(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                        spatial_merge_size=2, vision_feature_layer=-1, tie_word_embeddings=False)
    model = model_cls(config).eval()
    image_processor = PixtralImageProcessor(size={"longest_edge": 2 * IMAGE_SIZE}, patch_size=PATCH_SIZE)
    processor = PixtralProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH_SIZE,
                                 spatial_merge_size=2, chat_template=MISTRAL_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("mistral3")
def build_mistral3(out: Path) -> None:
    """Mistral3: the Pixtral shape with a Mistral LM (no sliding window)."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    _pixtral_vlm(out, Mistral3Config, Mistral3ForConditionalGeneration, model_type="mistral", **TINY_TEXT,
                 sliding_window=None)


INTERNVL_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>")


@tiny_builder("internvl")
def build_internvl(out: Path) -> None:
    """InternVL (3, hf layout): InternViT (32 px, patch 8: 16 patches), pixel shuffle 0.5 -> 4
    tokens per image, MLP projector, Qwen2 LM; the processor writes ``<img>`` + 4 x
    ``<IMG_CONTEXT>`` + ``</img>``; ChatML with ``<IMG_CONTEXT>\\n`` before the question."""
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, InternVLVideoProcessor)

    tok = special_tokenizer(INTERNVL_SPECIALS, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                            extra={"start_image_token": "<img>", "end_image_token": "</img>",
                                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=[IMAGE_SIZE, IMAGE_SIZE], patch_size=[PATCH_SIZE, PATCH_SIZE], use_mask_token=False)
    text = dict(model_type="qwen2", vocab_size=len(tok), **TINY_TEXT, bos_token_id=None,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    config = InternVLConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
                            downsample_ratio=0.5, vision_feature_layer=-1, vision_feature_select_strategy="default",
                            tie_word_embeddings=False)
    model = InternVLForConditionalGeneration(config).eval()
    image_processor = GotOcr2ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, crop_to_patches=False)
    processor = InternVLProcessor(image_processor=image_processor, tokenizer=tok,
                                  video_processor=InternVLVideoProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
                                  image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2 // 4,
                                  chat_template=chatml_template("<IMG_CONTEXT>\\n", system=None))
    _save_vlm(model, processor, tok, out)


GEMMA3_SPECIALS = ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                   "<end_of_image>", "<image_soft_token>")
GEMMA3_TEMPLATE = (  # gemma-3-it: "<bos><start_of_turn>user\n<start_of_image>{q}<end_of_turn>\n<start_of_turn>model\n"
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<start_of_image>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] | trim }}{% endfor %}"
    "{{ '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


@tiny_builder("gemma3")
def build_gemma3(out: Path) -> None:
    """Gemma 3: SigLIP tower (32 px, patch 8: 4x4 patches) average-pooled to 2x2 = 4 soft tokens
    per image, Gemma3 LM (sliding-window and global layers, image tokens attend bidirectionally),
    gemma-3-it's ``<start_of_turn>`` template; the processor expands ``<start_of_image>`` to
    ``\\n\\n<start_of_image>`` + 4 x ``<image_soft_token>`` + ``<end_of_image>\\n\\n``."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    tok = special_tokenizer(GEMMA3_SPECIALS, bos="<bos>", eos="<end_of_turn>", pad="<pad>",
                            extra={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                   "image_token": "<image_soft_token>"})
    ids = {t: tok.convert_tokens_to_ids(t) for t in GEMMA3_SPECIALS}
    text = dict(vocab_size=len(tok), **TINY_TEXT, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                layer_types=["sliding_attention", "full_attention"], bos_token_id=ids["<bos>"],
                eos_token_id=ids["<end_of_turn>"], pad_token_id=ids["<pad>"])
    vision = dict(**TINY_SIGLIP, vision_use_head=False)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                          boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                          image_token_index=ids["<image_soft_token>"], tie_word_embeddings=False)
    model = Gemma3ForConditionalGeneration(config).eval()
    image_processor = Gemma3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tok, image_seq_length=4,
                                chat_template=GEMMA3_TEMPLATE)
    _save_vlm(model, processor, tok, out)


IDEFICS3_SPECIALS = ("<|endoftext|>", "<|begin_of_text|>", "<end_of_utterance>", "<fake_token_around_image>",
                     "<image>", "<global-img>", "<pad>")
IDEFICS3_TEMPLATE = (  # Idefics3-8B-Llama3 / SmolVLM-Instruct: "<|begin_of_text|>User:<image>{q}<end_of_utterance>\nAssistant:"
    "{{ bos_token }}{% for message in messages %}"
    "{{ message['role'] | capitalize }}{{ ':' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ (' ' if message['role'] == 'assistant' else '') + part['text'] }}{% endfor %}"
    "{{ '<end_of_utterance>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _idefics3_parts(config_cls):
    tok = special_tokenizer(IDEFICS3_SPECIALS, bos="<|begin_of_text|>", eos="<end_of_utterance>", pad="<pad>",
                            extra={"image_token": "<image>"})
    text = dict(model_type="llama", vocab_size=len(tok), **TINY_TEXT, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    config = config_cls(vision_config=vision, text_config=text, scale_factor=2,
                        image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id,
                        tie_word_embeddings=False)
    return tok, config


@tiny_builder("idefics3")
def build_idefics3(out: Path) -> None:
    """Idefics3: SigLIP-style tower (32 px, patch 8), pixel-shuffle connector (scale 2: 4 tokens
    per image), Llama LM; no image splitting; ``User:<image>{q}<end_of_utterance>\\nAssistant:``
    (the processor writes ``<fake_token_around_image><global-img>`` + 4 x ``<image>`` +
    ``<fake_token_around_image>``)."""
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor,
                              Idefics3Processor)

    tok, config = _idefics3_parts(Idefics3Config)
    model = Idefics3ForConditionalGeneration(config).eval()
    image_processor = Idefics3ImageProcessor(size={"longest_edge": IMAGE_SIZE}, do_image_splitting=False,
                                             max_image_size={"longest_edge": IMAGE_SIZE})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("smolvlm")
def build_smolvlm(out: Path) -> None:
    """SmolVLM: the Idefics3 architecture under SmolVLM's classes, processor and template."""
    from transformers import (SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessor,
                              SmolVLMProcessor, SmolVLMVideoProcessor)

    tok, config = _idefics3_parts(SmolVLMConfig)
    model = SmolVLMForConditionalGeneration(config).eval()
    image_processor = SmolVLMImageProcessor(size={"longest_edge": IMAGE_SIZE}, do_image_splitting=False,
                                            max_image_size={"longest_edge": IMAGE_SIZE})
    video_processor = SmolVLMVideoProcessor(size={"longest_edge": IMAGE_SIZE},
                                            max_image_size={"longest_edge": IMAGE_SIZE})
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                 image_seq_len=4, chat_template=IDEFICS3_TEMPLATE)
    _save_vlm(model, processor, tok, out)
