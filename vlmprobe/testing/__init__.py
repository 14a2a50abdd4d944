"""Tiny, architecture-faithful, random-weight models built fully offline (tests, quickstart).

``build_tiny_models(DIR)`` (or ``python -m vlmprobe.testing DIR``) writes, in a few seconds:

==============  ===============================================  ===============================
``openclip``    open_clip ViT (32 px, patch 8, 2+2 layers)        ``openclip:local-dir:DIR/openclip``
``hfclip``      transformers ``CLIPModel`` + ``CLIPProcessor``     ``hfclip:DIR/hfclip``
``llava``       ``LlavaForConditionalGeneration`` (LLaVA-1.5)      ``hf:DIR/llava``
``llava-next``  ``LlavaNextForConditionalGeneration`` (AnyRes)     ``hf:DIR/llava-next``
``qwen2-vl``    ``Qwen2VLForConditionalGeneration`` (M-RoPE)      ``hf:DIR/qwen2-vl`` (``--all``)
==============  ===============================================  ===============================

The VLMs are a 2-layer, 64-wide CLIP vision tower (32 px, patch 8: 16 patch tokens; the
"default" feature strategy drops CLS) + a 2-layer, 64-wide Llama (grouped-query attention)
(widths are multiples of 64, which bitsandbytes' CPU 4-bit kernel needs), saved with
``save_pretrained`` together with a processor, a generation config and a chat template shaped
like the real checkpoints' (LLaVA-1.5: ``USER: <image>\\n{q} ASSISTANT:``; LLaVA-NeXT, as in
llava-v1.6-mistral: ``[INST] <image>\\n{q} [/INST]``). LLaVA-NeXT tiles images on the grid
pinpoints below, so the number of ``<image>`` tokens depends on the image's size.
Qwen2-VL is a 2-layer, 64-wide Qwen2-VL vision transformer (patch 8, 2x2 patch merger: a 32 px
image is 4x4 patches -> 4 ``<|image_pad|>`` tokens; sizes up to 64x64 px keep their aspect) + a
2-layer, 64-wide Qwen2 language model with multimodal rotary positions (M-RoPE), with a
ChatML template like the real one's (``<|im_start|>user\\n<|vision_start|><|image_pad|>
<|vision_end|>{q}<|im_end|>\\n<|im_start|>assistant\\n``).

Tokenizers are byte-level BPE vocabularies trained here (``tokenizers``) on a small English
corpus (prompt phrases, digit names, ImageNet class names and CLIP templates from open_clip):
common words are one or a few tokens and any text, unicode included, tokenizes. The CLIP
tokenizer puts ``<|endoftext|>`` at the largest id so transformers' EOS pooling and its legacy
"argmax id" rule agree (see GUIDE section 6). The open_clip model uses open_clip's own BPE.

The VLM builders are also registered by ``config.model_type`` (``llava``, ``llava_next``,
``qwen2_vl``) in ``vlmprobe.testing.families.TINY_BUILDERS``, beside every other family's
(``families_decoder``, ``families_special``): ``python -m vlmprobe.testing --families DIR``
builds and checks them all (the conformance suite, ``vlmprobe.testing.conformance``).

Each model directory is built in a temporary sibling and renamed into place after a marker
file (``MARKER``, written last) records the recipe version: a complete earlier build is
reused, a half-written or outdated one is rebuilt. Weights are seeded, so builds repeat.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .families import TINY_BUILDERS, build_into, tiny_builder  # noqa: F401 (the registry; see families.py)

MARKER = ".vlmprobe-tiny.json"  # written last into every finished model directory
RECIPE_VERSION = 1  # bump whenever a recipe below changes: older builds are rebuilt
SEED = 0
NAMES = ("openclip", "hfclip", "llava", "llava-next")  # what build_tiny_models writes by default
FAMILY_NAMES = ("qwen2-vl",)  # further families, built on request (build_tiny_model / --all)
SPECS = {"openclip": "openclip:local-dir:{}", "hfclip": "hfclip:{}", "llava": "hf:{}", "llava-next": "hf:{}",
         "qwen2-vl": "hf:{}"}

IMAGE_SIZE = 32  # vision tower input (px)
PATCH_SIZE = 8  # -> (32/8)^2 = 16 patch tokens (+ CLS, dropped by the "default" strategy)
GRID_PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]  # AnyRes canvases (h, w)
LM_VOCAB = 2048  # byte-level BPE size of the VLM tokenizer, specials included
CLIP_VOCAB = 1024

IMAGE_TOKEN = "<image>"
LLAVA_CHAT_TEMPLATE = (  # LLaVA-1.5 (vicuna v1): "USER: <image>\n{question} ASSISTANT: {answer}</s>USER: ..."
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% if message['role'] == 'assistant' %}{{ part['text'] + eos_token }}{% else %}{{ part['text'] + ' ' }}{% endif %}"
    "{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
LLAVA_NEXT_CHAT_TEMPLATE = (  # llava-v1.6-mistral: "[INST] <image>\n{question} [/INST] {answer}</s>"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ ' ' + part['text'] }}{% endfor %}"
    "{{ eos_token }}"
    "{% else %}{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ part['text'] + '\n\n' }}{% endfor %}{% endif %}"
    "{% endfor %}"
)

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>")  # Qwen2's special tokens (pad, turns, vision)
QWEN2_VL_CHAT_TEMPLATE = (  # ChatML as Qwen2-VL-Instruct renders it (default system turn, images first)
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN_PATCH = 8  # Qwen2-VL vision patch (px); 2x2 patches merge into one language-model token

_COMMON = """the a an of in on at to is are was be this that these those it its there what which who
how why where when type kind object thing photo picture image shown show shows see seen looks like
features feature contains contain choose one from answer question describe description class
category label name called named animal bird dog cat fish car truck plane boat flower tree food
person man woman child small large big little red green blue black white yellow brown gray
and or not no yes with without for by as has have can could would should do does think step
let's let us please best only word words digit number handwritten written drawn sketch
zero one two three four five six seven eight nine ten golden retriever tabby tiger lion
good bad cropped close up dark bright blurry clean dirty jpeg rendering origami toy plastic
cartoon painting tattoo embroidered low resolution high quality weird difficult nice cool"""
_PHRASES = (
    "What type of object is in this photo?",
    "What type of object is in the photo?",
    "The photo features a",
    "Choose one from",
    "Let's think step by step.",
    "Choose A, B, C, or D.",
    "USER: ASSISTANT:",
    "[INST] [/INST]",
    "a photo of a",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 A B C D",
)


def _corpus() -> list[str]:
    """English training text: prompt phrases (weighted), common words, ImageNet class names in
    open_clip's templates. Fixed content and order, so the trained vocabulary is fixed."""
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES

    from ..data.imagenet_classes import imagenet_names

    words = _COMMON.split()
    lines = list(_PHRASES) * 20 + [" ".join(words)] * 10
    lines += [f"{w} {w.capitalize()} {w.upper()}" for w in words]
    for i, name in enumerate(imagenet_names()):
        lines.append(SIMPLE_IMAGENET_TEMPLATES[i % len(SIMPLE_IMAGENET_TEMPLATES)](name))
        lines.append(f"The photo features a {name}.")
    return lines


def build_tokenizer(vocab_size: int, lowercase: bool = False, first_specials: tuple[str, ...] = ()):
    """Byte-level BPE ``tokenizers.Tokenizer`` of ``vocab_size`` tokens trained on ``_corpus()``;
    ``first_specials`` take ids 0, 1, ... Every byte is in the alphabet: no text is out of vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else []))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                  special_tokens=[AddedToken(t, special=True, normalized=False) for t in first_specials],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok


def llama_tokenizer():
    """Transformers fast tokenizer shaped like LLaVA's Llama one: ``<unk>``=0, ``<s>``=1,
    ``</s>``=2 (eos), BPE, then ``<image>`` and ``<pad>`` appended; ``<s>`` prefixes every text."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    tok = build_tokenizer(LM_VOCAB - 2, first_specials=("<unk>", "<s>", "</s>"))
    tok.add_special_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False),
                            AddedToken("<pad>", special=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                      special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", padding_side="left", model_max_length=4096,
                                   extra_special_tokens={"image_token": IMAGE_TOKEN},
                                   clean_up_tokenization_spaces=False)


def qwen2_tokenizer():
    """Transformers fast tokenizer shaped like Qwen2's: byte-level BPE, no BOS, ``<|endoftext|>``
    pads, ``<|im_end|>`` ends a turn (eos), vision specials as in Qwen2-VL."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tok = build_tokenizer(LM_VOCAB - len(QWEN_SPECIALS))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIALS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   padding_side="left", model_max_length=4096, clean_up_tokenization_spaces=False,
                                   extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})


def clip_tokenizer():
    """Lower-casing BPE with ``<|startoftext|> $A <|endoftext|>``; both specials take the largest
    ids (EOS last) and ``<|endoftext|>`` pads, as in OpenAI CLIP; 77-token context."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    tok = build_tokenizer(CLIP_VOCAB - 2, lowercase=True)
    tok.add_special_tokens([AddedToken("<|startoftext|>", special=True, normalized=False),
                            AddedToken("<|endoftext|>", special=True, normalized=False)])
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", pair="<|startoftext|> $A <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=77,
                                   clean_up_tokenization_spaces=False)


def _vision_config(**over):
    from transformers import CLIPVisionConfig

    # widths are multiples of 64: bitsandbytes' CPU 4-bit kernel packs weights in blocks of 64 inputs
    kw = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=32)
    return CLIPVisionConfig(**{**kw, **over})


def _llama_config(tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                       initializer_range=0.2,  # decisive random logits: greedy ties cannot flip on float noise
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)


def _clip_image_processor(**over):
    from transformers import CLIPImageProcessor

    kw = dict(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return CLIPImageProcessor(**{**kw, **over})


def _save_vlm(model, processor, tokenizer, out: Path) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=False,
                                               max_new_tokens=64)
    model.save_pretrained(out)
    processor.save_pretrained(out)


@tiny_builder("llava")
def _build_llava(out: Path) -> None:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = llama_tokenizer()
    n_image_tokens = (IMAGE_SIZE // PATCH_SIZE) ** 2  # CLS dropped ("default" strategy)
    config = LlavaConfig(vision_config=_vision_config(), text_config=_llama_config(tok),
                         image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=n_image_tokens,
                         vision_feature_select_strategy="default", vision_feature_layer=-2)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(image_processor=_clip_image_processor(), tokenizer=tok, patch_size=PATCH_SIZE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token=IMAGE_TOKEN, chat_template=LLAVA_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("llava_next")
def _build_llava_next(out: Path) -> None:
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessor,
                              LlavaNextProcessor)

    tok = llama_tokenizer()
    config = LlavaNextConfig(vision_config=_vision_config(), text_config=_llama_config(tok),
                             image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
                             image_grid_pinpoints=GRID_PINPOINTS, image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
                             vision_feature_select_strategy="default", vision_feature_layer=-2)
    model = LlavaNextForConditionalGeneration(config).eval()
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=GRID_PINPOINTS)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH_SIZE,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   image_token=IMAGE_TOKEN, chat_template=LLAVA_NEXT_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


@tiny_builder("qwen2_vl")
def _build_qwen2_vl(out: Path) -> None:
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    tok = qwen2_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    vision = dict(depth=2, embed_dim=64, hidden_size=64, num_heads=4, mlp_ratio=2, patch_size=QWEN_PATCH,
                  spatial_merge_size=2, temporal_patch_size=2)
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.2,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    model = Qwen2VLForConditionalGeneration(config).eval()
    factor = QWEN_PATCH * 2  # sides are rounded to multiples of patch x merge
    image_processor = Qwen2VLImageProcessor(patch_size=QWEN_PATCH, merge_size=2, temporal_patch_size=2,
                                            min_pixels=IMAGE_SIZE * IMAGE_SIZE, max_pixels=4 * IMAGE_SIZE * IMAGE_SIZE,
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    video_processor = Qwen2VLVideoProcessor(patch_size=QWEN_PATCH, merge_size=2, temporal_patch_size=2)
    assert IMAGE_SIZE % factor == 0
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                                 chat_template=QWEN2_VL_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


def _build_hfclip(out: Path) -> None:
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    tok = clip_tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = CLIPConfig(text_config=text, vision_config=_vision_config().to_dict(), projection_dim=32)
    CLIPModel(config).eval().save_pretrained(out)
    CLIPProcessor(image_processor=_clip_image_processor(), tokenizer=tok).save_pretrained(out)


OPENCLIP_ARCH = "vlmprobe-tiny-clip"  # registered with open_clip.add_model_config while building
OPENCLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": 32, "head_width": 16, "patch_size": PATCH_SIZE},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2},  # 49408 x 16 embedding
}


def _build_openclip(out: Path) -> None:
    """Random-weight open_clip model from a registered JSON config, written in the ``local-dir:``
    format: ``open_clip_config.json`` ({"model_cfg", "preprocess_cfg"}) + ``open_clip_model.safetensors``."""
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / f"{OPENCLIP_ARCH}.json"
        cfg.write_text(json.dumps(OPENCLIP_CONFIG))
        open_clip.add_model_config(cfg)  # the in-memory registry keeps the entry after tmp goes
    model = open_clip.create_model(OPENCLIP_ARCH, pretrained=None).eval()
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    save_config_for_hf(model, out / "open_clip_config.json", model_config=open_clip.get_model_config(OPENCLIP_ARCH))


_BUILDERS = {"openclip": _build_openclip, "hfclip": _build_hfclip, "llava": _build_llava,
             "llava-next": _build_llava_next, "qwen2-vl": _build_qwen2_vl}


def build_tiny_model(root: str | os.PathLike, name: str, force: bool = False) -> str:
    """Build one of ``NAMES`` as ``root/name`` (reused when complete) and return its path."""
    info = {"name": name, "recipe_version": RECIPE_VERSION}
    return build_into(Path(root).expanduser() / name, _BUILDERS[name], MARKER, info, force, SEED)


def build_tiny_models(root: str | os.PathLike, force: bool = False, names=NAMES) -> dict[str, str]:
    """``{name in names} -> root/<name>`` (see module docstring; ``NAMES + FAMILY_NAMES`` for all)."""
    return {name: build_tiny_model(root, name, force=force) for name in names}
