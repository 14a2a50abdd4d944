"""Cue-conflict stimuli (Geirhos et al., ICLR 2019; the set in bethgelab/model-vs-human).

Layout: ``ROOT/<category>/<shape><n>-<texture><m>.png`` -- one folder per category (the 16
entry-level categories airplane, bear, ..., truck for the real set), each image's file name
naming its shape category and its texture category (``airplane1-bicycle2.png``: the shape of
airplane image 1 drawn with the texture of bicycle image 2). The folder is the shape category.

Each image becomes a ``Sample`` labelled with its *shape* category, with
``meta = {"shape": name, "texture": name, "cue_conflict": shape != texture}``. Images whose
shape and texture agree stay in the run (they are ordinary classification images) but are left
out of the shape bias, as in the original protocol (``vlmprobe.metrics.shape_bias``).

A file name that does not parse, names a category with no folder, or whose shape disagrees
with its folder raises ``DataError`` naming the file (the set is curated; a stray file means
the wrong directory, so nothing is skipped silently). Non-image files are ignored.

``imagenet16()`` is the standard ImageNet-to-16 mapping (data file ``files/imagenet16.json``,
indices from model-vs-human's ``helper/human_categories.py``): a category's probability is the
mean of the softmax probabilities of its ImageNet classes (model-vs-human's default aggregation).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from ..errors import DataError
from ..specs import DATASET_SPECS
from .datasets import IMAGE_EXTENSIONS, ImageDataset, Sample

PREFIX = "cue-conflict:"
FILE_NAME = re.compile(r"^(?P<shape>[a-z_]+?)(?P<n>\d+)-(?P<texture>[a-z_]+?)(?P<m>\d+)$")


def parse_stimulus_name(name: str) -> tuple[str, str]:
    """``"airplane1-bicycle2.png"`` -> ``("airplane", "bicycle")``; ValueError if it does not parse."""
    m = FILE_NAME.match(Path(name).stem.lower())
    if not m:
        raise ValueError(f"file name {name!r} is not '<shape><n>-<texture><m>.<ext>'")
    return m["shape"], m["texture"]


def load_cue_conflict(spec: str, split: str | None = None) -> ImageDataset:
    """``cue-conflict:ROOT`` -> ImageDataset (classes: sorted folder names; label: shape)."""
    if split is not None:
        raise DataError(f"dataset {spec!r} has no splits (--split {split!r})")
    root = Path(spec[len(PREFIX):]).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset {spec!r}: {root} is not a directory")
    categories = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not categories:
        raise DataError(f"dataset {spec!r}: no category folders in {root} (expected ROOT/<category>/<image>.png)")
    index = {c: i for i, c in enumerate(categories)}
    samples = []
    for folder in categories:
        for f in sorted((root / folder).iterdir()):
            if not f.is_file() or f.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                shape, texture = parse_stimulus_name(f.name)
            except ValueError as e:
                raise DataError(f"{f}: {e}") from None
            for role, cat in (("shape", shape), ("texture", texture)):
                if cat not in index:
                    raise DataError(f"{f}: {role} category {cat!r} has no folder in {root} "
                                    f"(categories: {', '.join(categories)})")
            if shape != folder:
                raise DataError(f"{f}: shape category {shape!r} but the file is in folder {folder!r}")
            samples.append(Sample(id=f"{folder}/{f.name}", image=str(f), label=index[shape],
                                  meta={"shape": shape, "texture": texture, "cue_conflict": shape != texture}))
    if not samples:
        raise DataError(f"dataset {spec!r}: no images under {root}")
    conflict = sum(s.meta["cue_conflict"] for s in samples)
    return ImageDataset(spec, samples, categories,
                        info={"format": "cue-conflict", "cue_conflict_images": conflict,
                              "same_cue_images": len(samples) - conflict})


@lru_cache(maxsize=1)
def imagenet16() -> dict:
    """``{"source", "aggregation", "categories": {name: [ImageNet indices]}}`` (see module doc)."""
    return json.loads((Path(__file__).parent / "files" / "imagenet16.json").read_text(encoding="utf-8"))


DATASET_SPECS.register(PREFIX, load_cue_conflict,
                       "Geirhos et al. cue-conflict stimuli: ROOT/<category>/<shape><n>-<texture><m>.png")
