"""Zero-shot image-text retrieval: ranks and Recall@K from an [N images, M captions] score matrix.

``scores[i, j]``: similarity of image i and caption j (CLIP cosine, VLM log p(caption | image));
NaN = the pair was not scored (a restricted candidate set, or a skipped image) and takes no
part in any ranking. ``caption_image[j]``: the index of caption j's own image (-1: its image
was skipped).

Ranks (1 = best). Ties count against the correct answer (pessimistic): a wrong candidate that
scores *equal to* the correct one ranks above it, so a constant scorer gets rank = number of
candidates, never a lucky 1.

- image -> text, image i with its captions G_i (those scored):
  ``rank_i = 1 + #{j not in G_i : s[i, j] >= max_{g in G_i} s[i, g]}`` (the best correct caption's
  position; standard protocol: a hit at K when *any* of the image's captions is in the top K).
- text -> image, caption j with image t = caption_image[j]:
  ``rank_j = 1 + #{i != t : s[i, j] >= s[t, j]}``.

``Recall@K`` = fraction of ranked queries with rank <= K (CLIP_benchmark's
``text_retrieval_recall@K`` is image -> text, ``image_retrieval_recall@K`` is text -> image).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import VlmprobeError

DEFAULT_KS = (1, 5, 10)


def image_to_text_ranks(scores: np.ndarray, image_captions: Sequence[Sequence[int]]) -> np.ndarray:
    """[N] float ranks (NaN: the image has no scored caption of its own)."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.full(s.shape[0], np.nan)
    for i, gt in enumerate(image_captions):
        row = s[i]
        gt = [g for g in gt if np.isfinite(row[g])]
        if not gt:
            continue
        best = row[gt].max()
        wrong = np.isfinite(row)
        wrong[gt] = False
        out[i] = 1 + int((row[wrong] >= best).sum())
    return out


def text_to_image_ranks(scores: np.ndarray, caption_image: Sequence[int]) -> np.ndarray:
    """[M] float ranks (NaN: the caption's image is skipped or the pair was not scored)."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(caption_image, dtype=np.int64)
    if t.shape != (s.shape[1],):
        raise VlmprobeError(f"retrieval: {t.size} caption-image links for {s.shape[1]} score columns")
    out = np.full(t.size, np.nan)
    cols = np.flatnonzero(t >= 0)
    true = np.full(t.size, np.nan)
    true[cols] = s[t[cols], cols]
    ok = cols[np.isfinite(true[cols])]
    if ok.size:
        other = np.isfinite(s[:, ok])
        other[t[ok], np.arange(ok.size)] = False
        out[ok] = 1 + ((s[:, ok] >= true[ok]) & other).sum(0)
    return out


def recall_at_k(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float | None]:
    """{"K": fraction of finite ranks <= K} (None when nothing was ranked)."""
    r = np.asarray(ranks, dtype=np.float64)
    r = r[np.isfinite(r)]
    return {str(k): (float((r <= k).mean()) if r.size else None) for k in ks}


def retrieval_summary(scores: np.ndarray, image_captions: Sequence[Sequence[int]], caption_image: Sequence[int],
                      ks: Sequence[int] = DEFAULT_KS) -> tuple[dict, np.ndarray, np.ndarray]:
    """-> (summary, image ranks [N], caption ranks [M]); the summary holds per direction the
    recalls, mean/median rank, queries ranked and the mean number of candidates per query."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != len(image_captions):
        raise VlmprobeError(f"retrieval: scores of shape {s.shape} for {len(image_captions)} images")
    i2t, t2i = image_to_text_ranks(s, image_captions), text_to_image_ranks(s, caption_image)
    finite = np.isfinite(s)

    def block(r: np.ndarray, candidates: np.ndarray) -> dict:
        ok = np.isfinite(r)
        return {"recall": recall_at_k(r, ks), "n_queries": int(r.size), "n_ranked": int(ok.sum()),
                "mean_rank": float(r[ok].mean()) if ok.any() else None,
                "median_rank": float(np.median(r[ok])) if ok.any() else None,
                "mean_candidates": float(candidates[ok].mean()) if ok.any() else None}

    return {"image_to_text": block(i2t, finite.sum(1)), "text_to_image": block(t2i, finite.sum(0)),
            "tie_rule": "pessimistic: a wrong candidate scoring equal to the correct one ranks above it"}, i2t, t2i


def retrieval_from_records(records: list[dict], scores: np.ndarray | None, skipped: int = 0,
                           ks: Sequence[int] = DEFAULT_KS) -> tuple[dict, np.ndarray, np.ndarray]:
    """A retrieval run's non-skipped records (``meta.captions``: the image's caption indices) and
    their score rows [N, M] -> ``retrieval_summary`` plus counts (captions whose image was skipped
    are not ranked and are counted)."""
    if scores is None:
        raise VlmprobeError("retrieval results need scores.npy")
    image_captions = [list((r.get("meta") or {}).get("captions") or []) for r in records]
    caption_image = np.full(scores.shape[1], -1, dtype=np.int64)
    for i, caps in enumerate(image_captions):
        caption_image[caps] = i
    summary, i2t, t2i = retrieval_summary(scores, image_captions, caption_image, ks)
    summary["counts"] = {"images": len(records), "skipped_images": int(skipped), "captions": int(scores.shape[1]),
                         "captions_of_skipped_images": int((caption_image < 0).sum())}
    return summary, i2t, t2i
