"""Zero-shot image-text retrieval as a method of the one sample loop: the per-image job writes
the image's row of caption scores (scores.npy is [N images, M captions]); ranks and Recall@K
come from that matrix (``vlmprobe.metrics.retrieval``), so a run resumes like every other.

Scores:

- CLIP: ``s(i, j) = cos(f(image_i), g(caption_j))`` (L2-normalised embeddings; no logit scale,
  which would not change any rank). Caption embeddings are computed once and cached on disk
  (``ClipModel.text_classifier`` with the template ``"{}"``: keyed by model, captions, dtype);
  image embeddings come from the image-embedding cache (``classify/embeddings.py``: computed once
  per model, image list and preprocessing and reused by every run on them; the config
  records the key; ``--no-embedding-cache`` runs the image tower per batch, the reference path,
  equal within 1e-6).
- VLM: ``s(i, j) = log p(caption_j | image_i, prompt)`` (``--reduction sum|mean`` over the
  caption's tokens) through the exact shared-prefix likelihood engine (``model.score``): one
  image+prompt prefix per image, all its candidate captions in a token trie (``--scoring naive``:
  one full forward per caption, the reference path).

Candidates (``--max-candidates C``): scoring every (image, caption) pair costs N*M likelihoods for
a VLM, so a caption may be offered to only C images: *its own image plus C-1 others drawn
uniformly without replacement*, seeded by (seed, caption index). Image i then scores exactly the
captions that were offered to it (the rest of its row is NaN, i.e. not a candidate): text ->
image ranks a caption among its C images, image -> text ranks an image's captions among the
captions offered to it. Without ``--max-candidates`` every pair is scored (the standard
protocol); results.json states which rule was used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import options
from ..errors import VlmprobeError
from ..models.likelihood import SCORINGS
from .embeddings import embedding_cache_option, opened

CAPTION_PROMPT = "Describe the image briefly."
CANDIDATE_RULE = ("each caption is scored against its own image and max_candidates-1 other images drawn "
                  "uniformly without replacement (seeded by seed and caption index); image->text ranks among "
                  "the captions offered to the image")


def offered_images(caption_image: list[int], num_images: int, max_candidates: int | None, seed: int) -> list[np.ndarray]:
    """Per caption j: the image indices it is scored against (own image first, then the draws)."""
    everyone = np.arange(num_images)
    if max_candidates is None or max_candidates >= num_images:
        return [everyone] * len(caption_image)
    out = []
    for j, own in enumerate(caption_image):
        others = np.delete(everyone, own)
        draw = np.random.default_rng([seed, 11, j]).choice(others, size=max_candidates - 1, replace=False)
        out.append(np.concatenate([[own], np.sort(draw)]))
    return out


@dataclass
class RetrievalOptions(options.Options):
    max_candidates: int | None = options.option(
        None, "score each caption against its own image + C-1 random others (seeded) instead of every image; "
              "meant for VLMs on large sets (default: every pair)", metavar="C", type=int,
        check=lambda c: c >= 1, requirement="must be at least 1")
    prompt: str = options.option(CAPTION_PROMPT, f"VLM: the question before the caption (default: {CAPTION_PROMPT!r})",
                                 metavar="TEXT")
    answer_prefix: str | None = options.option(None, "VLM: text opening the answer before the caption", metavar="TEXT")
    reduction: str = options.option("sum", "VLM: caption log-likelihood summed or averaged over its tokens",
                                    choices=("sum", "mean"))
    chunk_size: int = options.option(512, "VLM: trie nodes per forward (memory bound)",
                                     check=lambda c: c >= 1, requirement="must be at least 1")
    scoring: str = options.option("fast", "VLM: fast (image+prompt once per image, the captions in a token trie; "
                                  "exact) or naive (one full forward per caption; the reference, and the one "
                                  "for families without the fast path)", choices=SCORINGS)
    embedding_cache: bool = embedding_cache_option("every CLIP retrieval run on these images")


class Method:
    name = "retrieval"
    Options = RetrievalOptions

    def __init__(self, max_candidates: int | None = None, seed: int = 0, prompt: str = CAPTION_PROMPT,
                 answer_prefix: str | None = None, reduction: str = "sum", chunk_size: int = 512,
                 scoring: str = "fast", embedding_cache: bool = True):
        RetrievalOptions(max_candidates, prompt, answer_prefix, reduction, chunk_size, scoring,
                         embedding_cache)  # validates
        self.max_candidates, self.seed, self.scoring = max_candidates, seed, scoring
        self.embedding_cache, self.embeddings = embedding_cache, None  # embeddings: classify.embeddings.ImageEmbeddings
        self.prompt, self.answer_prefix, self.reduction, self.chunk_size = prompt, answer_prefix, reduction, chunk_size
        self.kind = None
        self.captions: list[str] = []
        self.rows: dict[str, np.ndarray] = {}  # sample id -> caption indices it scores

    def config(self) -> dict:
        cfg = {"max_candidates": self.max_candidates or "all",
               "candidate_rule": CANDIDATE_RULE if self.max_candidates else "every (image, caption) pair"}
        if self.kind == "clip":
            cfg["similarity"] = "cosine of L2-normalised CLIP embeddings"
            if self.embeddings is not None:
                cfg["image_embeddings"] = self.embeddings.key
        elif self.kind == "vlm":
            cfg.update(similarity="log p(caption | image, prompt)", prompt=self.prompt,
                       answer_prefix=self.answer_prefix, reduction=self.reduction, scoring=self.scoring)
        return cfg

    def setup(self, model, dataset) -> None:
        self.kind = getattr(model, "kind", None)
        if self.kind not in ("clip", "vlm"):
            raise VlmprobeError(f"retrieval needs a CLIP model or a VLM; {model.spec} is a {self.kind} model")
        if not hasattr(dataset, "captions"):
            raise VlmprobeError(f"dataset {dataset.name!r} has no captions (use a caption file: JSONL "
                                "{image, captions} or a Karpathy-split JSON)")
        self.captions = list(dataset.captions)
        offered = offered_images(dataset.caption_image, len(dataset), self.max_candidates, self.seed)
        per_image: list[list[int]] = [[] for _ in range(len(dataset))]
        for j, imgs in enumerate(offered):
            for i in imgs:
                per_image[i].append(j)
        self.rows = {s.id: np.array(sorted(c), dtype=np.int64) for s, c in zip(dataset.samples, per_image)}
        if self.kind == "vlm":
            model.check_scoring(self.scoring)  # e.g. fast on a family without it: one line naming naive
        if self.kind == "clip":
            self.text = model.text_classifier(self.captions, ["{}"])  # [M, D], normalised, cached on disk
            if self.embedding_cache:
                from .embeddings import image_embeddings

                self.embeddings = image_embeddings(model, dataset)  # [N, D], computed once per (model, images)

    def num_scores(self, dataset) -> int:
        return len(dataset.captions)

    def image_transform(self, model):
        if getattr(model, "kind", None) != "clip":
            return None
        return opened if self.embeddings is not None else model.preprocess

    def run_batch(self, model, samples, images, rng_for):
        """-> records (image->text rank fields are added by the metrics), scores [B, M] (NaN: not offered)."""
        M = len(self.captions)
        scores = np.full((len(samples), M), np.nan, dtype=np.float32)
        rows = [self.rows[s.id] for s in samples]
        if self.kind == "clip":
            emb = self.embeddings.take(samples) if self.embeddings is not None else \
                model.encode_images(torch.stack(images)).cpu()  # [B, D], L2-normalised
            sim = (emb @ self.text.T).numpy()  # [B, M]
            for b, cols in enumerate(rows):
                scores[b, cols] = sim[b, cols]
        else:
            cands = [[self.captions[j] for j in cols] for cols in rows]
            lp = model.score(images, cands, prompt=self.prompt, answer_prefix=self.answer_prefix,
                             reduction=self.reduction, scoring=self.scoring, batch_size=len(images),
                             chunk_size=self.chunk_size).numpy()
            for b, cols in enumerate(rows):
                scores[b, cols] = lp[b, :len(cols)]
        records = [{"prediction": None, "num_candidates": int(len(cols)),
                    "top_caption": int(np.nanargmax(scores[b])) if len(cols) else None}
                   for b, cols in enumerate(rows)]
        return records, scores


def add_arguments(parser) -> None:
    options.add_arguments(parser, RetrievalOptions)


def from_args(args) -> Method:
    return Method(seed=args.seed, **options.from_args(RetrievalOptions, args).as_dict())
