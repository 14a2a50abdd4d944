"""CLIP image embeddings computed once per (model, dataset, preprocessing) and reused.

``image_embeddings(model, dataset)`` returns the L2-normalised image embeddings ``f(x)`` [N, D]
(float32, memory-mapped) of every image of ``dataset``: the ``embed`` feature of the feature
cache (``probe.extract``; key = SHA-256 of the model fingerprint and description, the exact
sample list, the preprocessing and the storage dtype), so the entry is content-keyed, resumable
and shared with linear probes on CLIP embeddings. The feature cache's blocking ``flock`` on
``<entry>.lock`` (``probe.extract.extract_features``) makes concurrent writers (runs of a study in
parallel workers) compute it once: the first computes, the others wait and then read it. (Under a
multi-process launch the processes of the launch compute it together, rank 0 holding the lock.)

Zero-shot with any templates or a CPE ensemble then scores ``s(x, c) = logit_scale * <f(x), w_c>``
from these rows (``cached_scores``) instead of running the image tower again: the formula and
the float32 arithmetic of ``ClipModel.score``, so the scores equal a recomputation within 1e-6
(tested). OOD and calibration metrics read those eval runs, so they reuse it too. CLIP retrieval
(``classify/retrieval.py``) takes its image embeddings from here as well.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class ImageEmbeddings:
    key: str  # the feature-cache entry (recorded in the run's config)
    embed: np.ndarray  # [N, D] float32, memory-mapped
    rows: dict  # sample id -> row
    valid: np.ndarray  # [N] bool (False: the image could not be read)
    computed: int  # rows computed by this call (0: reused)

    def take(self, samples) -> torch.Tensor:
        """[B, D] float32 embeddings of ``samples`` (by id)."""
        return torch.from_numpy(np.ascontiguousarray(self.embed[[self.rows[s.id] for s in samples]],
                                                     dtype=np.float32))


def embedding_key(model, dataset) -> str:
    """The cache key of (model, dataset, preprocessing) without computing anything."""
    from ..cache import content_key
    from ..probe.extract import feature_spec

    return content_key(feature_spec(model, dataset, None, None, None, "float32"))


def embedding_features(model, dataset, batch_size: int = 32, workers: int = 0, progress: bool = False,
                       cache_dir: str | os.PathLike | None = None):
    """The feature-cache entry (``probe.extract.FeatureSet``, feature ``embed``) of the image
    embeddings, computed on first use under the entry's lock (CPE reads it this way too)."""
    from ..cache import home_dir
    from ..probe.extract import extract_features

    # extract_features holds the entry's lock (``<key>.lock``, rank 0) while it computes: a second
    # lock here on the same file would be a second flock from this process and wait on itself
    root = Path(cache_dir) if cache_dir else home_dir() / "features"
    return extract_features(model, dataset, layers=None, pooling=None, batch_size=batch_size, workers=workers,
                            storage="float32", cache_dir=root, progress=progress)


def image_embeddings(model, dataset, batch_size: int = 32, progress: bool = False,
                     cache_dir: str | os.PathLike | None = None) -> ImageEmbeddings:
    """The image embeddings of ``dataset`` for the CLIP ``model`` (computed on first use)."""
    fs = embedding_features(model, dataset, batch_size=batch_size, progress=progress, cache_dir=cache_dir)
    key = embedding_key(model, dataset)
    assert fs.key == key, (fs.key, key)
    return ImageEmbeddings(key, fs.get("embed"), {i: r for r, i in enumerate(fs.ids)}, np.asarray(fs.valid),
                           fs.computed)


def cached_scores(model, emb: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """``logit_scale * emb @ classifier.T`` [B, K] (float32, CPU), as ``ClipModel.score``."""
    return (model.logit_scale * emb @ classifier.to(emb.device).T).cpu()


def embedding_cache_option(what: str):
    """The ``--embedding-cache/--no-embedding-cache`` option of a method that can score from the
    cached embeddings (``what``: which runs share them)."""
    from .. import options

    return options.option(
        True, f"score from the image embeddings of (model, dataset, preprocessing) computed once and reused by {what} "
              "(classify/embeddings.py; the config records the key)",
        negative="--no-embedding-cache", negative_help="run the image tower on every batch (the reference path)")


def opened(image) -> int:
    """The image transform of a method scoring from cached embeddings: the engine still opens
    each image (unreadable ones are counted skips, as always), nothing is preprocessed (0, a
    picklable stand-in)."""
    return 0
