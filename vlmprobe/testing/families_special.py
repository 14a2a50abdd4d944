"""Tiny builders of the families whose language model or attention is not LLaVA's: BLIP-2 with
an OPT decoder (``blip-2``) or a Flan-T5 encoder-decoder (``blip-2-flan-t5``, model_type
``blip-2``), InstructBLIP with Vicuna (``instructblip``, the Q-Former reads the prompt), Mllama
(``mllama``, images through cross-attention layers) and PaliGemma (``paligemma``, prefix-LM
attention). Each writes, from transformers' own config
classes and random seeded weights, a directory that ``hf:DIR`` loads like the released
checkpoint: config, weights, processor, tokenizer and the released checkpoint's chat template,
or none where it ships none (BLIP-2: prompts use the family's ``Question: {q} Answer:``).

Widths: 64 (bitsandbytes' CPU 4-bit kernel packs 64 inputs); 2 layers; 32 px images.
"""
from __future__ import annotations

from pathlib import Path

from . import IMAGE_SIZE, LM_VOCAB, PATCH_SIZE, _save_vlm, build_tokenizer
from .families import tiny_builder

# Every builder of this module by name (model type, or a variant's name such as
# ``blip-2-flan-t5``), for tests/test_families_special.py; those keyed by a model type are also in
# the conformance registry (``@tiny_builder``): ``ChatCollator`` fine-tunes checkpoints without a
# chat template through their family's prompt format.
SPECIAL_BUILDERS: dict = {}


def special_builder(name: str):
    """Register ``build(out)`` in ``SPECIAL_BUILDERS`` (name = model type, or a variant's name)."""
    def register(fn):
        SPECIAL_BUILDERS[name] = fn
        return fn
    return register

BLIP2_QUERY_TOKENS = 4  # Q-Former queries = image tokens in the language model's input (32 in BLIP-2)


def lm_tokenizer(first: tuple[str, ...], appended: tuple[str, ...], prefix: str | None = None,
                 suffix: str | None = None, **special):
    """Byte-level BPE fast tokenizer of ``LM_VOCAB`` ids: ``first`` specials take ids 0, 1, ...,
    ``appended`` specials the last ids; ``prefix`` / ``suffix`` (special tokens) start / end every
    text when given; ``special``: the tokenizer's bos/eos/pad/unk token names."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    tok = build_tokenizer(LM_VOCAB - len(appended), first_specials=first)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in appended])
    if prefix is not None or suffix is not None:
        head, tail = (f"{prefix} " if prefix else ""), (f" {suffix}" if suffix else "")
        tok.post_processor = processors.TemplateProcessing(
            single=f"{head}$A{tail}", pair=f"{head}$A{tail} {head}$B{tail}",
            special_tokens=[(t, tok.token_to_id(t)) for t in dict.fromkeys((prefix, suffix)) if t])
    return PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left", model_max_length=4096,
                                   clean_up_tokenization_spaces=False, **special)


def opt_tokenizer():
    """Shaped like BLIP-2 OPT's GPT-2 tokenizer: ``<s>``=0, ``<pad>``=1, ``</s>``=2 (bos and eos,
    prefixed to every text), ``<unk>``=3, byte-level BPE, ``<image>`` appended (as the released
    processor adds it)."""
    return lm_tokenizer(("<s>", "<pad>", "</s>", "<unk>"), ("<image>",), prefix="</s>", bos_token="</s>",
                        eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def t5_tokenizer():
    """Shaped like Flan-T5's: ``<pad>``=0 (also the decoder start), ``</s>``=1 (appended to every
    text), ``<unk>``=2, BPE, ``<image>`` appended (as BLIP-2's processor adds it)."""
    return lm_tokenizer(("<pad>", "</s>", "<unk>"), ("<image>",), suffix="</s>", pad_token="<pad>",
                        eos_token="</s>", unk_token="<unk>")


def _blip_parts(**qformer_over) -> tuple[dict, dict, object]:
    """BLIP-2 / InstructBLIP vision tower and Q-Former configs (2 layers, 64 wide; the vision
    tower's default init range, 1e-10, would make every image alike) and the image processor."""
    from transformers import BlipImageProcessor

    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, initializer_range=0.02)
    qformer = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   encoder_hidden_size=64, cross_attention_frequency=1, **qformer_over)
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                         image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return vision, qformer, image_processor


@tiny_builder("blip-2")
@special_builder("blip-2")
def build_blip2_opt(out: Path) -> None:
    """BLIP-2 (ViT + Q-Former + OPT), as ``Salesforce/blip2-opt-2.7b``: no chat template."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, OPTConfig

    tok = opt_tokenizer()
    vision, qformer, image_processor = _blip_parts(vocab_size=LM_VOCAB)
    text = OPTConfig(vocab_size=len(tok), hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                     word_embed_proj_dim=64, max_position_embeddings=512, init_std=0.2, bos_token_id=2,
                     eos_token_id=2, pad_token_id=1, tie_word_embeddings=False)
    config = Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(),
                         num_query_tokens=BLIP2_QUERY_TOKENS, image_token_index=tok.convert_tokens_to_ids("<image>"))
    model = Blip2ForConditionalGeneration(config).eval()
    model.query_tokens.data.normal_(0.0, 0.2)  # released weights are trained; zeros would make queries alike
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tok, num_query_tokens=BLIP2_QUERY_TOKENS)
    _save_vlm(model, processor, tok, out)


MLLAMA_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|image|>", "<|python_tag|>", "<|finetune_right_pad_id|>")
MLLAMA_CHAT_TEMPLATE = (  # Llama-3.2-Vision-Instruct's shape: header turns, <|image|> before the text
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<|image|>' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


def llama3_tokenizer():
    """Shaped like Llama 3's: byte-level BPE, the header/turn specials, ``<|image|>``; the chat
    template writes ``<|begin_of_text|>`` itself (the tokenizer adds none, so prompts carry one)."""
    return lm_tokenizer((), MLLAMA_SPECIALS, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                        pad_token="<|finetune_right_pad_id|>")


@tiny_builder("mllama")
def build_mllama(out: Path) -> None:
    """Mllama (Llama 3.2 Vision): a tiled ViT whose states enter the language model through
    cross-attention layers (here layer 1 of 3); the token stream holds one ``<|image|>``."""
    from transformers import (MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor,
                              MllamaProcessor)

    tok = llama3_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in MLLAMA_SPECIALS}
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_global_layers=1,
                  attention_heads=4, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, max_num_tiles=2,
                  intermediate_layers_indices=[0], vision_output_dim=128,
                  supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, cross_attention_layers=[1],
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, max_position_embeddings=1024,
                initializer_range=0.2, bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|eot_id|>"],
                pad_token_id=ids["<|finetune_right_pad_id|>"], tie_word_embeddings=False)
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=ids["<|image|>"])
    model = MllamaForConditionalGeneration(config).eval()
    for name, p in model.named_parameters():  # the gates start at 0 (image ignored): open them, seeded
        if "cross_attn_attn_gate" in name or "cross_attn_mlp_gate" in name:
            p.data.uniform_(0.5, 1.0)
    image_processor = MllamaImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, max_image_tiles=2,
                                           image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tok, chat_template=MLLAMA_CHAT_TEMPLATE)
    _save_vlm(model, processor, tok, out)


def bert_like_tokenizer():
    """The Q-Former's own tokenizer, shaped like InstructBLIP's (bert-base-uncased + ``[DEC]``):
    lower-casing BPE here, ``[CLS] $A [SEP]``, ``[PAD]`` pads, left truncation."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    tok = build_tokenizer(1024 - 1, lowercase=True, first_specials=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
    tok.add_special_tokens([AddedToken("[DEC]", special=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                   unk_token="[UNK]", mask_token="[MASK]", bos_token="[DEC]",
                                   truncation_side="left", model_max_length=512, clean_up_tokenization_spaces=False)


def vicuna_tokenizer():
    """Shaped like InstructBLIP-Vicuna's Llama tokenizer: ``<unk>``=0, ``<s>``=1 (prefixed),
    ``</s>``=2, BPE, then ``<pad>`` and ``<image>`` (the released processor adds it)."""
    return lm_tokenizer(("<unk>", "<s>", "</s>"), ("<pad>", "<image>"), prefix="<s>", unk_token="<unk>",
                        bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@tiny_builder("instructblip")
@special_builder("instructblip")
def build_instructblip(out: Path) -> None:
    """InstructBLIP with a Vicuna (Llama) decoder, as ``Salesforce/instructblip-vicuna-7b``: the
    Q-Former also reads the instruction (its own tokenizer); no chat template."""
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration, InstructBlipProcessor

    from . import _llama_config

    tok, qtok = vicuna_tokenizer(), bert_like_tokenizer()
    vision, qformer, image_processor = _blip_parts(vocab_size=len(qtok), pad_token_id=qtok.pad_token_id)
    config = InstructBlipConfig(vision_config=vision, qformer_config=qformer, text_config=_llama_config(tok).to_dict(),
                                num_query_tokens=BLIP2_QUERY_TOKENS,
                                image_token_index=tok.convert_tokens_to_ids("<image>"))
    model = InstructBlipForConditionalGeneration(config).eval()
    model.query_tokens.data.normal_(0.0, 0.2)  # released weights are trained; zeros would make queries alike
    processor = InstructBlipProcessor(image_processor=image_processor, tokenizer=tok, qformer_tokenizer=qtok,
                                      num_query_tokens=BLIP2_QUERY_TOKENS)
    _save_vlm(model, processor, tok, out)


def gemma_tokenizer():
    """Shaped like PaliGemma's Gemma tokenizer: ``<pad>``=0, ``<eos>``=1, ``<bos>``=2,
    ``<unk>``=3, BPE, ``<image>`` appended; no automatic BOS (PaliGemma's processor writes it)."""
    return lm_tokenizer(("<pad>", "<eos>", "<bos>", "<unk>"), ("<image>",), pad_token="<pad>", eos_token="<eos>",
                        bos_token="<bos>", unk_token="<unk>")


@tiny_builder("paligemma")
@special_builder("paligemma")
def build_paligemma(out: Path) -> None:
    """PaliGemma (SigLIP + Gemma, prefix-LM: image and prompt attend bidirectionally, the answer
    causally), as ``google/paligemma-3b-mix-224``: no chat template (``answer en {q}``)."""
    from transformers import (GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                              SiglipImageProcessor, SiglipVisionConfig)

    tok = gemma_tokenizer()
    n_image_tokens = (IMAGE_SIZE // PATCH_SIZE) ** 2
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=64)
    text = GemmaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
                       initializer_range=0.2, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    config = PaliGemmaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), projection_dim=64,
                             image_token_index=tok.convert_tokens_to_ids("<image>"))
    config.text_config.num_image_tokens = n_image_tokens
    model = PaliGemmaForConditionalGeneration(config).eval()
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                           image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    image_processor.image_seq_length = n_image_tokens
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    _save_vlm(model, processor, tok, out)


@tiny_builder("blip-2-flan-t5")  # a variant: model_type blip-2 with an encoder-decoder language model
@special_builder("blip-2-flan-t5")
def build_blip2_flan_t5(out: Path) -> None:
    """BLIP-2 with Flan-T5, as ``Salesforce/blip2-flan-t5-xl``: the Q-Former tokens and the prompt
    enter the T5 encoder; the answer is decoded. No chat template."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, T5Config

    tok = t5_tokenizer()
    vision, qformer, image_processor = _blip_parts(vocab_size=LM_VOCAB)
    text = T5Config(vocab_size=len(tok), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                    num_heads=4, feed_forward_proj="gated-gelu", decoder_start_token_id=0,
                    pad_token_id=0, eos_token_id=1, tie_word_embeddings=False)
    config = Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(),
                         num_query_tokens=BLIP2_QUERY_TOKENS, image_token_index=tok.convert_tokens_to_ids("<image>"))
    model = Blip2ForConditionalGeneration(config).eval()
    model.query_tokens.data.normal_(0.0, 0.2)
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tok, num_query_tokens=BLIP2_QUERY_TOKENS)
    _save_vlm(model, processor, tok, out)
