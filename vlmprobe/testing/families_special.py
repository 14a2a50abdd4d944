"""Tiny builders of the families whose language model or attention is not LLaVA's: BLIP-2 with
an OPT decoder (``blip-2``), Mllama (``mllama``, images through cross-attention layers) and
PaliGemma (``paligemma``, prefix-LM attention). Each writes, from transformers' own config
classes and random seeded weights, a directory that ``hf:DIR`` loads like the released
checkpoint: config, weights, processor, tokenizer and the released checkpoint's chat template,
or none where it ships none (BLIP-2: prompts use the family's ``Question: {q} Answer:``).

Widths: 64 (bitsandbytes' CPU 4-bit kernel packs 64 inputs); 2 layers; 32 px images.
"""
from __future__ import annotations

from pathlib import Path

from . import IMAGE_SIZE, LM_VOCAB, PATCH_SIZE, _save_vlm, build_tokenizer
from .families import tiny_builder

BLIP2_QUERY_TOKENS = 4  # Q-Former queries = image tokens in the language model's input (32 in BLIP-2)


def opt_tokenizer():
    """Shaped like BLIP-2 OPT's GPT-2 tokenizer: ``<s>``=0, ``<pad>``=1, ``</s>``=2 (bos and eos,
    prefixed to every text), ``<unk>``=3, byte-level BPE, ``<image>`` appended (as the released
    processor adds it)."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    tok = build_tokenizer(LM_VOCAB - 1, first_specials=("<s>", "<pad>", "</s>", "<unk>"))
    tok.add_special_tokens([AddedToken("<image>", special=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", pair="</s> $A </s> $B",
                                                      special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side="left", model_max_length=4096,
                                   clean_up_tokenization_spaces=False)


@tiny_builder("blip-2")
def build_blip2_opt(out: Path) -> None:
    """BLIP-2 (ViT + Q-Former + OPT), as ``Salesforce/blip2-opt-2.7b``: no chat template."""
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor,
                              OPTConfig)

    tok = opt_tokenizer()
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    qformer = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   encoder_hidden_size=64, cross_attention_frequency=1, vocab_size=LM_VOCAB)
    text = OPTConfig(vocab_size=len(tok), hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                     word_embed_proj_dim=64, max_position_embeddings=512, init_std=0.2, bos_token_id=2,
                     eos_token_id=2, pad_token_id=1, tie_word_embeddings=False)
    config = Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(),
                         num_query_tokens=BLIP2_QUERY_TOKENS, image_token_index=tok.convert_tokens_to_ids("<image>"))
    model = Blip2ForConditionalGeneration(config).eval()
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                         image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tok, num_query_tokens=BLIP2_QUERY_TOKENS)
    _save_vlm(model, processor, tok, out)
