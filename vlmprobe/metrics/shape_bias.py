"""Shape bias on cue-conflict images (Geirhos et al., ICLR 2019).

Over the cue-conflict images (shape category != texture category) that were evaluated, each
decision is a *shape* decision (prediction == shape category), a *texture* decision
(prediction == texture category) or *other* (any other category, or no prediction at all, e.g.
an unmatched generated answer)::

    shape_bias = #shape / (#shape + #texture)        (None when both are 0)

Per category (the standard per-category plot): the same over the images whose *shape* is that
category (model-vs-human groups by the image's shape category). Images whose shape and texture
agree are counted under ``excluded_same_cue`` and nowhere else. ``shape_accuracy`` and
``texture_accuracy`` are the shape/texture decisions over all cue-conflict images (the
fractions model-vs-human reports before taking the ratio).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import VlmprobeError


def _block(shape: int, texture: int, other: int) -> dict:
    n = shape + texture + other
    return {"shape_bias": shape / (shape + texture) if shape + texture else None,
            "shape": shape, "texture": texture, "other": other, "n": n,
            "shape_accuracy": shape / n if n else None, "texture_accuracy": texture / n if n else None}


def shape_bias(predictions: Sequence[int | None], shapes: Sequence[int], textures: Sequence[int],
               classnames: Sequence[str]) -> dict:
    """predictions, shapes, textures: [N] class indices (prediction None or -1: no decision).

    -> ``{"overall": block, "per_category": {name: block}, "excluded_same_cue": int}`` with
    ``block = {shape_bias, shape, texture, other, n, shape_accuracy, texture_accuracy}``;
    categories with no cue-conflict image are left out of ``per_category``."""
    pred = np.array([-1 if p is None else int(p) for p in predictions], dtype=np.int64)
    shp, tex = np.asarray(shapes, dtype=np.int64), np.asarray(textures, dtype=np.int64)
    if not (pred.shape == shp.shape == tex.shape):
        raise VlmprobeError(f"shape bias: {pred.size} predictions, {shp.size} shape and {tex.size} texture labels")
    k = len(classnames)
    for name, arr in (("shape", shp), ("texture", tex)):
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise VlmprobeError(f"shape bias: {name} label outside the {k} categories")
    conflict = shp != tex
    is_shape, is_texture = (pred == shp) & conflict, (pred == tex) & conflict
    is_other = conflict & ~is_shape & ~is_texture

    def counts(mask) -> dict:
        return _block(int(is_shape[mask].sum()), int(is_texture[mask].sum()), int(is_other[mask].sum()))

    per_category = {str(classnames[c]): counts(conflict & (shp == c)) for c in range(k) if (conflict & (shp == c)).any()}
    return {"overall": counts(conflict), "per_category": per_category,
            "excluded_same_cue": int((~conflict).sum())}


def shape_bias_from_records(records: list[dict], classnames: Sequence[str]) -> dict | None:
    """Shape bias of a run's non-skipped records whose ``meta`` holds ``shape`` and ``texture``
    category names (cue-conflict datasets); None when no record has them."""
    rows = [r for r in records if isinstance(r.get("meta"), dict) and "texture" in r["meta"] and "shape" in r["meta"]]
    if not rows:
        return None
    index = {str(n): i for i, n in enumerate(classnames)}
    missing = sorted({r["meta"][f] for r in rows for f in ("shape", "texture")} - set(index))
    if missing:
        raise VlmprobeError(f"shape bias: categories {missing} are not in the run's class list")
    return shape_bias([r.get("prediction") for r in rows], [index[r["meta"]["shape"]] for r in rows],
                      [index[r["meta"]["texture"]] for r in rows], classnames)
