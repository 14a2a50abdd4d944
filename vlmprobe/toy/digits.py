"""The miniature world's images: scikit-learn's ``load_digits`` (1,797 real handwritten 8x8
digits, 10 classes) rendered as small RGB pictures with a fixed train/val/test split.

Rendering of image ``i`` (deterministic, seeded by ``(seed, i)``): the 8x8 intensities
(0..16) are upsampled bicubically to ``glyph`` pixels, placed on an ``size`` x ``size``
canvas with a small random rotation / shift / scale (light augmentation), then coloured as
``rgb = (1 - a) * paper + a * ink`` with ``a`` the intensity in [0, 1] and slightly tinted
paper and ink colours.

The split is stratified: within each class a seeded permutation gives ``val_fraction`` and
``test_fraction`` of the images to val/test and the rest to train.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSNAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DigitsConfig:
    size: int = 32  # canvas side in pixels (the toy CLIP's input resolution)
    glyph: int = 26  # side of the upsampled 8x8 digit before the random affine
    max_rotation: float = 10.0  # degrees, uniform in [-max, max]
    max_shift: float = 2.0  # pixels, uniform in [-max, max] per axis
    scale_range: tuple = (0.9, 1.1)  # uniform glyph scale factor
    val_fraction: float = 0.15
    test_fraction: float = 0.25


@dataclass
class DigitImages:
    """All rendered images with their labels (index into CLASSNAMES), split names and ids."""

    images: list  # PIL RGB images, size x size
    labels: np.ndarray  # [N] int64
    splits: list[str]  # "train" | "val" | "test"
    ids: list[str]  # "digits-0000" ... (index in sklearn's order)

    def indices(self, split: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)


def split_indices(labels: np.ndarray, cfg: DigitsConfig, seed: int) -> list[str]:
    """Stratified seeded split -> one split name per image."""
    rng = np.random.default_rng([seed, 1])
    out = ["train"] * len(labels)
    for c in range(len(CLASSNAMES)):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(cfg.test_fraction * len(idx)))
        n_val = int(round(cfg.val_fraction * len(idx)))
        for i in idx[:n_test]:
            out[i] = "test"
        for i in idx[n_test:n_test + n_val]:
            out[i] = "val"
    return out


def test_split(seed: int = 0):
    """(scikit-learn's digits bunch, labels int64 [1797], indices of the world's test split)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    return digits, labels, np.flatnonzero(np.array(split_indices(labels, DigitsConfig(), seed)) == "test")


def glyph_alpha(pixels8: np.ndarray, rng: np.random.Generator, cfg: DigitsConfig, resample: str = "bicubic") -> np.ndarray:
    """One 8x8 intensity array (0..16) -> ink coverage [size, size, 1] in [0, 1]: the glyph
    upsampled (``resample``: bicubic, or nearest for blocky renditions), scaled, shifted and
    rotated by draws from ``rng`` (scale, shift, rotation: in that order)."""
    from PIL import Image

    glyph = Image.fromarray((np.clip(pixels8 / 16.0, 0, 1) * 255).astype(np.uint8), mode="L")
    scale = rng.uniform(*cfg.scale_range)
    side = max(4, int(round(cfg.glyph * scale)))
    glyph = glyph.resize((side, side), Image.NEAREST if resample == "nearest" else Image.BICUBIC)
    canvas = Image.new("L", (cfg.size, cfg.size), 0)
    dx, dy = rng.uniform(-cfg.max_shift, cfg.max_shift, size=2)
    canvas.paste(glyph, ((cfg.size - side) // 2, (cfg.size - side) // 2))
    canvas = canvas.rotate(rng.uniform(-cfg.max_rotation, cfg.max_rotation), resample=Image.BILINEAR,
                           translate=(float(dx), float(dy)))
    return np.asarray(canvas, dtype=np.float32)[..., None] / 255.0


def render_digit(pixels8: np.ndarray, rng: np.random.Generator, cfg: DigitsConfig):
    """One 8x8 intensity array (0..16) -> RGB PIL image ``cfg.size`` square (see module doc)."""
    return ink_on_paper(glyph_alpha(pixels8, rng, cfg), rng)


def ink_on_paper(alpha: np.ndarray, rng: np.random.Generator):
    """Ink coverage ``alpha`` [H, W, 1] in [0, 1] -> RGB PIL image ``(1 - a) * paper + a * ink``
    with ``paper ~ U[225, 255]^3`` then ``ink ~ U[0, 70]^3`` drawn from ``rng`` (every toy image's look)."""
    from PIL import Image

    paper = rng.uniform(225, 255, size=3)
    ink = rng.uniform(0, 70, size=3)
    rgb = (1.0 - alpha) * paper + alpha * ink
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")


def render_digits(seed: int = 0, cfg: DigitsConfig = DigitsConfig()) -> DigitImages:
    """All 1,797 digits rendered (about a second) with their split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    images = [render_digit(digits.images[i], np.random.default_rng([seed, 2, i]), cfg) for i in range(len(labels))]
    ids = [f"digits-{i:04d}" for i in range(len(labels))]
    return DigitImages(images, labels, split_indices(labels, cfg, seed), ids)
