"""ImageNet-X factor annotations and ImageNet-ReaL labels, joined to runs by val file name.

Sources (Idrissi et al., 2023, PyPI ``imagenet-x``; annotations CC-BY-NC 4.0, read from the
installed package, never copied here): ``imagenet_x/annotations/``

- ``imagenet_x_val_{top,multi}_factor.jsonl``: one row per annotated val image,
  ``{"file_name": "ILSVRC2012_val_00004487.JPEG", "class": 762, <16 factors>: 0|1, ...}``;
  ``top`` marks the single most salient factor, ``multi`` every factor that applies.
- ``prototypical_paths.csv``: the prototypical images, excluded by default (as the package does).
- ``imagenet_real_labels.jsonl``: the ImageNet-ReaL labels (Beyer et al., 2020) as ONE JSON list;
  entry i belongs to ``ILSVRC2012_val_{i+1:08d}.JPEG``; an empty list = no valid label.

``--factors FILE.jsonl`` / ``--real-labels FILE`` read files of the same formats.
"""
from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path

from ..errors import DataError

FACTORS = ("pose", "background", "pattern", "color", "smaller", "shape", "partial_view", "subcategory",
           "texture", "larger", "darker", "object_blocking", "person_blocking", "style", "brighter",
           "multiple_objects")
VAL_IMAGES = 50_000


def val_file_name(i: int) -> str:
    """0-based val index -> ``ILSVRC2012_val_000000{i+1}.JPEG``."""
    return f"ILSVRC2012_val_{i + 1:08d}.JPEG"


def package_annotations() -> Path | None:
    """``imagenet_x/annotations`` of the installed ``imagenet-x`` package, or None."""
    import importlib.util

    spec = importlib.util.find_spec("imagenet_x")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "annotations"
    return path if path.is_dir() else None


def _require_package(what: str) -> Path:
    path = package_annotations()
    if path is None:
        raise DataError(f"{what} 'imagenet-x' needs the imagenet-x package (pip install imagenet-x) or a FILE")
    return path


def _stem(name: str) -> str:
    return Path(str(name)).stem


@lru_cache(maxsize=4)
def read_factor_file(path: str, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, int]]:
    """ImageNet-X rows keyed by file-name stem -> {factor: 0|1} (rows whose stem is in ``exclude``
    are left out). Errors name file and line."""
    from ..jsonl import read_jsonl

    out: dict[str, dict[str, int]] = {}
    excluded = set(exclude)
    for lineno, row in read_jsonl(path):
        if "file_name" not in row:
            raise DataError(f"{path}:{lineno}: missing field 'file_name'")
        missing = [k for k in FACTORS if k not in row]
        if missing:
            raise DataError(f"{path}:{lineno}: missing factor field {missing[0]!r}")
        stem = _stem(row["file_name"])
        if stem not in excluded:
            out[stem] = {k: int(row[k]) for k in FACTORS}
    if not out:
        raise DataError(f"{path}: no annotation rows")
    return out


def prototypes(annotations: Path) -> tuple[str, ...]:
    f = annotations / "prototypical_paths.csv"
    if not f.is_file():
        return ()
    with open(f, newline="", encoding="utf-8") as fh:
        return tuple(_stem(r["file_name"]) for r in csv.DictReader(fh))


def factor_sources(source: str, include_prototypes: bool = False) -> dict[str, dict[str, dict[str, int]]]:
    """``imagenet-x`` -> {"top": rows, "multi": rows} from the package; a FILE -> {"file": rows}."""
    if source == "imagenet-x":
        root = _require_package("--factors")
        exclude = () if include_prototypes else prototypes(root)
        return {v: read_factor_file(str(root / f"imagenet_x_val_{v}_factor.jsonl"), exclude) for v in ("top", "multi")}
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"--factors {source}: no such file (give 'imagenet-x' or an ImageNet-X style .jsonl)")
    return {"file": read_factor_file(str(path))}


def read_real_labels(source: str | None) -> dict[str, list[int]]:
    """ReaL labels keyed by file-name stem -> list of ImageNet indices (may be empty). ``source``:
    None / ``imagenet-x`` (the package's file) or a JSON file holding the list (``real.json``)."""
    path = (_require_package("--real-labels") / "imagenet_real_labels.jsonl") if source in (None, "imagenet-x") \
        else Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"--real-labels {source}: no such file")
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg}); expected one list of label lists") from None
    if not isinstance(labels, list) or not all(isinstance(x, list) for x in labels):
        raise DataError(f"{path}: expected a JSON list (entry i = ReaL labels of val image i+1)")
    return {_stem(val_file_name(i)): [int(c) for c in x] for i, x in enumerate(labels)}


def join_by_file_name(images: list[str], table: dict, what: str, run_path) -> list:
    """Per record image path, the ``table`` entry of its file-name stem (None when absent);
    DataError when not one matches (a run that is not on ImageNet val)."""
    rows = [table.get(_stem(Path(im).name)) for im in images]
    if images and all(r is None for r in rows):
        raise DataError(f"{what}: none of the {len(images)} image file names of {run_path} match (e.g. "
                        f"{Path(images[0]).name!r}); it needs a run on ImageNet val (ILSVRC2012_val_*.JPEG)")
    return rows
