"""Image-caption sets for zero-shot retrieval (``vlmprobe retrieval --data CAPTIONS``).

Two formats:

- JSONL, one image per line: ``{"image": path, "captions": ["...", ...]}`` (optional ``id``;
  paths relative to the file, or to ``image_root``).
- The Karpathy-split JSON of COCO / Flickr30k (``dataset_coco.json``, ``dataset_flickr30k.json``):
  ``{"images": [{"filename", "filepath" (COCO only, e.g. "val2014"), "split" (train/restval/val/test),
  "sentences": [{"raw": "...", ...}, ...], ...}], "dataset": ...}``; an image's path is
  ``image_root/filepath/filename`` (``image_root`` defaults to the JSON's directory). ``split``
  defaults to ``test`` (the 5k COCO / 1k Flickr30k test images of the standard protocol).

Captions are numbered globally in file order (image by image). An image without captions, an
empty (blank) or non-string caption, or a row without ``image`` raises ``DataError`` naming the
file and line (JSONL) or the ``images[i]`` entry (Karpathy); nothing is dropped silently.
``limit`` keeps a seeded random subset of images (in file order) with all their captions.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..jsonl import read_jsonl
from ..specs import CAPTION_SPECS
from .datasets import ImageDataset, Sample


class CaptionDataset(ImageDataset):
    """An unlabeled ImageDataset plus ``captions`` (M strings) and ``caption_image`` (M sample
    indices); each sample's ``meta["captions"]`` lists its global caption indices."""

    def __init__(self, name: str, samples: list[Sample], captions: list[str], info: dict):
        super().__init__(name, samples, [], info=info)
        self.captions = list(captions)
        self.caption_image = [-1] * len(self.captions)
        for i, s in enumerate(samples):
            for j in s.meta["captions"]:
                self.caption_image[j] = i

    def describe(self) -> dict:
        digest = hashlib.sha256(json.dumps(self.captions, ensure_ascii=False).encode()).hexdigest()[:16]
        return {**super().describe(), "num_captions": len(self.captions), "captions_sha256": digest}


def _check_captions(caps, where: str, image: str) -> list[str]:
    if not isinstance(caps, list) or not caps:
        raise DataError(f"{where}: image {image} has no captions")
    for j, c in enumerate(caps):
        if not isinstance(c, str):
            raise DataError(f"{where}: caption {j} of image {image} is not a string ({type(c).__name__})")
        if not c.strip():
            raise DataError(f"{where}: caption {j} of image {image} is empty")
    return [c.strip() for c in caps]


def _jsonl_rows(path: Path, base: Path) -> list[tuple[str, str, list[str]]]:
    rows = []
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(row.get("image"), str) or not row["image"]:
            raise DataError(f"{where}: missing field 'image'")
        if "captions" not in row:
            raise DataError(f"{where}: missing field 'captions' (image {row['image']})")
        img = Path(row["image"]).expanduser()
        rows.append((str(row.get("id", row["image"])), str(img if img.is_absolute() else base / img),
                     _check_captions(row["captions"], where, row["image"])))
    return rows


def _karpathy_rows(path: Path, doc: dict, base: Path, split: str) -> list[tuple[str, str, list[str]]]:
    rows = []
    for i, entry in enumerate(doc["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise DataError(f"{where}: missing field 'filename'")
        if entry.get("split") != split:
            continue
        rel = str(Path(entry.get("filepath") or "") / entry["filename"])
        sents = entry.get("sentences")
        if not isinstance(sents, list):
            raise DataError(f"{where} ({rel}): missing field 'sentences'")
        raws = []
        for j, s in enumerate(sents):
            if not isinstance(s, dict) or "raw" not in s:
                raise DataError(f"{where} ({rel}): sentences[{j}] has no 'raw' text")
            raws.append(s["raw"])
        rows.append((rel, str(base / rel), _check_captions(raws, where, rel)))
    if not rows:
        splits = sorted({str(e.get("split")) for e in doc["images"] if isinstance(e, dict)})
        raise DataError(f"{path}: no images with split {split!r} (splits present: {', '.join(splits)})")
    return rows


def load_captions(spec: str, split: str | None = None, image_root: str | None = None, limit: int | None = None,
                  seed: int = 0) -> CaptionDataset:
    """Read a caption file (module doc) -> CaptionDataset; raises DataError with one line."""
    entry = CAPTION_SPECS.find(spec)
    if entry is not None:
        return entry.resolve(spec, limit=limit, seed=seed)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError(f"caption file {spec!r} does not exist")
    base = Path(image_root).expanduser() if image_root else path.parent
    if path.suffix == ".jsonl":
        if split is not None:
            raise DataError(f"{path}: --split applies to Karpathy-split JSON files, not JSONL caption files")
        rows, fmt = _jsonl_rows(path, base), "captions-jsonl"
    elif path.suffix == ".json":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
            raise DataError(f"{path}: expected a Karpathy-split JSON object with an 'images' list")
        split = split or "test"
        rows, fmt = _karpathy_rows(path, doc, base, split), f"karpathy-{doc.get('dataset', 'unknown')}"
    else:
        raise DataError(f"caption file {spec!r}: expected .jsonl ({{image, captions}}) or a Karpathy-split .json")
    return build_caption_dataset(spec, rows, {"format": fmt, "split": split}, limit, seed)


def build_caption_dataset(name: str, rows: list[tuple[str, str, list[str]]], info: dict, limit: int | None = None,
                          seed: int = 0) -> CaptionDataset:
    """(id, image path, captions) rows -> CaptionDataset (seeded ``limit`` subset of images)."""
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{name}: image id {dup!r} appears more than once (add a unique 'id' field)")
    if limit is not None and limit < len(rows):
        if limit <= 0:
            raise DataError(f"--limit must be positive (got {limit})")
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=limit, replace=False))
        rows = [rows[i] for i in keep]
    samples, captions = [], []
    for rid, image, caps in rows:
        samples.append(Sample(id=rid, image=image, label=-1,
                              meta={"captions": list(range(len(captions), len(captions) + len(caps)))}))
        captions += caps
    return CaptionDataset(name, samples, captions, {**info, "limit": limit, "seed": seed})
