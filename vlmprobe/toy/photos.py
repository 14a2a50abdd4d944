"""Out-of-distribution images for the miniature world (``toy:photos``): crops of scikit-learn's
two bundled sample photographs (``load_sample_images``: ``china.jpg``, ``flower.jpg``, offline),
rendered like the toy digits so that only the content, not the style, is out of distribution.

Crop ``i`` of photo ``p`` (seeded by ``(seed, 11, p, i)``): a square of side ``s ~ U[min_crop,
max_crop]`` pixels at a uniform position, greyscaled (PIL ``L``: ``0.299 R + 0.587 G + 0.114 B``),
resized bicubically to ``size`` x ``size``, contrast-stretched to ``a = (g_max - g) / (g_max -
g_min)`` (dark = ink), then coloured as the digits are (``digits.render_digit``)::

    rgb = (1 - a) * paper + a * ink,   paper ~ U[225, 255]^3,   ink ~ U[0, 70]^3

Images carry no class (label -1): score them against the digits' class list with
``--unlabeled --classes WORLD/classes.json`` (an OOD set for ``vlmprobe metrics --ood``). Built
once under ``$VLMPROBE_HOME/toy/photos-<key>`` (a content key of the recipe below), outside the
world's own directory, so the world build is unchanged.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..cache import build_dir_once, content_key, home_dir
from .digits import CLASSNAMES, ink_on_paper

VERSION = 1
MARKER = "photos.json"


@dataclass(frozen=True)
class PhotosConfig:
    seed: int = 0
    per_photo: int = 100  # crops of each of the two photographs
    size: int = 32  # canvas side (the toy models' input)
    min_crop: int = 48  # crop side range in photo pixels (the photos are 427 x 640)
    max_crop: int = 200

    def key(self) -> str:
        return content_key({"version": VERSION, **asdict(self)})


def render_crop(photo: np.ndarray, rng: np.random.Generator, cfg: PhotosConfig):
    """One random square crop of an RGB array -> RGB PIL image ``cfg.size`` square (module doc)."""
    from PIL import Image

    h, w = photo.shape[:2]
    side = int(rng.integers(cfg.min_crop, cfg.max_crop + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    grey = Image.fromarray(photo[y:y + side, x:x + side]).convert("L").resize((cfg.size, cfg.size), Image.BICUBIC)
    g = np.asarray(grey, dtype=np.float32)
    alpha = ((g.max() - g) / max(float(g.max() - g.min()), 1.0))[..., None]
    return ink_on_paper(alpha, rng)


def build_photos(cfg: PhotosConfig = PhotosConfig(), root: str | os.PathLike | None = None) -> Path:
    """Write (or reuse) the crops as ``ROOT/<photo>/<photo>-<i>.png``; returns ROOT."""
    out = Path(root) if root else home_dir() / "toy" / f"photos-{cfg.key()}"
    return build_dir_once(out, MARKER, lambda tmp: _write_crops(tmp, cfg))


def _write_crops(tmp: Path, cfg: PhotosConfig) -> dict:
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    n = 0
    for p, (photo, fname) in enumerate(zip(sample.images, sample.filenames)):
        name = Path(fname).stem
        (tmp / name).mkdir(parents=True)
        for i in range(cfg.per_photo):
            img = render_crop(photo, np.random.default_rng([cfg.seed, 11, p, i]), cfg)
            img.save(tmp / name / f"{name}-{i:03d}.png")
            n += 1
    return {"key": cfg.key(), "config": asdict(cfg), "images": n}


def load_toy_photos(spec: str = "toy:photos"):
    """``toy:photos`` -> unlabeled ImageDataset (label -1; class names: the digits', for reference)."""
    from ..data.datasets import ImageDataset, scan_images

    root = build_photos()
    return ImageDataset(spec, scan_images(root), list(CLASSNAMES),
                        info={"format": "toy-photos", "toy_dir": str(root), "missing_label": " (toy:photos is an "
                              "out-of-distribution set)"})
