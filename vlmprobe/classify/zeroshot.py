"""CLIP zero-shot classification: ``s(x, c) = logit_scale * <f(x), w_c>`` for every class c,
prediction ``argmax_c s(x, c)`` (``ClipModel.text_classifier`` builds ``w`` [K, D])."""
from __future__ import annotations

import numpy as np
import torch

from ..data import load_templates
from ..models.base import require_kind
from .candidates import LabelSpace, add_label_space_argument
from .scoring import PixelScoresMethod


class Method(PixelScoresMethod):
    name = "zeroshot"

    def __init__(self, templates: str | None = "single", label_space: str | None = None):
        self.space = LabelSpace.parse(label_space)
        self.templates_source = templates or "single"
        self.templates = load_templates(self.templates_source)
        self.classifier = None

    def config(self) -> dict:
        cfg = {"templates_source": self.templates_source, "templates": self.templates}
        return {**cfg, "label_space": self.space.config()} if self.space.restricted else cfg

    def setup(self, model, dataset) -> None:
        require_kind(model, "clip", "--method zeroshot",
                     "use --method generate or likelihood for a VLM, classifier for a supervised model")
        self.classifier = model.text_classifier(dataset.classnames, self.templates)  # [K, D]
        self.scale = model.logit_scale
        self.space.setup(dataset)

    def run_batch(self, model, samples, images, rng_for):
        """images: list of [3, H, W] tensors -> records, logits [B, K]."""
        emb = model.encode_images(torch.stack(images)).cpu()  # [B, D]
        logits = self.space.mask((self.scale * emb @ self.classifier.T).numpy().astype(np.float32), samples)
        preds = logits.argmax(1)
        return [{"prediction": int(p)} for p in preds], logits


def add_arguments(parser) -> None:
    parser.add_argument("--templates", default="single",
                        help="CLIP prompt templates: 'single' (\"a photo of a {}.\"), 'imagenet' (open_clip's "
                             "80-template ensemble) or a text file with one '{}' template per line")
    add_label_space_argument(parser)


def from_args(args) -> Method:
    return Method(templates=args.templates, label_space=getattr(args, "label_space", None))
