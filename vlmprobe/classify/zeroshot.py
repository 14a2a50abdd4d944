"""CLIP zero-shot classification: ``s(x, c) = logit_scale * <f(x), w_c>`` for every class c,
prediction ``argmax_c s(x, c)`` (``ClipModel.text_classifier`` builds ``w`` [K, D])."""
from __future__ import annotations

import numpy as np
import torch

from ..data import load_templates
from ..metrics.nonfinite import prediction_fields, predict
from ..models.base import require_kind


class Method:
    name = "zeroshot"

    def __init__(self, templates: str | None = "single"):
        self.templates_source = templates or "single"
        self.templates = load_templates(self.templates_source)
        self.classifier = None

    def config(self) -> dict:
        return {"templates_source": self.templates_source, "templates": self.templates}

    def setup(self, model, dataset) -> None:
        require_kind(model, "clip", "--method zeroshot", "use --method generate or likelihood")
        self.classifier = model.text_classifier(dataset.classnames, self.templates).to(model.device)  # [K, D]
        self.scale = model.logit_scale

    def num_scores(self, dataset) -> int:
        return len(dataset.classnames)

    def image_transform(self, model):
        """Runs in DataLoader workers: PIL -> [3, H, W]."""
        return model.preprocess

    def run_batch(self, model, samples, images, rng_for):
        """images: list of [3, H, W] tensors -> records, logits [B, K]."""
        emb = model.encode_images(torch.stack(images))  # [B, D] float32 on the model's device
        logits = (self.scale * emb @ self.classifier.T).cpu().numpy().astype(np.float32)  # one transfer per batch
        preds, bad = predict(logits)  # NaN/inf rows (fp16 overflow) get no prediction
        return [prediction_fields(p, b) for p, b in zip(preds, bad)], logits


def add_arguments(parser) -> None:
    parser.add_argument("--templates", default="single",
                        help="CLIP prompt templates: 'single' (\"a photo of a {}.\"), 'imagenet' (open_clip's "
                             "80-template ensemble) or a text file with one '{}' template per line")


def from_args(args) -> Method:
    return Method(templates=args.templates)
