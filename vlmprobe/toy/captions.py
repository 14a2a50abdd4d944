"""Digit captions for an offline retrieval run on the miniature world (``toy:captions``).

One test-split image per class (drawn with ``seed``), each with several captions: the toy
CLIP's four caption templates and the toy VLM's four naming answers, filled with the digit's
name (8 captions per image, 80 in all; every caption text belongs to exactly one image). Image
-> text asks whether a model ranks one of the image's own captions first among the 80;
text -> image whether a caption's image comes first among the 10. Images are the world's
exported PNGs (data stage only, no training).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .corpus import CAPTION_TEMPLATES, NAMING_QUESTIONS
from .digits import CLASSNAMES

TEMPLATES = tuple(CAPTION_TEMPLATES) + tuple(named for _, named, _ in NAMING_QUESTIONS)


def caption_rows(root: Path, seed: int = 0) -> list[tuple[str, str, list[str]]]:
    """(id, image path, captions) for one seeded test image per class, in class order."""
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if line]
    test = [r for r in rows if r["split"] == "test"]
    rng = np.random.default_rng([seed, 13])
    out = []
    for name in CLASSNAMES:
        mine = [r for r in test if r["label"] == name]
        r = mine[int(rng.integers(len(mine)))]
        out.append((r["id"], str(root / r["image"]), [t.format(name) for t in TEMPLATES]))
    return out


def load_toy_captions(spec: str = "toy:captions", limit: int | None = None, seed: int = 0):
    """``toy:captions`` -> CaptionDataset."""
    from ..data.captions import build_caption_dataset
    from ..errors import DataError

    if spec != "toy:captions":
        raise DataError(f"unknown toy caption set {spec!r}: use toy:captions")
    from .build import ensure_data

    root = ensure_data()
    return build_caption_dataset("toy:captions", caption_rows(root, seed),
                                 {"format": "toy-captions", "toy_dir": str(root)}, limit, seed)
