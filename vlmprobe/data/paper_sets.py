"""The paper's three other datasets (Zhang et al. 2024, Table 1) in their released layouts, read
as torchvision reads them, with the class names and split the paper evaluated.

- ``flowers102:ROOT`` (Nilsback & Zisserman 2008): ``jpg/image_00001.jpg`` ..., ``imagelabels.mat``
  (``labels``: class 1..102 per image, in file order) and ``setid.mat`` (``trnid``, ``valid``,
  ``tstid``: 1-based image numbers). ``--split test`` (default; 6,149 images, the paper's
  evaluation set), ``train``, ``val``. The release has no class names: they are ``"1"`` ..
  ``"102"`` in label order until ``--classes FILE`` (102 names in label order, e.g. the paper's
  ``flowers_classes.json``) replaces them.
- ``stanford-cars:ROOT`` (Krause et al. 2013), torchvision's layout: ``devkit/cars_meta.mat``
  (``class_names``), ``devkit/cars_train_annos.mat`` + ``cars_train/``, and
  ``cars_test_annos_withlabels.mat`` + ``cars_test/`` (``annotations``: ``fname``, ``class``
  1-based). ``--split test`` (default) or ``train``. Names: the devkit's, with the model year moved
  to the front as the paper lists them (``AM General Hummer SUV 2000`` -> ``2000 AM General
  Hummer SUV``).
- ``caltech101:ROOT``: ``101_ObjectCategories/<class>/image_NNNN.jpg`` (ROOT = that folder's
  parent, or torchvision's ``caltech101/`` above it). ``BACKGROUND_Google`` is left out;
  ``Faces`` and ``Faces_easy`` are one class ``face``; ``Leopards``, ``Motorbikes``, ``airplanes``
  become ``leopard``, ``motorbike``, ``airplane``; other names lose underscores: the paper's 100
  classes in folder order. The release has no split (the paper drew its own; its manifest loads
  as ``--data caltech.jsonl --image-root ...``).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..specs import DATASET_SPECS
from .datasets import IMAGE_EXTENSIONS, ImageDataset, Sample

CALTECH_RENAMES = {"Faces": "face", "Faces_easy": "face", "Leopards": "leopard", "Motorbikes": "motorbike",
                   "airplanes": "airplane"}
CALTECH_SKIP = ("BACKGROUND_Google",)
FLOWER_SPLITS = {"train": "trnid", "val": "valid", "test": "tstid"}


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"{path}: missing (part of the dataset's release)")
    try:
        return loadmat(str(path), squeeze_me=True)
    except (OSError, ValueError, TypeError) as e:
        raise DataError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from None


def _field(mat: dict, key: str, path: Path):
    if key not in mat:
        raise DataError(f"{path}: no variable {key!r}")
    return mat[key]


def load_flowers102(spec: str, split: str | None = None) -> ImageDataset:
    root = Path(spec.removeprefix("flowers102:")).expanduser()
    split = split or "test"
    if split not in FLOWER_SPLITS:
        raise DataError(f"dataset {spec!r}: --split {split!r}; Flowers102 splits are train, val, test")
    labels = np.atleast_1d(_field(_loadmat(root / "imagelabels.mat"), "labels", root / "imagelabels.mat")).astype(int)
    ids = np.atleast_1d(_field(_loadmat(root / "setid.mat"), FLOWER_SPLITS[split], root / "setid.mat")).astype(int)
    samples = []
    for i in sorted(ids.tolist()):
        if not 1 <= i <= len(labels):
            raise DataError(f"{root / 'setid.mat'}: image {i} outside the {len(labels)} labels of imagelabels.mat")
        name = f"image_{i:05d}.jpg"
        samples.append(Sample(id=name, image=str(root / "jpg" / name), label=int(labels[i - 1]) - 1))
    k = int(labels.max())
    return ImageDataset(spec, samples, [str(c) for c in range(1, k + 1)],
                        info={"format": "flowers102", "split": split, "classnames_source": "label numbers (pass --classes)"})


def cars_name(devkit_name: str) -> str:
    """Devkit ``Make Model Type YEAR`` -> the paper's ``YEAR Make Model Type``."""
    m = re.match(r"^(.*\S)\s+((?:19|20)\d\d)$", devkit_name.strip())
    return f"{m.group(2)} {m.group(1)}" if m else devkit_name.strip()


def load_stanford_cars(spec: str, split: str | None = None) -> ImageDataset:
    root = Path(spec.removeprefix("stanford-cars:")).expanduser()
    split = split or "test"
    if split not in ("train", "test"):
        raise DataError(f"dataset {spec!r}: --split {split!r}; Stanford Cars splits are train, test")
    meta = root / "devkit" / "cars_meta.mat"
    names = [cars_name(str(n)) for n in np.atleast_1d(_field(_loadmat(meta), "class_names", meta))]
    annos = root / ("devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat")
    table = _field(_loadmat(annos), "annotations", annos)
    samples = []
    for row in np.atleast_1d(table):
        try:
            fname, cls = str(row["fname"]), int(row["class"])
        except (ValueError, IndexError, KeyError):
            raise DataError(f"{annos}: 'annotations' rows need fields fname and class") from None
        if not 1 <= cls <= len(names):
            raise DataError(f"{annos}: {fname}: class {cls} outside the {len(names)} names of {meta}")
        samples.append(Sample(id=fname, image=str(root / f"cars_{split}" / fname), label=cls - 1))
    return ImageDataset(spec, sorted(samples, key=lambda s: s.id), names,
                        info={"format": "stanford-cars", "split": split, "classnames_source": "devkit, year first"})


def caltech_name(folder: str) -> str:
    return CALTECH_RENAMES.get(folder, folder.replace("_", " ").lower())


def load_caltech101(spec: str, split: str | None = None) -> ImageDataset:
    if split is not None:
        raise DataError(f"dataset {spec!r}: Caltech101 has no released split (the paper's is its manifest)")
    root = Path(spec.removeprefix("caltech101:")).expanduser()
    cats = next((c for c in (root / "101_ObjectCategories", root / "caltech101" / "101_ObjectCategories",
                             root) if c.is_dir() and c.name == "101_ObjectCategories"), None)
    if cats is None:
        raise DataError(f"dataset {spec!r}: no 101_ObjectCategories/ under {root}")
    folders = sorted(d.name for d in cats.iterdir() if d.is_dir() and d.name not in CALTECH_SKIP)
    names = list(dict.fromkeys(caltech_name(f) for f in folders))
    samples = []
    for f in folders:
        for img in sorted(p for p in (cats / f).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
            samples.append(Sample(id=f"{f}/{img.name}", image=str(img), label=names.index(caltech_name(f))))
    return ImageDataset(spec, samples, names, info={"format": "caltech101", "excluded": list(CALTECH_SKIP)})


DATASET_SPECS.register("flowers102:", load_flowers102,
                       "Flowers102: ROOT/jpg/ + imagelabels.mat + setid.mat (--split test|train|val; --classes FILE)")
DATASET_SPECS.register("stanford-cars:", load_stanford_cars, "Stanford Cars: the devkit layout (--split test|train)")
DATASET_SPECS.register("caltech101:", load_caltech101, "Caltech101: ROOT/101_ObjectCategories/<class>/")
