"""Distribution-shifted test sets of the miniature world (its ImageNet-Sketch / -R / -C):

- ``toy:sketch``: the digit as an outline: the rendered glyph's ink mask (coverage > 0.3) minus
  its 3x3 erosion, drawn in ink on paper (the toy models never saw outlines);
- ``toy:rendition``: another rendition: the 8x8 glyph upsampled with nearest neighbour (blocky
  pixel art) in light ink on dark paper (inverted polarity);
- ``toy:corrupted``: the ordinary rendering, then one ImageNet-C-style corruption per image
  (cycled over ``gaussian_noise``: x + N(0, 0.18) on [0, 1] pixels; ``gaussian_blur``: PIL
  Gaussian blur, radius 1.2; ``contrast``: (x - mean) * 0.3 + mean), severity 3; every sample's
  meta names its ``corruption`` and ``severity`` (per-corruption accuracy in results).

Each set holds ``per_class`` test-split digits per class (seeded draw; the same geometry
parameters as the world's renderer), written once under ``$VLMPROBE_HOME/toy/shifted-<key>/``
as ``<set>/<class>/<id>.png`` (corrupted: ``corrupted/<corruption>/3/<class>/<id>.png``), a
separate cached stage: building it takes about a second and never touches the trained models.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..cache import build_dir_once, content_key, home_dir
from .digits import CLASSNAMES, DigitsConfig, glyph_alpha, ink_on_paper, test_split

VERSION = 1
MARKER = "shifted.json"
SETS = ("sketch", "rendition", "corrupted")
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast")
SEVERITY = 3


@dataclass(frozen=True)
class ShiftedConfig:
    seed: int = 0  # the world's seed (its test split) and the draw of images
    per_class: int = 10  # images per class in each set
    outline_threshold: float = 0.3  # sketch: ink mask = coverage above this

    def key(self) -> str:
        return content_key({"version": VERSION, **asdict(self), "digits": asdict(DigitsConfig())})


def sketch(pixels8, rng, cfg: ShiftedConfig, digits: DigitsConfig = DigitsConfig()):
    from scipy.ndimage import binary_erosion

    mask = glyph_alpha(pixels8, rng, digits)[..., 0] > cfg.outline_threshold
    outline = mask & ~binary_erosion(mask, structure=np.ones((3, 3), bool))
    return ink_on_paper(outline.astype(np.float32)[..., None], rng)


def rendition(pixels8, rng, digits: DigitsConfig = DigitsConfig()):
    from PIL import Image

    alpha = glyph_alpha(pixels8, rng, digits, resample="nearest")
    paper, ink = rng.uniform(10, 60, size=3), rng.uniform(190, 255, size=3)
    return Image.fromarray(np.clip((1 - alpha) * paper + alpha * ink, 0, 255).astype(np.uint8), mode="RGB")


def corrupt(img, name: str, rng):
    from PIL import Image, ImageFilter

    if name == "gaussian_blur":
        return img.filter(ImageFilter.GaussianBlur(radius=1.2))
    x = np.asarray(img, dtype=np.float32) / 255.0
    if name == "gaussian_noise":
        x = x + rng.normal(0.0, 0.18, size=x.shape)
    else:  # contrast
        m = x.mean(axis=(0, 1), keepdims=True)
        x = (x - m) * 0.3 + m
    return Image.fromarray((np.clip(x, 0, 1) * 255).astype(np.uint8), mode="RGB")


def build_shifted(cfg: ShiftedConfig = ShiftedConfig(), root: str | os.PathLike | None = None) -> Path:
    """Write (or reuse) the three sets; returns their directory."""
    out = Path(root) if root else home_dir() / "toy" / f"shifted-{cfg.key()}"
    return build_dir_once(out, MARKER, lambda tmp: _write(tmp, cfg))


def _write(tmp: Path, cfg: ShiftedConfig) -> dict:
    from .digits import render_digit

    digits, labels, test = test_split(cfg.seed)
    counts = dict.fromkeys(SETS, 0)
    for c, name in enumerate(CLASSNAMES):
        pick = np.random.default_rng([cfg.seed, 11, c]).choice(test[labels[test] == c], size=cfg.per_class,
                                                              replace=False)
        for j, i in enumerate(sorted(pick.tolist())):
            rng = np.random.default_rng([cfg.seed, 12, i])
            files = {"sketch": (tmp / "sketch" / name, sketch(digits.images[i], rng, cfg)),
                     "rendition": (tmp / "rendition" / name, rendition(digits.images[i], rng))}
            kind = CORRUPTIONS[(c + j) % len(CORRUPTIONS)]
            files["corrupted"] = (tmp / "corrupted" / kind / str(SEVERITY) / name,
                                  corrupt(render_digit(digits.images[i], rng, DigitsConfig()), kind, rng))
            for s, (folder, img) in files.items():
                folder.mkdir(parents=True, exist_ok=True)
                img.save(folder / f"digits-{i:04d}.png")
                counts[s] += 1
    return {"key": cfg.key(), "config": asdict(cfg), "images": counts}


def load_toy_shifted(spec: str):
    """``toy:sketch`` / ``toy:rendition`` / ``toy:corrupted`` -> ImageDataset over the ten digit
    classes (ids ``<set>/.../<class>/digits-NNNN.png``)."""
    from ..data.datasets import IMAGE_EXTENSIONS, ImageDataset, Sample
    from ..errors import DataError

    name = spec.removeprefix("toy:")
    if name not in SETS:
        raise DataError(f"unknown toy shifted set {spec!r}: use {', '.join('toy:' + s for s in SETS)}")
    root = build_shifted()
    samples = []
    for f in sorted((root / name).rglob("*")):
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        parts = f.relative_to(root / name).parts
        meta = {"corruption": parts[0], "severity": int(parts[1])} if name == "corrupted" else {}
        samples.append(Sample(id=str(f.relative_to(root)), image=str(f), label=CLASSNAMES.index(parts[-2]), meta=meta))
    return ImageDataset(spec, samples, CLASSNAMES, info={"format": f"toy-{name}", "toy_dir": str(root),
                                                          "shift_of": "toy:digits:test"})
