"""Batches for training: render each conversation with the model's own chat template, let the
processor expand the image tokens, and keep labels only on the assistant's answer tokens.

How the answer tokens are found (any chat template, any number of turns):

1. For each assistant turn k, render ``messages[:k]`` with the generation prompt (``P_k``) and
   ``messages[:k+1]`` (``T_k``); the full text must extend both (prefix-stable template, checked).
   The answer's characters are ``T_k[len(P_k):]`` without surrounding whitespace (this includes
   the end-of-turn token; if the template writes no EOS, the collator appends the EOS token to
   the answer text so the model learns to stop).
2. The full text is tokenized once without image expansion, with character offsets; a token is an
   answer token iff its span overlaps an answer's characters.
3. The processor's tokens equal those with each image token repeated (the patch count); labels
   are carried over to that layout (image tokens get -100), checked token by token.

Checkpoints released without a chat template (BLIP-2, InstructBLIP, PaliGemma) render through
their family's ``prompt_format`` instead (``Family.render_messages``: ``Question: q Answer: a``),
the same text the likelihood engine scores; the answer gets the EOS appended. The family adapter
also supplies the rest (one mechanism, no per-model branches here): ``Family.encode`` replaces
the processor call (PaliGemma's prefix-LM layout), ``Family.suffix_inputs`` are set from the
first answer token on (PaliGemma's ``token_type_ids`` = 1: the causal suffix, as its processor's
``suffix=`` marks it; the labels are then exactly its processor's), and ``Family.prompt_inputs``
are taken from the prompt alone (InstructBLIP's Q-Former text never sees the answer, as LAVIS
trains it).

Encoder-decoder language models (BLIP-2 with Flan-T5; ``encoder_decoder=True``): single-turn
conversations only; the encoder reads the image and the rendered prompt, ``labels`` [B, T] are
the decoder's targets ``tok(answer) + [EOS]`` (-100 padded), as the likelihood engine scores
``tok(answer)`` from the decoder start (transformers shifts ``labels`` into the decoder input).

Output: ``input_ids`` [B, L] (right-padded), ``attention_mask`` [B, L], ``labels`` [B, L] (-100
except answer tokens), plus the processor's image tensors (``pixel_values`` ...), ``skipped``.
"""
from __future__ import annotations

import torch

from ..errors import VlmprobeError
from ..models.families import processor_images

IGNORE = -100


def _suffix_labels(ids: list[int], plain: list[int], expanded_ids: list[int]) -> list[int] | None:
    """Labels when every answer token lies in the common suffix of the tokenizer's ``ids`` and
    the processor's ``expanded_ids`` (all answers after the last image); else None."""
    n = 0
    while n < min(len(ids), len(expanded_ids)) and ids[-1 - n] == expanded_ids[-1 - n]:
        n += 1
    cut = len(ids) - n
    if any(lab != IGNORE for lab in plain[:cut]):
        return None
    return [IGNORE] * (len(expanded_ids) - n) + plain[cut:]


class ChatCollator:
    """Conversations (``ConversationDataset`` items) -> a training batch (module docstring)."""

    def __init__(self, processor, max_length: int | None = None, family=None, encoder_decoder: bool = False):
        """``family``: the model's ``Family`` adapter (``vlm.family``); None = chat template only.
        ``encoder_decoder``: the language model is one (module docstring)."""
        self.encoder_decoder = encoder_decoder
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        self.family = family
        self.prompt_format = family is not None and family.uses_prompt_format(processor)
        image_token = getattr(processor, "image_token", None)
        self.image_token_id = getattr(processor, "image_token_id", None)
        if self.image_token_id is None and image_token is not None:  # BLIP-2 keeps an AddedToken: its text
            self.image_token_id = self.tokenizer.convert_tokens_to_ids(str(image_token))
        if not self.tokenizer.is_fast:
            raise VlmprobeError("fine-tuning needs a fast tokenizer (character offsets locate the answer tokens)")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None \
            else self.tokenizer.eos_token_id
        self._append_eos = None

    def _render(self, messages, generation_prompt: bool = False) -> str:
        if self.prompt_format:
            return self.family.render_messages(messages, generation_prompt)
        return self.processor.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)

    def needs_eos(self) -> bool:
        """True when the template ends an assistant turn without the tokenizer's EOS."""
        if self._append_eos is None:
            eos = self.tokenizer.eos_token
            probe = [{"role": "user", "content": [{"type": "text", "text": "x"}]},
                     {"role": "assistant", "content": [{"type": "text", "text": "y"}]}]
            tail = self._render(probe)[len(self._render(probe[:1], True)):]
            self._append_eos = bool(eos) and eos not in tail
        return self._append_eos

    def _with_eos(self, messages):
        if not self.needs_eos():
            return messages
        out = []
        for m in messages:
            if m["role"] == "assistant":
                content = [dict(c) for c in m["content"]]
                last = max(i for i, c in enumerate(content) if c["type"] == "text")
                content[last]["text"] = content[last]["text"] + self.tokenizer.eos_token
                m = {**m, "content": content}
            out.append(m)
        return out

    def render_with_spans(self, messages) -> tuple[str, list[tuple[int, int]]]:
        """Full text and the character spans [start, end) of every assistant answer."""
        messages = self._with_eos(messages)
        full = self._render(messages)
        spans = []
        for k, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt, through = self._render(messages[:k], True), self._render(messages[: k + 1])
            if not (through.startswith(prompt) and full.startswith(through)):
                raise VlmprobeError("the chat template is not prefix-stable (a rendered turn changes when later "
                                    "turns are added); answer tokens cannot be located")
            region = through[len(prompt):]
            start = len(prompt) + len(region) - len(region.lstrip())
            end = len(prompt) + len(region.rstrip())
            if end > start:
                spans.append((start, end))
        return full, spans

    def _labels(self, text: str, spans, expanded_ids: list[int]) -> list[int]:
        """Labels in the processor's (image-expanded) layout, see module docstring. Where the
        processor expands an image into more than a run of image tokens (Pixtral's row breaks,
        InternVL's ``<img>...</img>``, Gemma 3's ``\n\n<boi>...<eoi>\n\n``), the answers
        are aligned on the common suffix of the two token lists instead (``_suffix_labels``)."""
        enc = self.tokenizer(text, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        plain = [tid if any(a < e and b > s and b > a for s, e in spans) else IGNORE
                 for tid, (a, b) in zip(ids, offsets)]
        try:
            return self._run_labels(ids, plain, expanded_ids)
        except VlmprobeError:
            labels = _suffix_labels(ids, plain, expanded_ids)
            if labels is None:
                raise
            return labels

    def _run_labels(self, ids: list[int], plain: list[int], expanded_ids: list[int]) -> list[int]:
        """Each image token of ``ids`` matches a run of image tokens in ``expanded_ids``."""
        labels, j = [], 0
        for tid, lab in zip(ids, plain):
            if tid == self.image_token_id:
                run = 0
                while j < len(expanded_ids) and expanded_ids[j] == tid:
                    run, j = run + 1, j + 1
                if run == 0:
                    raise VlmprobeError("processor output has no image tokens where the text has one")
                labels += [IGNORE] * run
                continue
            if j >= len(expanded_ids) or expanded_ids[j] != tid:
                raise VlmprobeError("processor tokens differ from the tokenizer's beyond image expansion; "
                                    "cannot align labels")
            labels.append(lab)
            j += 1
        if j != len(expanded_ids):
            raise VlmprobeError("processor output is longer than the tokenized text; cannot align labels")
        return labels

    def __call__(self, items) -> dict:
        kept = [it for it in items if "skipped" not in it]
        if not kept:  # the placeholder of the first item, no supervised token: a zero loss (``empty``)
            batch = self([{"messages": items[0]["messages"], "image": items[0]["image"]}])
            batch["labels"].fill_(IGNORE)
            return {**batch, "skipped": len(items), "empty": True}
        images = processor_images(self.processor, [it["image"] for it in kept])
        images = images if any(images) else None
        if self.encoder_decoder:
            return {**self._seq2seq(kept, images), "skipped": len(items) - len(kept)}
        texts, spans = zip(*(self.render_with_spans(it["messages"]) for it in kept))
        batch = self._encode(list(texts), images)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        labels = torch.full_like(ids, IGNORE)
        for r, (text, sp) in enumerate(zip(texts, spans)):
            n = int(mask[r].sum())
            labels[r, :n] = torch.tensor(self._labels(text, sp, ids[r, :n].tolist()))
        self._family_inputs(batch, labels, texts, spans, images)
        length = ids.shape[1]
        if self.max_length and length > self.max_length:
            if self.image_token_id is not None and (ids[:, self.max_length:] == self.image_token_id).any():
                raise VlmprobeError(f"max_length {self.max_length} cuts through the image tokens; raise max_length")
            for key, value in list(batch.items()):
                if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == length:
                    batch[key] = value[:, : self.max_length]
            labels = labels[:, : self.max_length]
        batch["labels"] = labels
        batch["skipped"] = len(items) - len(kept)
        return batch

    def _seq2seq(self, kept, images) -> dict:
        """Encoder inputs from the prompts, decoder ``labels`` = ``tok(answer) + [EOS]``."""
        prompts, targets = [], []
        for it in kept:
            msgs = it["messages"]
            if sum(m["role"] == "assistant" for m in msgs) != 1 or msgs[-1]["role"] != "assistant":
                raise VlmprobeError("an encoder-decoder model trains on single-turn conversations (one final "
                                    f"assistant answer); conversation {it.get('id', '?')!r} has another shape")
            prompts.append(self._render(msgs[:-1], True))
            answer = " ".join(c["text"] for c in msgs[-1]["content"] if c["type"] == "text").strip()
            targets.append(self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id])
        batch = self._encode(prompts, images)
        labels = torch.full((len(targets), max(map(len, targets))), IGNORE, dtype=torch.long)
        for r, t in enumerate(targets):
            labels[r, :len(t)] = torch.tensor(t)
        batch["labels"] = labels
        return batch

    def _encode(self, texts: list[str], images) -> dict:
        """The processor's (or ``Family.encode``'s) right-padded batch of ``texts``."""
        encode = self.family.encode if self.family is not None and self.family.encode is not None else None
        old = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"
        try:
            kwargs = dict(text=texts, images=images, padding=True, return_tensors="pt")
            return dict(self.processor(**kwargs) if encode is None else encode(self.processor, **kwargs))
        finally:
            self.tokenizer.padding_side = old

    def _family_inputs(self, batch: dict, labels: torch.Tensor, texts, spans, images) -> None:
        """``Family.suffix_inputs`` from each row's first answer token on (PaliGemma: the causal
        suffix, ``token_type_ids`` = 1), ``Family.prompt_inputs`` from the prompt alone (the
        text before the first answer; InstructBLIP's Q-Former). In place."""
        if self.family is None:
            return
        for key, value in self.family.suffix_inputs:
            if key not in batch:
                raise VlmprobeError(f"the {self.family.name} family sets {key!r} on answer tokens, "
                                    "but the processor returned none")
            answer = (labels != IGNORE).long()
            tail = (answer.cumsum(1) > 0) & batch["attention_mask"].bool()
            batch[key] = batch[key].masked_fill(tail, value)
        if self.family.prompt_inputs:
            prompts = [text[: sp[0][0]].rstrip() if sp else text for text, sp in zip(texts, spans)]
            alone = self._encode(prompts, images)
            for key in self.family.prompt_inputs:
                batch[key] = alone[key]


def clip_collate(items) -> dict:
    """CLIP items -> ``pixel_values`` [B, 3, H, W], ``labels`` [B], ``skipped``; all skipped ->
    the first item's placeholder with ``empty`` (the training loop zeroes its loss)."""
    kept = [it for it in items if "skipped" not in it]
    if not kept:
        return {"pixel_values": items[0]["pixel_values"][None], "labels": torch.tensor([items[0]["label"]]),
                "skipped": len(items), "empty": True}
    return {"pixel_values": torch.stack([it["pixel_values"] for it in kept]),
            "labels": torch.tensor([it["label"] for it in kept]), "skipped": len(items) - len(kept)}
