"""Supervised image classifiers (timm, torchvision) behind the common interface: the third
kind of model, ``kind = "classifier"`` (the "ImageNet models" CLIP is compared with).

- ``score(images, candidates) -> [N, K]``: the network's logits ``z = f(x)`` [N, C] gathered at
  the output index of each candidate class: ``s(x, c) = z[idx(c)]``. A candidate is an output
  index or a name; names are matched against the model's own label list when it has one
  (``label_names`` in a timm ``config.json``, ``classes.json`` beside the weights), else against
  ImageNet-1k (index, WordNet id, open_clip name or WordNet lemma; ``data.imagenet_classes``). A name
  with several indices (ImageNet's duplicated "missile"/"sunglasses", merged by the dataset's
  duplicate policy) scores ``max_j z[j]`` over them. A candidate the model cannot output is a
  ModelLoadError-style one-line error, never a silent column.
- ``features(images, layers)``: ``pre_logits`` (the input of the final linear layer [N, D],
  captured by a forward pre-hook) and intermediate blocks (``layers``: None / "all" = every
  block, or module names), each pooled to [N, D] by the mean over spatial positions / tokens.
- Preprocessing is the library's own: timm ``resolve_data_config`` + ``create_transform``
  (eval mode); torchvision: the weights' ``transforms()`` (ImageNet 224 centre crop for random
  or file weights).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Sequence

import torch

from ..errors import ModelLoadError, VlmprobeError
from .base import LoadOptions, VisionModel, seeded_init


class ClassifierModel(VisionModel):
    """A torch image classifier with a preprocessing transform and (optionally) label names."""

    kind = "classifier"

    def __init__(self, spec: str, options: LoadOptions, net: torch.nn.Module, transform, fingerprint,
                 label_names: Sequence[str] | None = None, blocks: Sequence[str] = (), source: dict | None = None):
        super().__init__(spec, options)
        dtype = options.torch_dtype()
        self.net = net.eval().to(options.device, dtype=None if dtype == "auto" else dtype)
        self.preprocess = transform  # PIL image -> Tensor[3, H, W]
        self.fingerprint = fingerprint
        self.head = _final_linear(self.net)
        self.num_outputs = self.head.out_features
        self.label_names = list(label_names) if label_names else None
        if self.label_names is not None and len(self.label_names) != self.num_outputs:
            raise ModelLoadError(f"model spec {spec!r}: {len(self.label_names)} label names for "
                                 f"{self.num_outputs} outputs")
        if self.label_names is None and self.num_outputs != 1000:
            raise ModelLoadError(f"model spec {spec!r}: {self.num_outputs} outputs and no label names (save a "
                                 "classes.json or timm label_names with it; only 1000-way models are ImageNet)")
        self.blocks = list(blocks)
        self.source = source or {}

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def describe(self) -> dict:
        return {**super().describe(), **self.source, "num_outputs": self.num_outputs,
                "label_space": "own label names" if self.label_names else "imagenet-1k"}

    # -------------------------------------------------------------- label space
    def output_indices(self, candidates: Sequence) -> list[tuple[int, ...]]:
        """Per candidate, the output indices it names (see module docstring)."""
        from ..data.imagenet_classes import imagenet_indices

        out = []
        own = {n.strip().lower(): [] for n in self.label_names} if self.label_names else None
        if own is not None:
            for i, n in enumerate(self.label_names):
                own[n.strip().lower()].append(i)
        for c in candidates:
            if isinstance(c, int) or str(c).strip().isdigit():
                i = int(c)
                if not 0 <= i < self.num_outputs:
                    raise VlmprobeError(f"{self.spec}: class index {i} outside its {self.num_outputs} outputs")
                out.append((i,))
            elif own is not None:
                idx = own.get(str(c).strip().lower())
                if not idx:
                    raise VlmprobeError(f"class {c!r} is not one of {self.spec}'s {self.num_outputs} label names "
                                        f"({', '.join(self.label_names[:5])}...)")
                out.append(tuple(idx))
            else:
                out.append(imagenet_indices(c, what="class"))
        return out

    # -------------------------------------------------------------- forward passes
    def _pixels(self, images: Sequence) -> torch.Tensor:
        """PIL images or preprocessed [3, H, W] tensors -> [N, 3, H, W] on the model's device."""
        pix = torch.stack([im if isinstance(im, torch.Tensor) else self.preprocess(im) for im in images])
        return pix.to(self.device, self.dtype)

    @torch.no_grad()
    def logits(self, images: Sequence) -> torch.Tensor:
        """[N, C] float32 CPU logits over all outputs."""
        return self.net(self._pixels(images)).float().cpu()

    def gather(self, logits: torch.Tensor, index: list[tuple[int, ...]]) -> torch.Tensor:
        """[N, C] logits -> [N, K]: column k = max over candidate k's output indices."""
        cols = [logits[:, list(ix)].amax(1) if len(ix) > 1 else logits[:, ix[0]] for ix in index]
        return torch.stack(cols, 1)

    def score(self, images: Sequence, candidates: Sequence, **_) -> torch.Tensor:
        """Images (N) x candidate classes (K) -> logits [N, K] (float32, CPU)."""
        return self.gather(self.logits(images), self.output_indices(candidates))

    @torch.no_grad()
    def features(self, images: Sequence, layers=None, pooling=None, **_) -> dict[str, torch.Tensor]:
        """``pre_logits`` [N, D] and block outputs (mean-pooled) ``{name: [N, D_l]}``; ``layers``:
        None/"all" (every block), "pre_logits" (only the embedding) or a list of module names."""
        if layers in (None, "all"):
            names = list(self.blocks)
        elif layers in ("pre_logits", "embed"):
            names = []
        else:
            names = [layers] if isinstance(layers, str) else [str(x) for x in layers]
        modules = dict(self.net.named_modules())
        bad = [n for n in names if n not in modules]
        if bad:
            raise VlmprobeError(f"{self.spec}: no module {bad[0]!r}; blocks are {', '.join(self.blocks) or 'none'}")
        captured: dict[str, torch.Tensor] = {}
        hooks = [self.head.register_forward_pre_hook(lambda m, args: captured.__setitem__("pre_logits", args[0]))]
        for n in names:
            hooks.append(modules[n].register_forward_hook(
                lambda m, args, out, n=n: captured.__setitem__(n, out[0] if isinstance(out, tuple) else out)))
        try:
            self.net(self._pixels(images))
        finally:
            for h in hooks:
                h.remove()
        return {k: _pool(v).float().cpu() for k, v in captured.items()}


def _pool(t: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> mean over H, W; [N, T, D] -> mean over tokens; [N, D] unchanged."""
    if t.dim() == 4:
        return t.mean((2, 3))
    if t.dim() == 3:
        return t.mean(1)
    return t.flatten(1)


def _final_linear(net: torch.nn.Module) -> torch.nn.Module:
    """The classification layer: timm's ``get_classifier()``, else the last ``nn.Linear``."""
    head = net.get_classifier() if hasattr(net, "get_classifier") else None
    if not isinstance(head, (torch.nn.Linear, torch.nn.Conv2d)):
        linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ModelLoadError(f"{type(net).__name__}: no linear classification layer found")
        head = linears[-1]
    if isinstance(head, torch.nn.Conv2d):
        head.out_features = head.out_channels
    return head


def _classes_file(path: Path) -> list[str] | None:
    f = path / "classes.json"
    if not f.is_file():
        return None
    from ..data.classnames import read_string_list

    return read_string_list(f, "class-name")


# ------------------------------------------------------------------ loaders

def load_timm(spec: str, ref: str, options: LoadOptions, fingerprint) -> ClassifierModel:
    """``timm:NAME`` (pretrained weights from timm's sources, or random with ``NAME@random``)
    or ``timm:local-dir:PATH`` (timm's hub layout: config.json + weights, e.g. ``save_for_hf``)."""
    import timm
    from timm.data import create_transform, resolve_data_config

    name, _, tag = ref.partition("@")
    labels = None
    if name.startswith("local-dir:"):
        path = Path(name.removeprefix("local-dir:")).expanduser()
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model spec {spec!r}: {path / 'config.json'} is missing (timm hub layout)")
        net = timm.create_model(f"local-dir:{path}", pretrained=True)
        labels = net.pretrained_cfg.get("label_names") or _classes_file(path)
        if isinstance(labels, dict):
            labels = [labels[k] for k in sorted(labels, key=lambda k: int(k))]
    else:
        if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
            raise ModelLoadError(f"model spec {spec!r}: timm has no model {name!r} (see timm.list_models())")
        with seeded_init() if tag == "random" else contextlib.nullcontext():  # one spec = one set of weights
            net = timm.create_model(name, pretrained=tag != "random")
    weights = "random" if tag == "random" else "pretrained:" + str(getattr(net, "pretrained_cfg", {}).get("tag") or "")
    transform = create_transform(**resolve_data_config({}, model=net), is_training=False)
    blocks = [f["module"] for f in getattr(net, "feature_info", []) if f.get("module")]
    return ClassifierModel(spec, options, net, transform, fingerprint, labels, blocks,
                           {"library": "timm", "architecture": getattr(net, "pretrained_cfg", {}).get("architecture"),
                            "weights": weights if not name.startswith("local-dir:") else f"file:{name}"})


def load_torchvision(spec: str, ref: str, options: LoadOptions, fingerprint) -> ClassifierModel:
    """``torchvision:NAME`` (the DEFAULT pretrained weights, as ``timm:NAME``),
    ``torchvision:NAME@WEIGHTS`` (an enum name such as IMAGENET1K_V2), ``torchvision:NAME@random``
    (random weights) or ``torchvision:NAME@FILE.pth`` (a saved state dict; a ``classes.json``
    beside it gives its label names). The weights used are recorded (``weights``)."""
    import torchvision

    name, _, weights = ref.partition("@")
    weights = weights or "DEFAULT"
    if name not in torchvision.models.list_models():
        raise ModelLoadError(f"model spec {spec!r}: torchvision has no model {name!r} "
                             "(see torchvision.models.list_models())")
    labels = None
    if weights == "random":
        with seeded_init():  # one spec = one set of weights
            net = torchvision.models.get_model(name, weights=None)
        transform = _imagenet_eval_transform()
    elif Path(weights).expanduser().is_file():
        path = Path(weights).expanduser()
        state = torch.load(path, map_location="cpu", weights_only=True)
        labels = _classes_file(path.parent)
        head_rows = [v.shape[0] for k, v in state.items() if k.endswith("weight") and v.dim() == 2][-1:]
        net = torchvision.models.get_model(name, weights=None, num_classes=head_rows[0] if head_rows else 1000)
        net.load_state_dict(state)
        transform = _imagenet_eval_transform()
    else:
        try:
            enum = torchvision.models.get_model_weights(name)[weights] if weights != "DEFAULT" else \
                torchvision.models.get_model_weights(name).DEFAULT
        except KeyError:
            raise ModelLoadError(f"model spec {spec!r}: {name} has no weights {weights!r} (choose from "
                                 f"{', '.join(w.name for w in torchvision.models.get_model_weights(name))})") from None
        net = torchvision.models.get_model(name, weights=enum)
        transform = enum.transforms()
        labels = list(enum.meta.get("categories") or []) or None
        if labels and len(labels) == 1000:
            labels = None  # ImageNet-1k: match names through the ImageNet list (lemmas, wnids)
        weights = str(enum)  # DEFAULT -> e.g. ResNet50_Weights.IMAGENET1K_V2
    blocks = _torchvision_blocks(net)
    return ClassifierModel(spec, options, net, transform, fingerprint, labels, blocks,
                           {"library": "torchvision", "architecture": name, "weights": weights})


def _imagenet_eval_transform():
    """torchvision's ImageNet evaluation preset (resize 256, centre crop 224, ImageNet mean/std)."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                      T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def _torchvision_blocks(net: torch.nn.Module) -> list[str]:
    """Block names of common torchvision classifiers: ``layer1..4`` (ResNet family), the
    children of ``features`` (VGG, MobileNet, EfficientNet, ConvNeXt...), ViT encoder layers."""
    names = [n for n, _ in net.named_children()]
    if any(n.startswith("layer") for n in names):
        return [n for n in names if n.startswith("layer")]
    if hasattr(net, "features") and isinstance(net.features, torch.nn.Sequential):
        return [f"features.{n}" for n, _ in net.features.named_children()]
    if hasattr(net, "encoder") and hasattr(net.encoder, "layers"):
        return [f"encoder.layers.{n}" for n, _ in net.encoder.layers.named_children()]
    return []


def save_label_names(path, names: Sequence[str]) -> None:
    """Write ``classes.json`` (a model's own label names) into a model directory."""
    Path(path).mkdir(parents=True, exist_ok=True)
    (Path(path) / "classes.json").write_text(json.dumps(list(names), indent=1) + "\n")
