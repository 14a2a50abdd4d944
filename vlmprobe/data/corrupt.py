"""``--corrupt NAME:SEVERITY``: ImageNet-C corruptions (Hendrycks & Dietterich 2019) applied on
the fly to any dataset, through the PyPI package ``imagecorruptions`` (``corrupt(image,
severity, corruption_name)``, uint8 H x W x 3).

Protocol (ImageNet-C's generation): the image is resized (shorter side ``resize``, bilinear) and
center-cropped to ``crop`` x ``crop`` (ImageNet-C: 256 / 224; smaller images are not upscaled
beyond ``crop``), corrupted at severity 1..5, and then handed to the model's own preprocessing.
The corruptions draw from numpy's *global* RNG, so each call is seeded from (run seed, sample id)
and the global state is restored afterwards: a sample gets the same corruption whatever the batch,
worker or resume point.

Compatibility (imagecorruptions 1.1.2 with current libraries), applied only inside the package's
own module namespace, never to numpy/scikit-image globally: ``pkg_resources`` (removed from
setuptools >= 81) is provided for its one call, ``resource_filename`` (the frost images); its
``gaussian(..., multichannel=True)`` calls map to scikit-image's ``channel_axis=-1``; its
``np.float_`` (removed in numpy 2) reads as ``np.float64``; ``sk.util.random_noise`` (impulse
noise), which now draws from a fresh unseeded generator, gets ``rng`` drawn from the seeded
global RNG. Images go through the package's public ``corrupt`` (its own type conversions).
"""
from __future__ import annotations

import hashlib
import importlib
import sys
import types
from functools import lru_cache

import numpy as np

from ..errors import DataError

# the 15 benchmark corruptions (4 groups) and the 4 held-out extras, in ImageNet-C's order
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")


class _NumpyCompat(types.ModuleType):
    """numpy as imagecorruptions expects it (``np.float_``)."""

    def __getattr__(self, name):
        return np.float64 if name == "float_" else getattr(np, name)


class _SkimageCompat(types.ModuleType):
    """scikit-image whose ``util.random_noise`` is seeded from numpy's global RNG."""

    def __init__(self, sk):
        super().__init__("skimage")
        self._sk = sk
        self.util = types.SimpleNamespace(random_noise=lambda *a, **kw: sk.util.random_noise(
            *a, rng=np.random.randint(2 ** 31 - 1), **kw))

    def __getattr__(self, name):
        return getattr(self._sk, name)


@lru_cache(maxsize=1)
def corruptions_module():
    """``imagecorruptions.corruptions`` with the compatibility shims (module docstring)."""
    shim = None
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package, resource):
            from pathlib import Path

            spec = importlib.util.find_spec(package)
            return str(Path(spec.origin).parent / resource)
        shim.resource_filename = resource_filename
        sys.modules["pkg_resources"] = shim
    import warnings

    try:
        with warnings.catch_warnings():  # its scipy.ndimage.interpolation import is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            package = importlib.import_module("imagecorruptions")
            mod = importlib.import_module("imagecorruptions.corruptions")
    except ImportError as e:
        raise DataError(f"--corrupt needs the imagecorruptions package: pip install 'vlmprobe[corruptions]' ({e})") from None
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    gaussian = mod.gaussian

    def gaussian_compat(image, *args, multichannel=None, **kwargs):
        if multichannel is not None:
            kwargs.setdefault("channel_axis", -1 if multichannel else None)
        return gaussian(image, *args, **kwargs)
    mod.gaussian = gaussian_compat
    mod.np = _NumpyCompat("numpy")
    mod.sk = _SkimageCompat(mod.sk)
    return package


def parse_corrupt(value: str) -> tuple[str, int]:
    """``NAME:SEVERITY`` -> (name, severity); one-line DataError otherwise."""
    name, _, sev = str(value).partition(":")
    if name not in CORRUPTIONS + EXTRA_CORRUPTIONS:
        raise DataError(f"--corrupt {value!r}: unknown corruption {name!r}; choose from "
                        f"{', '.join(CORRUPTIONS + EXTRA_CORRUPTIONS)}")
    if not sev.isdigit() or not 1 <= int(sev) <= 5:
        raise DataError(f"--corrupt {value!r}: expected NAME:SEVERITY with severity 1..5")
    return name, int(sev)


def sample_seed(seed: int, sample_id: str) -> int:
    """32-bit seed of one sample: SHA-256 of ``"<seed>:<id>"`` (independent of order and batch)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()[:4], "little")


def resize_crop(img, resize: int = 256, crop: int = 224):
    """Shorter side to ``resize`` (bilinear), then the central ``crop`` x ``crop`` (both capped at
    the image's shorter side when ``resize`` would upscale it past ``crop``)."""
    from PIL import Image

    w, h = img.size
    short = min(w, h)
    target = resize if short >= crop else short
    if short != target:
        img = img.resize((max(1, round(w * target / short)), max(1, round(h * target / short))), Image.BILINEAR)
    w, h = img.size
    c = min(crop, w, h)
    left, top = (w - c) // 2, (h - c) // 2
    return img.crop((left, top, left + c, top + c))


def corrupt_image(img, name: str, severity: int, seed: int):
    """PIL RGB -> PIL RGB corrupted by ``name`` at ``severity`` with numpy's global RNG seeded to
    ``seed`` (its previous state restored)."""
    from PIL import Image

    package = corruptions_module()
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        out = package.corrupt(np.ascontiguousarray(np.asarray(img.convert("RGB"))), severity=severity,
                              corruption_name=name)
    finally:
        np.random.set_state(state)
    return Image.fromarray(np.uint8(np.clip(np.asarray(out), 0, 255)))


def corrupted(dataset, value: str, seed: int = 0, resize: int = 256, crop: int = 224):
    """The dataset with every image resized, cropped and corrupted by ``value`` (``NAME:SEVERITY``);
    samples gain ``meta`` corruption/severity, the description records the protocol."""
    from .datasets import ImageDataset, Sample

    name, severity = parse_corrupt(value)
    corruptions_module()  # fail now, not in a worker
    base = dataset._loader

    def load(sample):
        return corrupt_image(resize_crop(base(sample), resize, crop), name, severity, sample_seed(seed, sample.id))
    samples = [Sample(s.id, s.image, s.label, {**s.meta, "corruption": name, "severity": severity})
               for s in dataset.samples]
    info = {**dataset.info, "corrupt": {"name": name, "severity": severity, "resize": resize, "crop": crop,
                                        "seed": seed, "implementation": "imagecorruptions"}}
    return ImageDataset(dataset.name, samples, dataset.classnames, load, info)
