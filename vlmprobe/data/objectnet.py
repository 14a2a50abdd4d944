"""ObjectNet (Barbu et al. 2019) in its released layout::

    objectnet-1.0/images/<folder>/*.png           313 folders, a 1-pixel red border on every image
    objectnet-1.0/mappings/folder_to_objectnet_label.json   {folder: ObjectNet label}
    objectnet-1.0/mappings/objectnet_to_imagenet_1k.json    {ObjectNet label: "IN name; IN name"}
    objectnet-1.0/mappings/pytorch_to_imagenet_2012_id.json {class index: line of the next file}
    objectnet-1.0/mappings/imagenet_to_label_2012_v2        one ImageNet label text per line

Only the 113 ObjectNet classes that the mapping ties to ImageNet (125 ImageNet classes) are
read. Two protocols (``--split``):

- ``imagenet`` (default; imagenet-testbed): class list = ImageNet-1k; an image is correct when
  the prediction is any ImageNet class mapped to its ObjectNet class, which for a score matrix
  restricted to the 125 mapped classes equals taking, per ObjectNet class, the max over its
  mapped ImageNet scores. Samples carry ``meta["label_set"]`` (the mapped indices; the ``label``
  is the smallest of them) and ``info["class_subset"]`` restricts every method to the 125
  classes; results report the protocol's accuracy as ``shift.label_set_accuracy``.
- ``names`` (CLIP_benchmark): zero-shot over the 113 ObjectNet class names (sorted).

The border is cropped (``crop`` pixels, default 1) when images are loaded.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from ..specs import DATASET_SPECS
from .datasets import IMAGE_EXTENSIONS, ImageDataset, Sample, read_image
from .imagenet import default_classnames

MAPPINGS = ("folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json",
            "pytorch_to_imagenet_2012_id.json", "imagenet_to_label_2012_v2")
BORDER = 1


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing (ObjectNet's mappings/ folder holds {', '.join(MAPPINGS)})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def read_mappings(mappings: Path) -> dict[str, tuple[str, list[int]]]:
    """{folder: (ObjectNet label, sorted ImageNet class indices)} for the classes overlapping ImageNet."""
    folders = _json(mappings / "folder_to_objectnet_label.json")
    to_in = _json(mappings / "objectnet_to_imagenet_1k.json")
    index_to_line = _json(mappings / "pytorch_to_imagenet_2012_id.json")
    label_file = mappings / "imagenet_to_label_2012_v2"
    if not label_file.is_file():
        raise DataError(f"{label_file}: missing (ObjectNet's mappings/ folder holds {', '.join(MAPPINGS)})")
    lines = [line.strip() for line in label_file.read_text(encoding="utf-8").splitlines()]
    line_to_index = {}
    for idx, line in index_to_line.items():
        if not str(idx).isdigit() or not isinstance(line, int) or not 0 <= line < len(lines):
            raise DataError(f"{mappings / MAPPINGS[2]}: entry {idx!r}: {line!r} is not a line of {label_file.name}")
        line_to_index[lines[line]] = int(idx)
    by_label = {}
    for label, names in to_in.items():
        idx = []
        for name in str(names).split("; "):
            if name.strip() not in line_to_index:
                raise DataError(f"{mappings / MAPPINGS[1]}: {label!r} maps to {name!r}, not a label in {label_file.name}")
            idx.append(line_to_index[name.strip()])
        by_label[label] = sorted(set(idx))
    return {folder: (label, by_label[label]) for folder, label in folders.items() if label in by_label}


def _cropping_loader(border: int):
    def load(sample):
        img = read_image(sample.image)
        w, h = img.size
        return img.crop((border, border, w - border, h - border)) if w > 2 * border and h > 2 * border else img
    return load


def load_objectnet(spec: str, split: str | None = None, border: int = BORDER) -> ImageDataset:
    """``objectnet:ROOT`` (module docstring); ROOT = ``objectnet-1.0`` or its parent."""
    split = split or "imagenet"
    if split not in ("imagenet", "names"):
        raise DataError(f"dataset {spec!r}: --split {split!r}; ObjectNet protocols are 'imagenet' (max over mapped "
                        "ImageNet classes) and 'names' (zero-shot over ObjectNet names)")
    root = Path(spec.removeprefix("objectnet:")).expanduser()
    if (root / "objectnet-1.0").is_dir():
        root = root / "objectnet-1.0"
    if not (root / "images").is_dir():
        raise DataError(f"dataset {spec!r}: no images/ folder under {root} (objectnet-1.0/images/<folder>/)")
    overlap = read_mappings(root / "mappings")
    names = sorted({label for label, _ in overlap.values()})
    samples = []
    for folder in sorted(d for d in (root / "images").iterdir() if d.is_dir()):
        if folder.name not in overlap:
            continue  # one of the 200 ObjectNet classes without an ImageNet counterpart
        label, mapped = overlap[folder.name]
        for f in sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()):
            meta = {"objectnet_class": label}
            if split == "imagenet":
                meta["label_set"] = mapped
            samples.append(Sample(id=str(f.relative_to(root / "images")), image=str(f),
                                  label=mapped[0] if split == "imagenet" else names.index(label), meta=meta))
    if not samples:
        raise DataError(f"dataset {spec!r}: no images in the ObjectNet folders that overlap ImageNet")
    info = {"format": "objectnet", "protocol": f"objectnet-{split}", "border_crop": border,
            "objectnet_classes": len(names)}
    if split == "imagenet":
        info["class_subset"] = sorted({i for _, m in overlap.values() for i in m})
        return ImageDataset(spec, samples, default_classnames(), _cropping_loader(border), info)
    return ImageDataset(spec, samples, names, _cropping_loader(border), info)


DATASET_SPECS.register("objectnet:", load_objectnet,
                       "ObjectNet: ROOT/images/<folder>/ + mappings/ (--split imagenet|names)")
