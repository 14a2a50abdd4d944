"""Supervised classifiers (timm / torchvision, ``kind = "classifier"``): the network's own logits.

``s(x, c) = z_idx(c)(x)`` with ``z`` the classifier's logits and ``idx(c)`` the output index of
dataset class ``c`` (``ClassifierModel.output_indices``: by index, by the model's own label
names, or by ImageNet name / WordNet id / lemma); prediction ``argmax_c s(x, c)`` over the
dataset's K classes. Every dataset class must be a class the model outputs (else a one-line
error in ``setup``). With a restricted label space (``--label-space``) classes not offered to
an image score ``-inf`` (``candidates.LabelSpace``).
"""
from __future__ import annotations

import numpy as np

from ..models.base import require_kind
from .candidates import LabelSpace, add_label_space_argument
from .scoring import PixelScoresMethod


class Method(PixelScoresMethod):
    name = "classifier"

    def __init__(self, label_space: str | None = None):
        self.space = LabelSpace.parse(label_space)
        self.index = None

    def config(self) -> dict:
        return {"label_space": self.space.config()}

    def setup(self, model, dataset) -> None:
        require_kind(model, "classifier", "--method classifier", "use --method zeroshot, generate or likelihood")
        self.index = model.output_indices(dataset.classnames)  # fails on a class the model cannot output
        self.space.setup(dataset)

    def run_batch(self, model, samples, images, rng_for):
        """[3, H, W] tensors -> records, logits [B, K] float32 (-inf outside a restricted label space)."""
        scores = model.gather(model.logits(images), self.index).numpy().astype(np.float32)
        scores = self.space.mask(scores, samples)
        return [{"prediction": int(p)} for p in scores.argmax(1)], scores


def add_arguments(parser) -> None:
    add_label_space_argument(parser)


def from_args(args) -> Method:
    return Method(label_space=getattr(args, "label_space", None))
