"""The one small interface every model (CLIP or VLM) offers.

Three capabilities cover the whole study, so CLIP and a VLM sit side by side:

- ``score(images, candidates) -> Tensor[N, K]``: CLIP: ``logit_scale * cos(image, class text)``;
  VLM: ``log p(candidate | image, prompt)`` with a stated reduction.
- ``generate(images, prompts) -> list[str]``: VLMs only; CLIP raises a clear error.
- ``features(images, layers, pooling) -> dict[str, Tensor[N, D]]``.

Images are PIL images (RGB). Every model also reports what it is (`describe()`) so a run can
record it in its config.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from ..errors import VlmprobeError

# The paper's open-world question (LLaVA-1.5 protocol), the default prompt of every VLM method.
PAPER_QUESTION = "What type of object is in this photo?"

KIND_NAMES = {"clip": "CLIP model", "vlm": "vision-language model", "classifier": "supervised classifier",
              "api": "API model"}


RANDOM_INIT_SEED = 0  # random-weight specs (openclip:ARCH, timm:NAME@random, torchvision:NAME@random)


def seeded_init():
    """Context for building a random-weight model: the weights are drawn from torch's RNG seeded
    with ``RANDOM_INIT_SEED`` (the caller's RNG state is restored afterwards), so one spec always
    means the same weights and the caches keyed by the spec (text classifiers, image embeddings,
    features) stay valid across loads and processes."""
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))
    torch.manual_seed(RANDOM_INIT_SEED)
    return stack


def require_kind(model, kind: str, purpose: str, hint: str = "", api: bool = False) -> None:
    """One-line error when ``purpose`` (e.g. "--method generate") gets the wrong kind of model;
    ``api``: an API model (``openai:``) is accepted too (it only generates)."""
    have = getattr(model, "kind", "?")
    if have != kind and not (api and have == "api"):
        name = KIND_NAMES.get(have, have)
        raise VlmprobeError(f"{purpose} needs a {KIND_NAMES[kind]}; {getattr(model, 'spec', model)} is "
                            f"{'an' if name[:1] in 'aeiouAEIOU' else 'a'} {name}" + (f" ({hint})" if hint else ""))


DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@dataclass
class LoadOptions:
    """How to load a model; every field is recorded in a run's config."""

    device: str = "cpu"  # "cpu", "cuda", "cuda:1", ... (ignored when device_map is set)
    dtype: str = "default"  # default (bfloat16 on CUDA, float32 elsewhere) | float32 | float16 | bfloat16 | auto
    device_map: str | None = None  # e.g. "auto": let accelerate place the layers
    load_in_4bit: bool = False  # bitsandbytes NF4 (QLoRA-style) weights
    load_in_8bit: bool = False  # bitsandbytes LLM.int8 weights
    trust_remote_code: bool = False  # never on unless asked

    def resolved_dtype(self) -> str:
        """``dtype`` with ``default`` resolved: bfloat16 on a CUDA device (or a device map on a
        CUDA machine; half the memory and the tensor-core path), float32 elsewhere."""
        if self.dtype != "default":
            return self.dtype
        cuda = self.device.startswith("cuda") or (self.device_map is not None and torch.cuda.is_available())
        return "bfloat16" if cuda else "float32"

    def torch_dtype(self) -> torch.dtype | str:
        dtype = self.resolved_dtype()
        if dtype == "auto":
            return "auto"
        if dtype not in DTYPES:
            raise VlmprobeError(f"unknown dtype {dtype!r}; choose from {sorted(set(DTYPES))}, auto or default")
        return DTYPES[dtype]

    def to_dict(self) -> dict:
        """Recorded in run configs with the dtype actually used."""
        return {**asdict(self), "dtype": self.resolved_dtype()}


class VisionModel:
    """Base class of the CLIP and VLM wrappers (see module docstring)."""

    kind: str = "?"  # "clip" or "vlm"

    def __init__(self, spec: str, options: LoadOptions):
        self.spec = spec
        self.options = options

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def _respec(self, spec: str) -> "VisionModel":
        """Keep the spec the user typed (``toy:vlm``, a bare path) on a model loaded via another."""
        self.spec = spec
        return self

    def describe(self) -> dict:
        """What was loaded, for run configs: spec, kind, class, load options."""
        out = {"spec": self.spec, "kind": self.kind, "class": type(self).__name__, **self.options.to_dict()}
        if out["dtype"] == "auto":  # record what "auto" chose: the dtype of the loaded weights
            try:
                out["dtype"] = str(self.dtype).removeprefix("torch.")
            except (AttributeError, StopIteration, NotImplementedError):
                pass
        return out

    def score(self, images: Sequence, candidates: Sequence[str], **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, images: Sequence, prompts: Sequence[str], **kwargs) -> list[str]:
        raise VlmprobeError(f"{self.spec} is a {self.kind} model: it cannot generate text (use a VLM)")

    def features(self, images: Sequence, layers=None, pooling=None, **kwargs) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def server_session(self):
        """The optional hook of a model answered by a server (``models.api``): an object the
        engine drives around its loop (``attach_run(dir, read_only)``, ``start_batch(n, order)`` /
        ``finish_batch()``, ``batches_in_flight(batch_size)``, ``close()``, ``dry_run``,
        ``results(records)``). None (this default) for a model computed in this process."""
        return None

