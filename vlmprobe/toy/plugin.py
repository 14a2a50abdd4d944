"""The toy world's spec names, routed to the module that builds each artefact.

Models: ``toy:clip``, ``toy:vlm`` (``build``), ``toy:clip-spurious``, ``toy:cnn`` (``spurious``).
Datasets: ``toy:digits[:SPLIT]`` (``build``), ``toy:spurious[:SPLIT]`` (``spurious``),
``toy:cue-conflict`` (``cueconflict``), ``toy:photos`` (``photos``: out-of-distribution crops),
``toy:sketch`` / ``toy:rendition`` / ``toy:corrupted`` (``shifted``: distribution-shifted test digits).
"""
from __future__ import annotations

from ..errors import DataError, ModelLoadError
from .build import WORLD_MODELS, load_digits_dataset, resolve_world_model
from .cueconflict import load_toy_cue_conflict
from .photos import load_toy_photos
from .shifted import SETS as SHIFTED_SETS, load_toy_shifted
from .spurious import SPURIOUS_MODELS, load_spurious_dataset, resolve_spurious_model


MODEL_NAMES = WORLD_MODELS + tuple(SPURIOUS_MODELS)
DATASET_NAMES = ("toy:digits", "toy:digits:train", "toy:digits:val", "toy:digits:test", "toy:spurious",
                 "toy:spurious:common", "toy:spurious:counter", "toy:cue-conflict", "toy:photos",
                 *(f"toy:{s}" for s in SHIFTED_SETS))


def resolve_toy_model(spec: str) -> str:
    """A toy model spec -> the spec of the directory it is built in (built on first use)."""
    if spec in SPURIOUS_MODELS:
        return resolve_spurious_model(spec)
    if spec in WORLD_MODELS:
        return resolve_world_model(spec)
    raise ModelLoadError(f"unknown toy model {spec!r}: use {', '.join(MODEL_NAMES)}")


def load_toy_dataset(spec: str, split: str | None = None, limit: int | None = None, seed: int = 0):
    """A toy dataset spec -> ImageDataset (data stages only; no training)."""
    if spec.startswith("toy:spurious"):
        return load_spurious_dataset(spec, split)
    if spec == "toy:cue-conflict":
        return load_toy_cue_conflict(spec)
    if spec == "toy:photos":
        return load_toy_photos(spec)
    if spec.removeprefix("toy:") in SHIFTED_SETS:
        return load_toy_shifted(spec)
    if spec.startswith("toy:digits"):
        return load_digits_dataset(spec, split=split, limit=limit, seed=seed)
    raise DataError(f"unknown toy dataset {spec!r}: use toy:digits[:train|val|test], toy:spurious[:SPLIT], "
                    "toy:cue-conflict, toy:photos, toy:sketch, toy:rendition or toy:corrupted")
