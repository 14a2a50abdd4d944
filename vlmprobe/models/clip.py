"""CLIP models behind the common interface: open_clip and transformers ``CLIPModel``.

Zero-shot scores are ``s(x, c) = logit_scale * <f(x), w_c>`` with ``f(x)`` the L2-normalised
image embedding [N, D] and ``w_c`` the class text classifier [K, D]: the mean of the normalised
embeddings of the class name in every template, renormalised (Radford et al., 2021).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..cache import atomic_write, content_key, file_lock, home_dir
from ..errors import VlmprobeError
from .base import LoadOptions, VisionModel, seeded_init

DEFAULT_TEMPLATES = ("a photo of a {}.",)


class ClipModel(VisionModel):
    """Shared logic; subclasses provide ``preprocess``, ``_image_embed``, ``_text_embed``."""

    kind = "clip"

    def __init__(self, spec: str, options: LoadOptions, model: torch.nn.Module, fingerprint):
        super().__init__(spec, options)
        self.model = model.eval()
        self.fingerprint = fingerprint  # what identifies the weights (for on-disk caches)
        self._classifiers: dict[str, torch.Tensor] = {}  # in-memory front of the disk cache

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    preprocess: Callable  # PIL image -> Tensor[3, H, W]

    def _image_embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _text_embed(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {**super().describe(), "logit_scale": self.logit_scale}

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    @torch.no_grad()
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> L2-normalised float32 embeddings [N, D]."""
        pixel_values = pixel_values.to(self.device, self.dtype)
        return F.normalize(self._image_embed(pixel_values).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """M strings -> L2-normalised float32 embeddings [M, D]."""
        out = [self._text_embed(list(texts[i : i + batch_size])).float() for i in range(0, len(texts), batch_size)]
        return F.normalize(torch.cat(out), dim=-1)

    def text_classifier(self, classnames: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                        cache: bool = True) -> torch.Tensor:
        """[K, D]: per class, mean over templates of normalised text embeddings, renormalised.

        Cached on disk under ``$VLMPROBE_HOME/text_classifiers`` keyed by (model fingerprint,
        class names, templates), so it is computed once per combination; processes that need
        it at once (a launch's ranks on a cold cache) wait on a lock while one computes it.
        """
        key = content_key({"model": self.fingerprint, "classes": list(classnames), "templates": list(templates),
                           "dtype": str(self.dtype)})
        if cache and key in self._classifiers:
            return self._classifiers[key]
        if not cache:
            return self._compute_classifier(classnames, templates)
        path = home_dir() / "text_classifiers" / f"{key}.pt"
        # one writer per entry (``<key>.pt.lock``); the others wait, then load what it wrote
        with file_lock(path.with_name(path.name + ".lock"), waiting=f"waiting for another process writing {path}"):
            if not path.exists():
                weights = self._compute_classifier(classnames, templates)
                atomic_write(path, lambda tmp: torch.save(weights, tmp))
            self._classifiers[key] = torch.load(path, map_location="cpu", weights_only=True)
        return self._classifiers[key]

    def _compute_classifier(self, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        texts = [t.format(c) for c in classnames for t in templates]
        emb = self.encode_texts(texts).view(len(classnames), len(templates), -1).mean(1)
        return F.normalize(emb, dim=-1).cpu()

    def pixels(self, images: Sequence) -> torch.Tensor:
        """PIL images, or tensors already made by ``preprocess`` (e.g. in DataLoader workers),
        -> [N, 3, H, W]."""
        return torch.stack([im if isinstance(im, torch.Tensor) else self.preprocess(im) for im in images])

    def score(self, images: Sequence, candidates: Sequence[str],
              templates: Sequence[str] = DEFAULT_TEMPLATES, classifier: torch.Tensor | None = None) -> torch.Tensor:
        """Images (N; PIL or ``preprocess``ed tensors) x class names (K) -> zero-shot logits
        ``logit_scale * <f(x), w_c>`` [N, K] (float32, CPU). ``classifier`` [K, D] (e.g. a CPE
        ensemble's ``classifier.pt``) replaces the template classifier when given."""
        if classifier is None:
            classifier = self.text_classifier(candidates, templates)
        elif classifier.shape[0] != len(candidates):
            raise VlmprobeError(f"{self.spec}: classifier has {classifier.shape[0]} rows for {len(candidates)} classes")
        emb = self.encode_images(self.pixels(images))  # [N, D] on the model's device
        return (self.logit_scale * emb @ classifier.to(emb.device).T).cpu()  # one transfer per batch

    def preprocessing(self) -> object:
        """What turns a PIL image into model input (JSON-able), for feature-cache keys."""
        return repr(self.preprocess)

    def feature_options(self, layers=None, pooling=None, prompt: str | None = None) -> dict:
        """Canonical ``features`` keyword arguments (``prompt`` does not apply to CLIP)."""
        if prompt is not None:
            raise VlmprobeError(f"{self.spec}: a CLIP model takes no prompt for its features")
        return {"layers": layers, "pooling": pooling}

    @torch.no_grad()
    def features(self, images: Sequence, layers=None, pooling=None) -> dict[str, torch.Tensor]:
        """``{"embed": [N, D]}`` (normalised image embeddings); vision-tower layers are given by
        subclasses that can return hidden states (``layers`` = list of ints, ``pooling`` cls|mean)."""
        if layers not in (None, "embed", "all"):
            raise VlmprobeError(f"{self.spec}: open_clip models give the image embedding only (layers=None)")
        return {"embed": self.encode_images(self.pixels(images)).cpu()}


class OpenClipModel(ClipModel):
    """open_clip model; ``name`` is a zoo architecture, ``local-dir:PATH`` or ``hf-hub:ID``."""

    def __init__(self, spec: str, options: LoadOptions, name: str, pretrained: str | None, fingerprint):
        import open_clip

        kwargs = {"precision": {"float32": "fp32", "fp32": "fp32", "float16": "fp16", "fp16": "fp16",
                                "bfloat16": "bf16", "bf16": "bf16", "auto": "fp32"}[options.resolved_dtype()]}
        random_weights = pretrained is None and not name.startswith(("local-dir:", "hf-hub:"))
        with seeded_init() if random_weights else contextlib.nullcontext():  # one spec = one set of weights
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=options.device, **kwargs)
        super().__init__(spec, options, model, fingerprint)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)

    def _image_embed(self, pixel_values):
        return self.model.encode_image(pixel_values)

    def _text_embed(self, texts):
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


class HFClipModel(ClipModel):
    """transformers ``CLIPModel`` + its processor (tokenizer and image processor)."""

    def __init__(self, spec: str, options: LoadOptions, path: str, fingerprint):
        from transformers import AutoProcessor, CLIPModel

        model = CLIPModel.from_pretrained(path, dtype=options.torch_dtype(),
                                          trust_remote_code=options.trust_remote_code)
        super().__init__(spec, options, model.to(options.device), fingerprint)
        self.processor = AutoProcessor.from_pretrained(path, trust_remote_code=options.trust_remote_code)

    def preprocess(self, image) -> torch.Tensor:
        return self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def _image_embed(self, pixel_values):
        out = self.model.get_image_features(pixel_values=pixel_values)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def _text_embed(self, texts):
        enc = self.processor.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        out = self.model.get_text_features(**enc)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def preprocessing(self) -> object:
        return self.processor.image_processor.to_dict()

    @torch.no_grad()
    def features(self, images, layers=None, pooling="cls"):
        """``embed`` plus vision-tower hidden states ``vision.{i}`` [N, D_v] pooled at CLS or mean."""
        if layers and pooling not in (None, "cls", "mean"):
            raise VlmprobeError(f"{self.spec}: CLIP vision features pool by cls or mean, not {pooling!r}")
        pixels = self.pixels(images).to(self.device, self.dtype)
        out = {"embed": F.normalize(self._image_embed(pixels).float(), dim=-1).cpu()}
        if layers:
            hs = self.model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
            idx = range(len(hs)) if layers == "all" else layers
            for i in idx:
                h = hs[i].float()
                out[f"vision.{i}"] = (h[:, 0] if pooling in (None, "cls") else h.mean(1)).cpu()
        return out
