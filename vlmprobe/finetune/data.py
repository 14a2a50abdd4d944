"""Instruction-formatted classification data (the paper's fine-tuning format) and mixing with
general instruction data.

A classification sample becomes one two-turn conversation, in the paper's JSON form::

    {"id": ..., "image": ..., "conversations": [
        {"from": "human", "value": "<image>\\nWhat type of object is in the photo?"},
        {"from": "gpt", "value": "<answer_template.format(label)>"}]}

Internally a conversation is chat-template ``messages`` (``role`` user/assistant, ``content`` a
list of ``{"type": "image"}`` / ``{"type": "text", "text": ...}``) plus a lazy image, so any
processor's chat template renders it (``collate.ChatCollator``). General instruction data in
LLaVA's JSON format (the same schema, any number of turns, ``<image>`` marking the image in a
human turn) is converted the same way and mixed in at ``fraction`` of the final training set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..data import ImageLoadError, read_image
from ..errors import DataError

IMAGE_PLACEHOLDER = "<image>"
ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


@dataclass
class Conversation:
    """``messages`` in chat-template form; ``image()`` returns the PIL image (or None)."""

    id: str
    messages: list
    image: Callable[[], object] | None = None
    source: str = "classification"  # or "instruct"


def classification_conversations(dataset, question: str = "What type of object is in the photo?",
                                 answer_template: str = "{}") -> list[Conversation]:
    """One conversation per sample: user = image + ``question``, assistant =
    ``answer_template.format(class name)``."""
    if "{}" not in answer_template:
        raise DataError(f"answer_template {answer_template!r} must contain {{}} for the class name")
    if not dataset.labeled:
        raise DataError(f"{dataset.name}: fine-tuning data needs labeled images")
    out = []
    for i, s in enumerate(dataset.samples):
        answer = answer_template.format(dataset.classnames[s.label])
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        out.append(Conversation(str(s.id), messages, partial(dataset.load_image, i)))
    return out


def to_llava_json(conversations: Sequence[Conversation], images: Sequence[str | None]) -> list[dict]:
    """The paper's JSON records for ``conversations`` (``images``: the file name of each)."""
    records = []
    for conv, image in zip(conversations, images):
        turns = []
        for m in conv.messages:
            text = "\n".join(c["text"] for c in m["content"] if c["type"] == "text")
            if any(c["type"] == "image" for c in m["content"]):
                text = f"{IMAGE_PLACEHOLDER}\n{text}"
            turns.append({"from": {v: k for k, v in ROLES.items()}[m["role"]], "value": text})
        records.append({"id": conv.id, **({"image": image} if image else {}), "conversations": turns})
    return records


def read_instruct_json(path: str, image_dir: str | None = None) -> list[Conversation]:
    """LLaVA-format instruction data (a JSON list, or JSONL) -> conversations. Image paths are
    relative to ``image_dir`` (default: the file's directory). Raises DataError naming the record."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"instruct_json {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()] if p.suffix == ".jsonl" \
            else json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(rows, list):
        raise DataError(f"{p}: expected a list of records")
    root = Path(image_dir) if image_dir else p.parent
    out = []
    for n, row in enumerate(rows):
        where = f"{p} record {n}"
        if not isinstance(row, dict) or not isinstance(row.get("conversations"), list) or not row["conversations"]:
            raise DataError(f"{where}: needs a non-empty 'conversations' list")
        messages, placed = [], False
        for t, turn in enumerate(row["conversations"]):
            role = ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
            if role is None or not isinstance(turn.get("value"), str):
                raise DataError(f"{where} turn {t}: needs 'from' in {sorted(ROLES)} and a string 'value'")
            value, content = turn["value"], []
            if IMAGE_PLACEHOLDER in value:
                if placed or not row.get("image") or role != "user":
                    raise DataError(f"{where}: {IMAGE_PLACEHOLDER} must appear once, in a human turn of a record "
                                    "with an 'image'")
                value, placed = value.replace(IMAGE_PLACEHOLDER, "").strip(), True
                content.append({"type": "image"})
            content.append({"type": "text", "text": value})
            messages.append({"role": role, "content": content})
        if row.get("image") and not placed:  # LLaVA convention: image goes with the first human turn
            first = next((m for m in messages if m["role"] == "user"), None)
            if first is None:
                raise DataError(f"{where}: has an image but no human turn")
            first["content"].insert(0, {"type": "image"})
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{where}: has no 'gpt' turn to train on")
        image = partial(read_image, str(root / row["image"])) if row.get("image") else None
        out.append(Conversation(str(row.get("id", n)), messages, image, source="instruct"))
    return out


def mix(classification: list[Conversation], instruct: list[Conversation], fraction: float,
        seed: int = 0) -> list[Conversation]:
    """All classification conversations plus ``m = round(n * f / (1 - f))`` instruction ones
    (drawn without replacement while they last, then again), so instruction data make up
    fraction ``f`` of the result; order is a seeded shuffle."""
    if fraction <= 0 or not instruct:
        return list(classification)
    rng = np.random.default_rng(seed)
    m = int(round(len(classification) * fraction / (1.0 - fraction)))
    picks = np.concatenate([rng.permutation(len(instruct)) for _ in range(-(-m // len(instruct)))])[:m]
    merged = list(classification) + [instruct[i] for i in picks]
    return [merged[i] for i in rng.permutation(len(merged))]


def placeholder_image():
    """A black 8x8 RGB image: what a micro-batch whose images were all unreadable is run on (with
    a zero loss), so every process still takes the step (``collate``)."""
    from PIL import Image

    return Image.new("RGB", (8, 8))


class ConversationDataset(torch.utils.data.Dataset):
    """``[i] -> {"id", "messages", "image": PIL | None}``; when the image cannot be read, a skip
    record ``{"id", "skipped": error, "messages", "image": placeholder}`` (the collator drops it
    and counts it as skipped; the placeholder only serves a micro-batch with nothing else)."""

    def __init__(self, conversations: Sequence[Conversation]):
        self.conversations = list(conversations)

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, i: int):
        conv = self.conversations[i]
        try:
            image = conv.image() if conv.image is not None else None
        except ImageLoadError as e:
            return {"id": conv.id, "skipped": str(e), "messages": conv.messages, "image": placeholder_image()}
        return {"id": conv.id, "messages": conv.messages, "image": image}


class LabeledImageDataset(torch.utils.data.Dataset):
    """For CLIP fine-tuning: ``[i] -> {"pixel_values": preprocess(image) [3, H, W], "label": int}``
    (or a skip record as above, its ``pixel_values`` the preprocessed placeholder)."""

    def __init__(self, dataset, preprocess: Callable):
        self.dataset, self.preprocess = dataset, preprocess

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        sample = self.dataset.samples[i]
        try:
            image = self.dataset.load_image(i)
        except ImageLoadError as e:
            return {"id": sample.id, "skipped": str(e), "pixel_values": self.preprocess(placeholder_image()),
                    "label": sample.label}
        return {"id": sample.id, "pixel_values": self.preprocess(image), "label": sample.label}


def build_conversations(data_args, dataset, seed: int = 0) -> list[Conversation]:
    """Classification conversations for ``dataset`` per ``DataArgs`` (question, answer template),
    mixed with ``instruct_json`` at ``instruct_fraction``."""
    convs = classification_conversations(dataset, data_args.question, data_args.answer_template)
    if data_args.instruct_json and data_args.instruct_fraction > 0:
        convs = mix(convs, read_instruct_json(data_args.instruct_json, data_args.instruct_image_dir),
                    data_args.instruct_fraction, seed)
    return convs
