"""CLIP zero-shot classification: ``s(x, c) = logit_scale * <f(x), w_c>`` for every class c,
prediction ``argmax_c s(x, c)``, through the model's public ``score`` (``ClipModel.text_classifier``
builds ``w`` [K, D] once per class list and templates, cached on disk and in memory)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import options
from ..data import load_templates
from ..metrics.nonfinite import prediction_fields, predict
from ..models.base import require_kind


@dataclass
class ZeroshotOptions(options.Options):
    templates: str = options.option(
        "single", "CLIP prompt templates: 'single' (\"a photo of a {}.\"), 'imagenet' (open_clip's 80-template "
                  "ensemble) or a text file with one '{}' template per line")


class Method:
    name = "zeroshot"
    Options = ZeroshotOptions

    def __init__(self, templates: str | None = "single"):
        self.options = ZeroshotOptions(templates=templates or "single")
        self.templates_source = self.options.templates
        self.templates = load_templates(self.templates_source)
        self.classnames: list[str] = []

    def config(self) -> dict:
        return {"templates_source": self.templates_source, "templates": self.templates}

    def setup(self, model, dataset) -> None:
        require_kind(model, "clip", "--method zeroshot", "use --method generate or likelihood")
        self.classnames = list(dataset.classnames)
        model.text_classifier(self.classnames, self.templates)  # built (or loaded) once, before the loop

    def num_scores(self, dataset) -> int:
        return len(dataset.classnames)

    def image_transform(self, model):
        """Runs in DataLoader workers: PIL -> [3, H, W]."""
        return model.preprocess

    def run_batch(self, model, samples, images, rng_for):
        """images: list of [3, H, W] tensors -> records, logits [B, K]."""
        logits = model.score(images, self.classnames, self.templates).numpy().astype(np.float32)
        preds, bad = predict(logits)  # NaN/inf rows (fp16 overflow) get no prediction
        return [prediction_fields(p, b) for p, b in zip(preds, bad)], logits


def add_arguments(parser) -> None:
    options.add_arguments(parser, ZeroshotOptions)


def from_args(args) -> Method:
    return Method(**options.from_args(ZeroshotOptions, args).as_dict())
