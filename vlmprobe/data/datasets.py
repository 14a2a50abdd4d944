"""Image-classification datasets: ImageFolder trees, JSONL manifests, HF ``datasets`` on disk.

Every dataset is an ``ImageDataset``: a list of ``Sample`` records plus class names, with images
loaded lazily (``load_image(i)`` -> RGB PIL image). An unreadable image raises ``ImageLoadError``
naming the path; the evaluation runner records it as a skipped sample (counted in results).
"""
from __future__ import annotations

import os

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError
from ..jsonl import read_jsonl

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class ImageLoadError(Exception):
    """An image that cannot be read (missing, truncated, not an image)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass
class Sample:
    """One image: ``id`` unique within the dataset, ``image`` a path (or a locator for
    in-memory datasets), ``label`` the index into ``ImageDataset.classnames`` (-1: unlabeled,
    e.g. out-of-distribution images), ``meta`` any extra manifest fields (e.g. a ``group`` for
    group-shift metrics)."""

    id: str
    image: str
    label: int
    meta: dict = field(default_factory=dict)


def to_rgb(img):
    """Any PIL mode (L, P, RGBA, I;16, CMYK...) -> RGB; transparency composited on white."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def read_image(path, name: str | None = None):
    """Open and fully decode an image (a path, or a binary file object called ``name`` in
    errors) as RGB, or raise ImageLoadError."""
    from PIL import Image, UnidentifiedImageError

    name = name or str(path)
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise ImageLoadError(name, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageLoadError(name, f"cannot decode image ({type(e).__name__}: {e})") from None


class ImageDataset:
    """``samples`` + ``classnames``; images are read on demand by ``loader(sample)``."""

    def __init__(self, name: str, samples: list[Sample], classnames: list[str],
                 loader: Callable[[Sample], object] | None = None, info: dict | None = None):
        self.name = name
        self.samples = samples
        self.classnames = list(classnames)
        self._loader = loader or (lambda s: read_image(s.image))
        self.info = dict(info or {})

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, i: int):
        """RGB PIL image of sample ``i``; raises ImageLoadError."""
        return self._loader(self.samples[i])

    @property
    def labeled(self) -> bool:
        """Every sample has a class (no -1 labels)."""
        return all(s.label >= 0 for s in self.samples)

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def subset(self, indices: Sequence[int], **info) -> "ImageDataset":
        return ImageDataset(self.name, [self.samples[i] for i in indices], self.classnames, self._loader,
                            {**self.info, **info})

    def files_fingerprint(self) -> str:
        """A key of every sample's image file as it is on disk now: content key of
        [[size, mtime_ns] or None (not a local file)] in sample order. Changes when an image is
        replaced in place (same name), without reading the images."""
        from ..cache import content_key

        def stat(path: str):
            try:
                st = os.stat(path)
            except (OSError, TypeError, ValueError):
                return None
            return [st.st_size, st.st_mtime_ns] if os.path.isfile(path) else None

        return content_key([stat(s.image) for s in self.samples])

    def describe(self) -> dict:
        """What the run config records: spec, size, classes and how they were chosen."""
        return {"spec": self.name, "num_samples": len(self.samples), "num_classes": len(self.classnames),
                "classnames": self.classnames, **self.info}


def scan_image_folder(root: Path) -> tuple[list[Sample], list[str]]:
    """``root/<class>/<image>``; classes are the sorted sub-directory names."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-directories (expected ROOT/<class>/<image>)")
    samples = []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                samples.append(Sample(id=str(f.relative_to(root)), image=str(f), label=label))
    return samples, classes


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (any depth, by extension ``IMAGE_EXTENSIONS``), sorted."""
    return sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())


def scan_images(root: Path) -> list[Sample]:
    """Every image file under ``root`` (any depth, sorted), unlabeled (label -1)."""
    files = image_files(root)
    if not files:
        raise DataError(f"{root}: no image files")
    return [Sample(id=str(f.relative_to(root)), image=str(f), label=-1) for f in files]


def read_manifest(path: Path, image_root: Path | None = None, labeled: bool = True) -> list[dict]:
    """JSONL rows ``{"image": path, "label": name|index, "split": ...}``; image paths are
    relative to the manifest's directory (or ``image_root``); ``labeled=False``: ``label`` may be
    absent or null. Errors name file and line."""
    rows = []
    base = image_root or path.parent
    for lineno, row in read_jsonl(path):
        for key in ("image", "label") if labeled else ("image",):
            if key not in row:
                raise DataError(f"{path}:{lineno}: missing field {key!r}")
        img = Path(str(row["image"])).expanduser()
        row["_path"] = str(img if img.is_absolute() else (base / img))
        row["_line"] = lineno
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")
    return rows
