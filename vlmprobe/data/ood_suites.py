"""Out-of-distribution image sets for an ImageNet-1k in-distribution, as released for the MCM /
MOS benchmarks (Huang & Li 2021, Ming et al. 2022) and NINCO (Bitterwolf et al. 2023).

=======================  ==================================================================
``inaturalist:ROOT``     ``iNaturalist/images/*.jpg`` (10,000 images; ROOT = ``iNaturalist`` or its parent)
``sun:ROOT``             ``SUN/images/*.jpg``
``places:ROOT``          ``Places/images/*.jpg``
``textures:ROOT``        ``dtd/images/<category>/*.jpg`` (DTD, all 47 categories)
``ninco:ROOT``           ``NINCO_OOD_classes/<class>/`` (default), ``--split unit-tests``:
                         ``NINCO_OOD_unit_tests/<test>/``, ``--split popular``:
                         ``NINCO_popular_datasets_subsamples/<dataset>/``; each sample's meta
                         ``ninco_group`` names its class / test / dataset (per-class AUROC is
                         then one ``--groups`` away). The released CSV file lists
                         (``NINCO_OOD_classes.csv``, ``NINCO_OOD_unit_tests.csv``,
                         ``NINCO_popular_datasets_subsamples.csv``; header
                         ``image_location,class``, locations relative to the ``NINCO/`` folder;
                         j-cb/NINCO ``data/``) are read when found in ROOT, ROOT/data or
                         ROOT/NINCO; otherwise the sub-folders are scanned
=======================  ==================================================================

Every sample has label -1 (out of distribution) and the dataset's class list is ImageNet-1k's
(open_clip names; ``--classes`` replaces it): the images are scored against the in-distribution
classes and compared with an ImageNet run by ``vlmprobe metrics ID_RUN --ood OOD_RUN``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataError
from ..specs import DATASET_SPECS
from .datasets import ImageDataset, Sample, image_files
from .imagenet import default_classnames

FLAT = {"inaturalist:": "iNaturalist", "sun:": "SUN", "places:": "Places"}
NINCO_SPLITS = {"ood-classes": "NINCO_OOD_classes", "unit-tests": "NINCO_OOD_unit_tests",
                "popular": "NINCO_popular_datasets_subsamples"}


def _locate(spec: str, prefix: str, top: str, inner: str) -> Path:
    """``ROOT/inner``, or ``ROOT/top/inner`` when ROOT is the folder above the release."""
    root = Path(spec.removeprefix(prefix)).expanduser()
    for cand in (root / inner, root / top / inner):
        if cand.is_dir():
            return cand
    raise DataError(f"dataset {spec!r}: no {top}/{inner} folder under {root} (released layout: {top}/{inner}/...)")


def _ood_dataset(spec: str, base: Path, files: list[Path], fmt: str, meta=None, **info) -> ImageDataset:
    if not files:
        raise DataError(f"dataset {spec!r}: no images under {base}")
    samples = [Sample(id=str(f.relative_to(base)), image=str(f), label=-1, meta=meta(f) if meta else {})
               for f in files]
    return ImageDataset(spec, samples, default_classnames(), info={"format": fmt, "ood": True, **info})


def load_flat_ood(spec: str, split: str | None = None) -> ImageDataset:
    """``inaturalist:``/``sun:``/``places:ROOT`` -> the ``<Name>/images/*.jpg`` files, unlabeled."""
    if split is not None:
        raise DataError(f"dataset {spec!r}: --split does not apply")
    prefix = next(p for p in FLAT if spec.startswith(p))
    images = _locate(spec, prefix, FLAT[prefix], "images")
    return _ood_dataset(spec, images, image_files(images), prefix.rstrip(":"))


def load_textures(spec: str, split: str | None = None) -> ImageDataset:
    """``textures:ROOT`` -> ``dtd/images/<category>/*.jpg``, unlabeled (meta ``category``)."""
    if split is not None:
        raise DataError(f"dataset {spec!r}: --split does not apply")
    images = _locate(spec, "textures:", "dtd", "images")
    return _ood_dataset(spec, images, image_files(images), "textures",
                        meta=lambda f: {"category": f.relative_to(images).parts[0]})


def _ninco_csv(spec: str, root: Path, base: Path, subset: str) -> list[tuple[Path, str]] | None:
    """Rows ``(image path, class)`` of ``<subset>.csv`` (released file list), or None when absent.

    A row naming a missing image is a one-line error naming the CSV and its row (the list and the
    images disagree: a wrong ROOT or an incomplete download), never a silent drop."""
    name = f"{subset}.csv"
    table = next((c for c in (root / name, root / "data" / name, base / name) if c.is_file()), None)
    if table is None:
        return None
    with table.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header not in (["image_location", "class"], ["image_location"]):
            raise DataError(f"{table}: header {header!r}; NINCO file lists have 'image_location,class'")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            path = base / row[0]
            if not path.is_file():
                raise DataError(f"{table} row {line}: image {row[0]!r} not found under {base}")
            rows.append((path, row[1] if len(row) > 1 else subset))
    if not rows:
        raise DataError(f"{table}: no rows")
    return rows


def load_ninco(spec: str, split: str | None = None) -> ImageDataset:
    """``ninco:ROOT`` (module docstring): one of NINCO's three subsets, unlabeled."""
    split = split or "ood-classes"
    if split not in NINCO_SPLITS:
        raise DataError(f"dataset {spec!r}: --split {split!r}; NINCO subsets are {sorted(NINCO_SPLITS)}")
    root = Path(spec.removeprefix("ninco:")).expanduser()
    subset = NINCO_SPLITS[split]
    base = next((c for c in (root, root / "NINCO") if (c / subset).is_dir()), None)
    if base is None:
        raise DataError(f"dataset {spec!r}: no {subset}/ under {root}")
    folder = base / subset
    listed = _ninco_csv(spec, root, base, subset)
    if listed is None:
        return _ood_dataset(spec, folder, image_files(folder), "ninco", subset=split,
                            meta=lambda f: {"ninco_group": f.relative_to(folder).parts[0]})
    group = {path: cls for path, cls in listed}
    return _ood_dataset(spec, folder, list(group), "ninco", subset=split, file_list=f"{subset}.csv",
                        meta=lambda f: {"ninco_group": group[f]})


for _p in FLAT:
    DATASET_SPECS.register(_p, load_flat_ood, f"OOD set (MCM/MOS release): ROOT/{FLAT[_p]}/images/*.jpg")
DATASET_SPECS.register("textures:", load_textures, "OOD set: DTD textures, ROOT/dtd/images/<category>/*.jpg")
DATASET_SPECS.register("ninco:", load_ninco, "NINCO OOD set: ROOT/NINCO_OOD_classes/<class>/ (--split unit-tests|popular)")
