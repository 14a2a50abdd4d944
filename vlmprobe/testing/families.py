"""The family registry of tiny random-weight checkpoints and the conformance entry point.

A tiny builder is ``build(out: Path) -> None``: it writes a complete checkpoint directory into
``out`` (config, safetensors weights, processor, tokenizer, generation config and the family's
chat template) built only from transformers' own config classes, nothing downloaded, so that
``hf:DIR/<model_type>`` loads it like a released checkpoint. Builders register by
``config.model_type`` (or a variant's name, e.g. ``blip-2-flan-t5``) with ``@tiny_builder("<name>")``; the registry is ``TINY_BUILDERS``.

Where builders live: the core three (``llava``, ``llava_next``, ``qwen2_vl``) in
``vlmprobe.testing`` (also built by ``build_tiny_models``), the decoder-only families in
``vlmprobe.testing.families_decoder``, the special ones (encoder-decoder, prefix-LM,
cross-attention) in ``vlmprobe.testing.families_special`` when present, the hybrid ones (recurrent,
linear-attention, state-space layers) in ``vlmprobe.testing.families_hybrid``. ``load_builders()``
imports them all.

``python -m vlmprobe.testing --families [DIR]`` builds every registered family into
``DIR/<model_type>/`` (``build_family``: temporary sibling, marker written last, renamed into
place; a complete build is reused), runs the named conformance checks of
``vlmprobe.testing.conformance`` (``run_conformance``) on each, tries every other model type of transformers'
image-text-to-text mapping with a generic tiny config, and prints and writes the support matrix
(``support_matrix.json`` and ``support_matrix.md`` in DIR).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable

import torch

TINY_BUILDERS: dict[str, Callable[[Path], None]] = {}
FAMILY_MARKER = ".vlmprobe-family.json"  # written last into every finished family directory
FAMILY_RECIPE_VERSION = 1  # bump when a builder changes: older builds are rebuilt
BUILDER_MODULES = ("vlmprobe.testing.families_decoder", "vlmprobe.testing.families_special")


def tiny_builder(model_type: str) -> Callable:
    """Decorator: register ``build(out: Path) -> None`` as the tiny builder of ``model_type``
    (a later registration of the same model type replaces the earlier one)."""
    def register(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        TINY_BUILDERS[model_type] = fn
        return fn

    return register


# the hybrid families (recurrent / linear-attention / state-space language models), kept in their own module
BUILDER_MODULES += ("vlmprobe.testing.families_hybrid",)


def load_builders() -> dict[str, Callable[[Path], None]]:
    """Import every builder module (``BUILDER_MODULES``; the absent ones are skipped) and return
    the registry ``{model_type: build}``."""
    for name in BUILDER_MODULES:  # (the package's __init__, imported before this module, registers the core three)
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a module that exists but fails to import is a bug, not absent
                raise
    return TINY_BUILDERS


def build_into(final: Path, builder: Callable[[Path], None], marker: str, info: dict, force: bool = False,
               seed: int = 0) -> str:
    """Run ``builder`` (seeded, transformers' bars off) into a fresh directory published as
    ``final`` by ``cache.build_dir_once`` (marker JSON ``info`` written last; a complete build
    whose marker equals ``info`` is reused, a half-written or outdated one replaced)."""
    from transformers.utils import logging as hf_logging

    from ..cache import build_dir_once

    def write(tmp: Path) -> dict:
        bars = hf_logging.is_progress_bar_enabled()
        try:
            hf_logging.disable_progress_bar()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                builder(tmp)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        return info

    return str(build_dir_once(Path(final).expanduser(), marker, write, current=lambda m: all(m.get(k) == v for k, v in info.items()),
                               force=force))


def build_family(root: str | os.PathLike, model_type: str, force: bool = False, seed: int = 0) -> str:
    """Build the tiny checkpoint of ``model_type`` as ``root/<model_type>`` (reused when a
    complete build exists; seeded, so builds repeat) and return its path."""
    builders = load_builders()
    if model_type not in builders:
        from ..errors import VlmprobeError

        raise VlmprobeError(f"no tiny builder for model type {model_type!r}; known: {', '.join(sorted(builders))}")
    info = {"model_type": model_type, "recipe_version": FAMILY_RECIPE_VERSION}
    return build_into(Path(root).expanduser() / model_type, builders[model_type], FAMILY_MARKER, info, force, seed)
