"""Decisions among the 16 cue-conflict categories through the 1,000 ImageNet classes.

For any model with ``score(images, candidates)`` over class names (CLIP: scaled cosine; VLM:
log p(name | image, prompt); a supervised ImageNet classifier: its logits), per image::

    p = softmax(score(x, imagenet_names))                  [1000]
    q_c = mean_{i in I_c} p_i                              per category c, I_c its ImageNet indices
    prediction = argmax_c q_c                              (ties: lowest category index)

computed in log space (``log q_c = logsumexp_{i in I_c} log_softmax(score)_i - log |I_c|``), so a
VLM's very negative log-likelihoods never underflow to log 0.

with ``I_c`` the standard ImageNet-to-16 mapping (``data.cueconflict.imagenet16``; Geirhos et
al., model-vs-human's ``ImageNetProbabilitiesTo16ClassesMapping``, mean aggregation). Scores
written to scores.npy are ``log q_c`` [B, 16] in the dataset's category order. The dataset's
class names must be categories of the mapping (``cue-conflict:ROOT`` of the real stimuli).
ImageNet names are open_clip's list, used by index (its two repeated names stay two columns).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import options
from ..data import read_classnames
from ..data.cueconflict import imagenet16
from ..errors import VlmprobeError
from ..metrics.nonfinite import prediction_fields, predict
from ..models.base import PAPER_QUESTION


@dataclass
class ImageNet16Options(options.Options):
    """No flags of its own: CLIP uses ``--templates``; a VLM uses ``--prompt``, ``--answer-prefix``
    and ``--reduction`` (declared by zeroshot / likelihood; same flag, same meaning)."""


class Method:
    name = "imagenet16"
    Options = ImageNet16Options

    def __init__(self, templates: str | None = "single", prompt: str = PAPER_QUESTION, answer_prefix: str | None = None,
                 reduction: str = "sum"):
        from ..data import load_templates

        self.templates_source = templates or "single"
        self.templates = load_templates(self.templates_source)
        self.prompt, self.answer_prefix, self.reduction = prompt, answer_prefix, reduction
        self.mapping = imagenet16()
        self.imagenet_names: list[str] = []
        self.members: list[list[int]] = []
        self.kind = None

    def config(self) -> dict:
        cfg = {"mapping_source": self.mapping["source"], "aggregation": self.mapping["aggregation"],
               "imagenet_classes": "open_clip.IMAGENET_CLASSNAMES"}
        if self.kind == "clip":
            cfg.update(templates_source=self.templates_source, templates=self.templates)
        elif self.kind == "vlm":
            cfg.update(prompt=self.prompt, answer_prefix=self.answer_prefix, reduction=self.reduction)
        return cfg

    def setup(self, model, dataset) -> None:
        self.kind = getattr(model, "kind", None)
        cats = self.mapping["categories"]
        unknown = [c for c in dataset.classnames if c not in cats]
        if unknown:
            raise VlmprobeError(f"--method imagenet16 decides among the 16 cue-conflict categories; dataset "
                                f"{dataset.name!r} has classes outside them: {unknown[:5]}")
        self.members = [cats[c] for c in dataset.classnames]
        self.imagenet_names = read_classnames("imagenet")

    def num_scores(self, dataset) -> int:
        return len(dataset.classnames)

    def _score_kwargs(self) -> dict:
        if self.kind == "clip":
            return {"templates": self.templates}
        if self.kind == "vlm":
            return {"prompt": self.prompt, "answer_prefix": self.answer_prefix, "reduction": self.reduction}
        return {}

    def candidates(self) -> list[str]:
        """Text models score the ImageNet names; a supervised classifier scores its 1,000 outputs
        by index (``"0"``..``"999"``), so repeated names never merge two outputs."""
        return self.imagenet_names if self.kind in ("clip", "vlm") else [str(i) for i in range(len(self.imagenet_names))]

    def run_batch(self, model, samples, images, rng_for):
        """PIL images -> records, log mean probabilities [B, K]."""
        logits = model.score(images, self.candidates(), **self._score_kwargs()).float().cpu()  # [B, 1000]
        logp = torch.log_softmax(logits.double(), dim=-1)
        scores = torch.stack([torch.logsumexp(logp[:, idx], dim=1) - math.log(len(idx)) for idx in self.members],
                             dim=1).numpy().astype(np.float32)  # [B, K] log mean probability
        preds, bad = predict(scores)
        return [prediction_fields(p, b) for p, b in zip(preds, bad)], scores


def add_arguments(parser) -> None:
    options.add_arguments(parser, ImageNet16Options)


def from_args(args) -> Method:
    from .likelihood import PAPER_ANSWER_PREFIX
    from .prompts import get_prompt

    prefix = getattr(args, "answer_prefix", None)
    return Method(templates=getattr(args, "templates", "single"),
                  prompt=get_prompt(getattr(args, "prompt", "default")).format(None),
                  answer_prefix=PAPER_ANSWER_PREFIX if prefix == "paper" else prefix,
                  reduction=getattr(args, "reduction", "sum"))
