"""Word-level tokenizers for the miniature world, built in memory with ``tokenizers`` and
wrapped as transformers fast tokenizers (saved as ``tokenizer.json``, loaded by AutoTokenizer).

Ids: 0 ``<pad>``, 1 ``<unk>``, 2 ``<s>``, 3 ``</s>``, 4 ``<image>`` (VLM only), then the words in
sorted order. The EOS id is 3, not 2: transformers' CLIP text tower pools at the EOS token
only when ``eos_token_id != 2`` (with 2 it takes the largest token id, the wrong position).
Pre-tokenisation splits on whitespace and punctuation (``\\w+|[^\\w\\s]+``); decoding joins
words with spaces and re-attaches punctuation (WordPiece decoder cleanup).
"""
from __future__ import annotations

import re
from typing import Iterable

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "</s>", "<image>"
_WORD = re.compile(r"\w+|[^\w\s]+")


def words_of(texts: Iterable[str]) -> list[str]:
    """Sorted unique pre-tokens of ``texts`` (special tokens removed)."""
    vocab = set()
    for t in texts:
        vocab.update(_WORD.findall(t.replace(IMAGE, " ")))
    return sorted(vocab)


def build_tokenizer(texts: Iterable[str], image_token: bool, add_eos: bool, model_max_length: int):
    """-> ``PreTrainedTokenizerFast`` over the words of ``texts``. Every encoding starts with
    ``<s>``; ``add_eos`` also appends ``</s>`` (CLIP pools there). ``<image>`` is a special
    token when ``image_token``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, UNK, BOS, EOS] + ([IMAGE] if image_token else [])
    vocab = {tok: i for i, tok in enumerate(specials)}
    for w in words_of(texts):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    single = f"{BOS} $A {EOS}" if add_eos else f"{BOS} $A"
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=single + " $B", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])])
    kwargs = {"extra_special_tokens": {"image_token": IMAGE}} if image_token else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS,
                                   eos_token=EOS, model_max_length=model_max_length, **kwargs)
    if image_token:
        fast.add_special_tokens({"additional_special_tokens": [IMAGE]})
    return fast
