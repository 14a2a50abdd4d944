"""CLIP zero-shot classification: ``s(x, c) = logit_scale * <f(x), w_c>`` for every class c,
prediction ``argmax_c s(x, c)``, through the model's public ``score``. ``w`` [K, D] comes from a
template source (``ClipModel.text_classifier`` for ``{}`` templates, cached on disk and in
memory; the per-class mean of prompts for a per-class prompt file, ``classify.ensemble``) or
from an ensemble directory written by ``vlmprobe cpe`` (``--ensemble DIR``: its
``classifier.pt``; the run config records the SHA-256 of ``ensemble.json`` and
``classifier.pt``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import options
from ..cache import content_key
from ..data.templates import check_pool_classes, load_template_pool
from ..errors import VlmprobeError
from ..models.base import require_kind
from .candidates import LabelSpace, label_space_option
from .embeddings import embedding_cache_option, opened
from .scoring import PixelScoresMethod


@dataclass
class ZeroshotOptions(options.Options):
    templates: str = options.option(
        "single", "CLIP prompt templates: 'single' (\"a photo of a {}.\"), 'imagenet' (open_clip's 80-template "
                  "ensemble), a text file with one '{}' template per line, a JSON list of templates with '{}' or "
                  "'{c}' (CLIP_benchmark), or a per-class JSON {class: [prompts]} (CuPL)")
    ensemble: str | None = options.option(
        None, "use the classifier of a prompt ensemble written by `vlmprobe cpe --out DIR` (DIR/classifier.pt; "
              "the run config records its hash)", metavar="DIR")
    label_space: str | None = label_space_option()
    embedding_cache: bool = embedding_cache_option("every zero-shot run with any templates")


class Method(PixelScoresMethod):
    name = "zeroshot"
    Options = ZeroshotOptions

    def __init__(self, templates: str | None = "single", ensemble: str | None = None, label_space: str | None = None,
                 embedding_cache: bool = True):
        self.options = ZeroshotOptions(templates=templates or "single", ensemble=ensemble, label_space=label_space,
                                       embedding_cache=embedding_cache)
        self.embeddings = None  # classify.embeddings.ImageEmbeddings when the cache is used
        self.space = LabelSpace.parse(label_space)
        self.templates_source = self.options.templates
        self.ensemble_info = None
        if ensemble is not None:
            from .ensemble import load_ensemble

            if self.templates_source != "single":
                raise VlmprobeError("--ensemble DIR already fixes the prompts; drop --templates")
            self.ensemble_classifier, self.ensemble_info = load_ensemble(ensemble)
            self.pool = []
        else:
            self.pool = load_template_pool(self.templates_source)
        self.templates = [m.template for m in self.pool if m.template is not None]
        self.classnames: list[str] = []
        self.classifier = None  # [K, D] when not built from `{}` templates by the model

    def config(self) -> dict:
        cfg = self._config()
        if self.embeddings is not None:
            cfg = {**cfg, "image_embeddings": self.embeddings.key}
        return {**cfg, "label_space": self.space.config()} if self.space.restricted else cfg

    def _config(self) -> dict:
        if self.ensemble_info is not None:
            return {"ensemble": str(self.options.ensemble), "ensemble_sha256": self.ensemble_info["sha256"],
                    "ensemble_method": self.ensemble_info.get("method")}
        cfg = {"templates_source": self.templates_source, "templates": self.templates}
        per_class = {m.name: content_key(m.to_config()) for m in self.pool if m.per_class is not None}
        if per_class:
            cfg["per_class_prompts"] = per_class  # file name -> hash of its prompts
        return cfg

    def setup(self, model, dataset) -> None:
        require_kind(model, "clip", "--method zeroshot",
                     "use --method generate or likelihood for a VLM, classifier for a supervised model")
        self.classnames = list(dataset.classnames)
        self.space.setup(dataset)
        if self.ensemble_info is not None:
            from .ensemble import check_ensemble_fits

            check_ensemble_fits(self.ensemble_info, model, self.classnames, f"--ensemble {self.options.ensemble}")
            self.classifier = self.ensemble_classifier
        elif all(m.template is not None for m in self.pool):
            model.text_classifier(self.classnames, self.templates)  # built (or loaded) once, before the loop
        else:
            from .ensemble import combine, pool_embeddings

            check_pool_classes(self.pool, self.classnames, f"--templates {self.templates_source}")
            emb = pool_embeddings(model, self.classnames, self.pool)  # [T, K, D]
            self.classifier = combine(emb, torch.full((len(self.pool),), 1.0 / len(self.pool)))
        if self.options.embedding_cache:
            from .embeddings import image_embeddings

            self.embeddings = image_embeddings(model, dataset)

    def image_transform(self, model):
        """With cached embeddings the images are still opened (unreadable ones are skipped as
        always) but not preprocessed: the image tower does not run."""
        return opened if self.embeddings is not None else model.preprocess

    def run_batch(self, model, samples, images, rng_for):
        if self.embeddings is None:
            return super().run_batch(model, samples, images, rng_for)
        from .embeddings import cached_scores

        classifier = self.classifier if self.classifier is not None else \
            model.text_classifier(self.classnames, self.templates)
        return self.records_from_scores(cached_scores(model, self.embeddings.take(samples), classifier).numpy(), samples)

    def scores(self, model, images):
        """images: list of [3, H, W] tensors -> logits [B, K] (scaled cosines)."""
        return model.score(images, self.classnames, self.templates, classifier=self.classifier).numpy()


def add_arguments(parser) -> None:
    options.add_arguments(parser, ZeroshotOptions)


def from_args(args) -> Method:
    return Method(**options.from_args(ZeroshotOptions, args).as_dict())
