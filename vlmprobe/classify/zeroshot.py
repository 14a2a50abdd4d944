"""CLIP zero-shot classification: ``s(x, c) = logit_scale * <f(x), w_c>`` for every class c,
prediction ``argmax_c s(x, c)``. ``w`` [K, D] comes from a template source
(``ClipModel.text_classifier`` for ``{}`` templates; the per-class mean of prompts for a
per-class prompt file, ``classify.ensemble``) or from an ensemble directory written by
``vlmprobe cpe`` (``--ensemble DIR``: its ``classifier.pt``; the run config records the
SHA-256 of ``ensemble.json`` and ``classifier.pt``)."""
from __future__ import annotations

import numpy as np
import torch

from ..cache import content_key
from ..data.templates import check_pool_classes, load_template_pool
from ..errors import VlmprobeError
from ..models.base import require_kind


class Method:
    name = "zeroshot"

    def __init__(self, templates: str | None = "single", ensemble: str | None = None):
        self.templates_source = templates or "single"
        self.ensemble_dir = ensemble
        self.ensemble_info = None
        if ensemble is not None:
            from .ensemble import load_ensemble

            if templates not in (None, "single"):
                raise VlmprobeError("--ensemble DIR already fixes the prompts; drop --templates")
            self.ensemble_classifier, self.ensemble_info = load_ensemble(ensemble)
            self.pool = []
        else:
            self.pool = load_template_pool(self.templates_source)
        self.templates = [m.template for m in self.pool if m.template is not None]
        self.classifier = None

    def config(self) -> dict:
        if self.ensemble_info is not None:
            return {"ensemble": str(self.ensemble_dir), "ensemble_sha256": self.ensemble_info["sha256"],
                    "ensemble_method": self.ensemble_info.get("method")}
        cfg = {"templates_source": self.templates_source, "templates": self.templates}
        per_class = {m.name: content_key(m.to_config()) for m in self.pool if m.per_class is not None}
        if per_class:
            cfg["per_class_prompts"] = per_class  # file name -> hash of its prompts
        return cfg

    def setup(self, model, dataset) -> None:
        require_kind(model, "clip", "--method zeroshot", "use --method generate or likelihood")
        if self.ensemble_info is not None:
            from .ensemble import check_ensemble_fits

            check_ensemble_fits(self.ensemble_info, model, dataset.classnames, f"--ensemble {self.ensemble_dir}")
            self.classifier = self.ensemble_classifier
        elif all(m.template is not None for m in self.pool):
            self.classifier = model.text_classifier(dataset.classnames, self.templates)  # [K, D]
        else:
            from .ensemble import combine, pool_embeddings

            check_pool_classes(self.pool, dataset.classnames, f"--templates {self.templates_source}")
            emb = pool_embeddings(model, dataset.classnames, self.pool)  # [T, K, D]
            self.classifier = combine(emb, torch.full((len(self.pool),), 1.0 / len(self.pool)))
        self.scale = model.logit_scale

    def num_scores(self, dataset) -> int:
        return len(dataset.classnames)

    def image_transform(self, model):
        """Runs in DataLoader workers: PIL -> [3, H, W]."""
        return model.preprocess

    def run_batch(self, model, samples, images, rng_for):
        """images: list of [3, H, W] tensors -> records, logits [B, K]."""
        emb = model.encode_images(torch.stack(images)).cpu()  # [B, D]
        logits = (self.scale * emb @ self.classifier.T).numpy().astype(np.float32)
        preds = logits.argmax(1)
        return [{"prediction": int(p)} for p in preds], logits


def add_arguments(parser) -> None:
    parser.add_argument("--templates", default="single",
                        help="CLIP prompt templates: 'single' (\"a photo of a {}.\"), 'imagenet' (open_clip's "
                             "80-template ensemble), a text file with one '{}' template per line, a JSON list "
                             "of templates with '{}' or '{c}' (CLIP_benchmark), or a per-class JSON "
                             "{class: [prompts]} (CuPL)")
    parser.add_argument("--ensemble", default=None, metavar="DIR",
                        help="use the classifier of a prompt ensemble written by `vlmprobe cpe --out DIR` "
                             "(DIR/classifier.pt; the run config records its hash)")


def from_args(args) -> Method:
    return Method(templates=args.templates, ensemble=getattr(args, "ensemble", None))
