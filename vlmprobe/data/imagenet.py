"""ImageNet-1k validation data in the two layouts users have it.

1. **WordNet-id folders** (torchvision/timm layout, e.g. after the usual ``valprep.sh``)::

       val/n01440764/ILSVRC2012_val_00000293.JPEG

   Folder ``n01440764`` is class index ``i`` where ``i`` is its position in the ImageNet-1k synset
   list that timm ships (``timm.data.ImageNetInfo().label_names()``, sorted WordNet ids). A folder
   holding only some of the 1,000 classes keeps the full 1,000-class index space.

2. **The flat val folder + a label file**, spec ``imagenet:VAL_DIR+labels:FILE`` (or
   ``VAL_DIR+labels:FILE``). ``FILE`` is either

   - the devkit's ``ILSVRC2012_validation_ground_truth.txt``: 50,000 lines, line ``n`` is the
     1-based ``ILSVRC2012_ID`` of ``ILSVRC2012_val_{n:08d}.JPEG``. Those ids are NOT the sorted
     WordNet-id order; they are mapped to WordNet ids through the devkit's ``meta.mat`` (struct
     array ``synsets`` with fields ``ILSVRC2012_ID``, ``WNID``, ``words``, ..., ``num_children``;
     leaves have ``num_children == 0``), which must sit next to the ground-truth file (the devkit's
     ``data/`` folder), then to class indices as in (1); or
   - a plain two-column text/CSV file ``file_name label`` (whitespace, comma or tab separated;
     optional header), ``label`` a WordNet id, a 0-based class index or a class name.

Class names default to open_clip's ImageNet-1k names (``--classes imagenet``), which are in the
same synset order; ``--classes FILE`` with 1,000 names replaces them position by position.
Only the list of (path, label) entries is held in memory; images are read on demand.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import DataError
from ..specs import DATASET_SPECS
from .datasets import ImageDataset, Sample, image_files

WNID = re.compile(r"^n\d{8}$")
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
VAL_FILE = re.compile(r"ILSVRC2012_val_(\d{8})\.", re.IGNORECASE)
LABELS_SEPARATOR = "+labels:"


def synsets() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (timm's ``ImageNetInfo``)."""
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        raise DataError("ImageNet WordNet-id labels need timm (its synset list): pip install timm") from None
    return list(ImageNetInfo().label_names())


def default_classnames(count: int = 1000) -> list[str]:
    """open_clip's ImageNet-1k class names (same order as ``synsets()``)."""
    from .imagenet_classes import imagenet_names

    names = list(imagenet_names())
    if len(names) != count:
        raise DataError(f"open_clip ships {len(names)} ImageNet names, expected {count}")
    return names


def is_wnid_folder(root: Path) -> bool:
    """Every (non-hidden) sub-directory of ``root`` is named like a WordNet id (``n01440764``)."""
    dirs = [d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return bool(dirs) and all(WNID.match(d) for d in dirs)


def load_wnid_folder(spec: str, root: Path) -> ImageDataset:
    """Layout (1): ``root/<wnid>/<image>`` -> samples labelled in the 1,000-class index space."""
    index = {w: i for i, w in enumerate(synsets())}
    samples = []
    for d in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        if d.name not in index:
            raise DataError(f"{d}: {d.name!r} is not one of the ImageNet-1k WordNet ids")
        samples += [Sample(id=str(f.relative_to(root)), image=str(f), label=index[d.name]) for f in image_files(d)]
    return ImageDataset(spec, samples, default_classnames(len(index)),
                        info={"format": "imagenet-wnid-folders", "label_source": "timm ImageNetInfo synsets"})


def read_devkit_meta(path: Path) -> dict[int, str]:
    """``meta.mat`` -> {ILSVRC2012_ID: WNID} for the 1,000 leaf synsets."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"{path}: reading the devkit's meta.mat needs scipy") from None
    try:
        synsets_ = loadmat(str(path), squeeze_me=True)["synsets"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a devkit meta.mat with a 'synsets' struct ({type(e).__name__}: {e})") from None
    fields = synsets_.dtype.names or ()
    for need in ("ILSVRC2012_ID", "WNID", "num_children"):
        if need not in fields:
            raise DataError(f"{path}: 'synsets' has no field {need!r}")
    return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets_.ravel() if int(s["num_children"]) == 0}


def read_ground_truth(path: Path) -> list[str]:
    """Devkit ground truth -> WordNet id per val image (entry n-1 for ``ILSVRC2012_val_{n:08d}``)."""
    meta = path.parent / "meta.mat"
    if not meta.exists():
        raise DataError(f"{path}: the devkit ground truth holds ILSVRC2012_IDs; meta.mat (the devkit's "
                        f"data/meta.mat) must sit next to it to map them to WordNet ids")
    id_to_wnid = read_devkit_meta(meta)
    wnids = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not line.isdigit() or int(line) not in id_to_wnid:
            raise DataError(f"{path}:{lineno}: {line!r} is not an ILSVRC2012_ID in {meta}")
        wnids.append(id_to_wnid[int(line)])
    return wnids


def read_label_table(path: Path) -> list[tuple[str, str, int]]:
    """Plain ``file label`` rows (whitespace, comma or tab separated) -> (file, label, line)."""
    rows = []
    text = path.read_text(encoding="utf-8")
    dialect_delim = "," if "," in text.split("\n", 1)[0] else None
    lines = text.splitlines()
    parsed = csv.reader(lines, delimiter=",") if dialect_delim else (line.split() for line in lines)
    for lineno, parts in enumerate(parsed, 1):
        parts = [p.strip() for p in parts if p.strip()]
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected 'file label' (2 fields), got {len(parts)}")
        rows.append((parts[0], parts[1], lineno))
    if rows and rows[0][0].lower() in ("file", "filename", "file_name", "image", "path"):
        rows = rows[1:]  # header
    if not rows:
        raise DataError(f"{path}: no 'file label' rows")
    return rows


def _label_index(value: str, index: dict[str, int], names: dict[str, int], where: str) -> int:
    if WNID.match(value):
        if value not in index:
            raise DataError(f"{where}: {value!r} is not one of the ImageNet-1k WordNet ids")
        return index[value]
    if value.lstrip("-").isdigit():
        i = int(value)
        if not 0 <= i < len(index):
            raise DataError(f"{where}: class index {i} outside [0, {len(index)})")
        return i
    if value in names:
        return names[value]
    raise DataError(f"{where}: label {value!r} is neither a WordNet id, a class index nor an ImageNet class name")


def load_flat_val(spec: str, root: Path, labels: Path) -> ImageDataset:
    """Layout (2): flat ``root`` of val images + the devkit ground truth or a ``file label`` table."""
    if not root.is_dir():
        raise DataError(f"dataset {spec!r}: {root} is not a directory")
    if not labels.is_file():
        raise DataError(f"dataset {spec!r}: label file {labels} does not exist")
    wnids = synsets()
    index = {w: i for i, w in enumerate(wnids)}
    classnames = default_classnames(len(wnids))
    files = {f.name: f for f in image_files(root)}
    samples = []
    if labels.name == GROUND_TRUTH or _all_digit_lines(labels):
        truth = read_ground_truth(labels)
        for name, f in sorted(files.items()):
            m = VAL_FILE.search(name)
            if not m:
                raise DataError(f"{f}: not named ILSVRC2012_val_NNNNNNNN (needed to find its line in {labels})")
            n = int(m.group(1))
            if not 1 <= n <= len(truth):
                raise DataError(f"{f}: image number {n} has no line in {labels} ({len(truth)} lines)")
            samples.append(Sample(id=name, image=str(f), label=index[truth[n - 1]]))
        source = "devkit ground truth + meta.mat"
    else:
        by_name = {n: i for i, n in enumerate(classnames)}
        for file, value, lineno in read_label_table(labels):
            where = f"{labels}:{lineno}"
            f = files.get(Path(file).name)
            if f is None:
                raise DataError(f"{where}: image {file!r} not found in {root}")
            samples.append(Sample(id=f.name, image=str(f), label=_label_index(value, index, by_name, where)))
        samples.sort(key=lambda s: s.id)
        source = f"label table {labels.name}"
    return ImageDataset(spec, samples, classnames,
                        info={"format": "imagenet-flat", "labels_file": str(labels), "label_source": source})


def _all_digit_lines(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as f:
        head = [line.strip() for _, line in zip(range(20), f) if line.strip()]
    return bool(head) and all(line.isdigit() for line in head)


def load_imagenet(spec: str, split: str | None = None) -> ImageDataset:
    """``imagenet:VAL_DIR`` (WordNet-id folders) or ``imagenet:VAL_DIR+labels:FILE`` (flat)."""
    if split:
        raise DataError(f"dataset {spec!r}: --split does not apply; point at the val (or train) folder itself")
    ref = spec.removeprefix("imagenet:")
    root, sep, labels = ref.partition(LABELS_SEPARATOR)
    root_path = Path(root).expanduser()
    if sep:
        return load_flat_val(spec, root_path, Path(labels).expanduser())
    if not root_path.is_dir():
        raise DataError(f"dataset {spec!r}: {root_path} is not a directory")
    if not is_wnid_folder(root_path):
        raise DataError(f"dataset {spec!r}: {root_path} has no WordNet-id folders (n01440764/...); for a flat "
                        f"val folder add +labels:ILSVRC2012_validation_ground_truth.txt or a 'file label' file")
    return load_wnid_folder(spec, root_path)


DATASET_SPECS.register("imagenet:", load_imagenet, "ImageNet-1k: imagenet:DIR (WordNet-id folders) or "
                       "imagenet:VAL_DIR+labels:FILE (devkit ground truth or a 'file label' table)")
