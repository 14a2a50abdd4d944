"""WebDataset tar shards (CLIP_benchmark's classification format), read with ``tarfile``.

Spec ``wds:PATH_OR_PATTERN``: one ``.tar``, a brace pattern (``shard-{000000..000009}.tar``,
``{a,b}`` lists too), a glob, or a directory of ``*.tar`` (``DIR/<split>/*.tar`` with ``--split``).
Each sample is the members sharing a key (the member name up to the first ``.`` of its base
name): ``{key}.jpg|jpeg|png|webp`` (the image) and ``{key}.cls`` (the class index as text).
Class names come from ``classnames.txt`` (one per line) next to the shards or one directory up
(CLIP_benchmark puts it at the dataset root), or from ``--classes``.

Opening the dataset reads only the tar headers and the tiny ``.cls`` members, keeping for each
sample (shard, byte offset, size) of its image; ``load_image(i)`` seeks there and decodes, so
sample i is addressable (the engine can shard by index) without holding images in memory.
"""
from __future__ import annotations

import glob
import io
import itertools
import re
import tarfile
from pathlib import Path

from ..errors import DataError
from ..specs import DATASET_SPECS
from .classnames import read_string_list
from .datasets import ImageDataset, ImageLoadError, Sample, read_image

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """``a-{000..002}.tar`` -> [a-000.tar, a-001.tar, a-002.tar] (zero padding kept); ``{x,y}``
    -> alternatives; several groups multiply (webdataset's brace notation)."""
    m = _BRACE.search(pattern)
    if not m:
        return [pattern]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        if int(hi) < int(lo):
            raise DataError(f"shard pattern {pattern!r}: range {body} runs backwards")
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    head, tail = pattern[: m.start()], pattern[m.end():]
    return [p for opt in options for p in expand_braces(head + opt + tail)]


def shard_paths(ref: str, split: str | None) -> list[Path]:
    """The shard files a ``wds:`` reference names (existing, in pattern/sorted order)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        root = path / split if split and (path / split).is_dir() else path
        if split and root is path:
            raise DataError(f"wds:{ref}: no sub-directory {split!r} for --split")
        shards = sorted(root.glob("*.tar"))
        if not shards:
            raise DataError(f"wds:{ref}: no .tar shards in {root}")
        return shards
    names = expand_braces(ref)
    if any(ch in ref for ch in "*?["):
        names = sorted(itertools.chain.from_iterable(glob.glob(str(Path(n).expanduser())) for n in names))
    shards = [Path(n).expanduser() for n in names]
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise DataError(f"wds:{ref}: {len(missing)} of {len(shards)} shards do not exist (first: {missing[0]})")
    if not shards:
        raise DataError(f"wds:{ref}: the pattern matches no shard")
    return shards


def split_key(member_name: str) -> tuple[str, str]:
    """``dir/abc.001.jpg`` -> (``dir/abc``, ``001.jpg``): key up to the base name's first dot."""
    head, _, base = member_name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext.lower()


def index_shard(shard: Path) -> tuple[dict, dict]:
    """-> ({key: (offset, size, ext)} of images, {key: class index}) read from one tar's headers."""
    images, classes = {}, {}
    try:
        with tarfile.open(shard, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_key(member.name)
                if ext in IMAGE_SUFFIXES:
                    images[key] = (member.offset_data, member.size, ext)
                elif ext == "cls":
                    raw = tar.extractfile(member).read().decode("utf-8", "replace").strip()
                    try:
                        classes[key] = int(raw)
                    except ValueError:
                        raise DataError(f"{shard}: member {member.name}: class {raw!r} is not an integer") from None
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{shard}: not a readable tar shard ({type(e).__name__}: {e})") from None
    return images, classes


def find_classnames(shards: list[Path]) -> list[str] | None:
    """``classnames.txt`` next to the first shard or one directory up, if present."""
    for folder in (shards[0].parent, shards[0].parent.parent):
        f = folder / "classnames.txt"
        if f.is_file():
            return [n.strip() for n in read_string_list(f, "class-name")]
    return None


def read_member(shard: str, offset: int, size: int):
    """Decode the image stored at ``offset`` (``size`` bytes) of ``shard`` as RGB."""
    where = f"{shard}@{offset}"
    try:
        with open(shard, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except OSError as e:
        raise ImageLoadError(where, f"cannot read shard ({type(e).__name__}: {e})") from None
    return read_image(io.BytesIO(data), where)


def load_wds(spec: str, split: str | None = None) -> ImageDataset:
    """``wds:PATH_OR_PATTERN`` -> ImageDataset (samples in shard order, then member order). A
    sample without ``.cls`` gets label -1 (``load_dataset`` refuses it unless ``--unlabeled``);
    without ``classnames.txt`` the names are the indices ("0", "1", ...) for ``--classes`` to name."""
    shards = shard_paths(spec.removeprefix("wds:"), split)
    names = find_classnames(shards)
    samples, where = [], {}  # where: key -> (shard, offset, size) of its image
    for shard in shards:
        images, labels = index_shard(shard)
        for key, (offset, size, ext) in images.items():
            if key in where:
                raise DataError(f"{shard}: sample key {key!r} appears in more than one place")
            where[key] = (str(shard), offset, size)
            label = labels.get(key, -1)
            if label < -1 or (names is not None and label >= len(names)):
                raise DataError(f"{shard}: {key}.cls = {label} outside the {len(names or [])} class names")
            samples.append(Sample(id=key, image=f"{shard}#{key}.{ext}", label=label))
    if names is None:
        names = [str(i) for i in range(max((s.label for s in samples), default=-1) + 1)]
    return ImageDataset(spec, samples, names, lambda sample: read_member(*where[sample.id]),
                        info={"format": "webdataset", "shards": len(shards), "missing_label": " (no .cls member)"})


DATASET_SPECS.register("wds:", load_wds, "webdataset tar shards: wds:DIR, wds:shard-{000000..000009}.tar or a glob")
