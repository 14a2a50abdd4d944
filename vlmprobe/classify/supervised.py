"""Supervised classifiers (timm / torchvision, ``kind = "classifier"``): the network's own logits.

``s(x, c) = z_idx(c)(x)`` with ``z`` the classifier's logits and ``idx(c)`` the output index of
dataset class ``c`` (``ClassifierModel.output_indices``: by index, by the model's own label
names, or by ImageNet name / WordNet id / lemma); prediction ``argmax_c s(x, c)`` over the
dataset's K classes. Every dataset class must be a class the model outputs (else a one-line
error in ``setup``). With a restricted label space (``--label-space``) classes not offered to
an image score ``-inf`` (``candidates.LabelSpace``).
"""
from __future__ import annotations

from dataclasses import dataclass


from .. import options
from ..models.base import require_kind
from .candidates import LabelSpace, label_space_option
from .scoring import PixelScoresMethod


@dataclass
class ClassifierOptions(options.Options):
    """``vlmprobe eval --method classifier`` options."""

    label_space: str | None = label_space_option()


class Method(PixelScoresMethod):
    name = "classifier"
    Options = ClassifierOptions

    def __init__(self, label_space: str | None = None):
        self.options = ClassifierOptions(label_space=label_space)
        self.space = LabelSpace.parse(label_space)
        self.index = None

    def config(self) -> dict:
        return {"label_space": self.space.config()}

    def setup(self, model, dataset) -> None:
        require_kind(model, "classifier", "--method classifier", "use --method zeroshot, generate or likelihood")
        self.index = model.output_indices(dataset.classnames)  # fails on a class the model cannot output
        self.space.setup(dataset)

    def scores(self, model, images):
        """[3, H, W] tensors -> the classifier's logits of the dataset's classes [B, K]."""
        return model.gather(model.logits(images), self.index).numpy()


def add_arguments(parser) -> None:
    options.add_arguments(parser, ClassifierOptions)


def from_args(args) -> Method:
    return Method(**options.from_args(ClassifierOptions, args).as_dict())
