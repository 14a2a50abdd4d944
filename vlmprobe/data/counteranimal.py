"""CounterAnimal (Wang et al., arXiv 2403.11497) in its released layout::

    ROOT/<ImageNet index> <class name>/common-<background>/<image>
    ROOT/<ImageNet index> <class name>/counter-<background>/<image>

(later versions say ``easy-``/``hard-``: read as common/counter). Every sample carries its
ImageNet label (the folder's index), and in ``Sample.meta``: ``group`` (``common``/``counter``),
``background`` and ``class_folder``. The label space is all ImageNet-1k classes (open_clip's
names; the 1-vs-1000 protocol) unless ``ROOT/classes.json`` gives the world's own class list
(the miniature world's split writes one). A folder's class name must name its index in that
list (ImageNet: open_clip name, WordNet id or any WordNet lemma, so ``"ice bear"`` is class 296).
The 1-vs-20 protocol is a per-image label space on top (``--label-space``,
``classify.candidates.LabelSpace``).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from .datasets import IMAGE_EXTENSIONS, ImageDataset, Sample

GROUP_ALIASES = {"common": "common", "counter": "counter", "easy": "common", "hard": "counter"}
FOLDER = re.compile(r"^(\d+)[ _]+(.+)$")


def _class_list(root: Path) -> tuple[list[str], str]:
    own = root / "classes.json"
    if own.is_file():
        from .classnames import read_classnames

        return read_classnames(str(own)), "classes.json"
    from .imagenet_classes import imagenet_names

    return list(imagenet_names()), "imagenet"


def _check_name(folder: Path, index: int, name: str, names: list[str], source: str) -> None:
    if not 0 <= index < len(names):
        raise DataError(f"{folder}: class index {index} outside the {len(names)} classes of {source}")
    if source != "imagenet":
        if name.strip().lower() != names[index].strip().lower():
            raise DataError(f"{folder}: class {index} is {names[index]!r} in {folder.parent / 'classes.json'}, "
                            f"not {name!r}")
        return
    from .imagenet_classes import _lookup, _norm, is_imagenet_name

    if not is_imagenet_name(name, index):
        other = _lookup().get(_norm(name))
        hint = f"it names ImageNet class {other[0]}" if other else "it is not an ImageNet class name"
        raise DataError(f"{folder}: {name!r} is not ImageNet class {index} ({names[index]!r}); {hint}")


def scan_counteranimal(root: Path) -> tuple[list[Sample], list[str], dict]:
    """-> (samples, class names, info) for the layout above; DataError naming the folder."""
    if not root.is_dir():
        raise DataError(f"counteranimal:{root}: not a directory")
    names, source = _class_list(root)
    folders = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                     key=lambda d: d.name)
    if not folders:
        raise DataError(f"counteranimal:{root}: no class folders (expected '<ImageNet index> <class name>')")
    samples, per_class = [], {}
    for folder in folders:
        m = FOLDER.match(folder.name)
        if not m:
            raise DataError(f"{folder}: class folder name must be '<ImageNet index> <class name>'")
        index, name = int(m.group(1)), m.group(2).strip()
        _check_name(folder, index, name, names, source)
        subs = {}
        for sub in sorted(d for d in folder.iterdir() if d.is_dir()):
            prefix, _, background = sub.name.partition("-")
            if prefix.lower() in GROUP_ALIASES and background:
                subs[sub] = (GROUP_ALIASES[prefix.lower()], background)
        groups = {g for g, _ in subs.values()}
        if groups != {"common", "counter"}:
            missing = " and ".join(sorted({"common", "counter"} - groups))
            raise DataError(f"{folder}: no {missing}-<background> subfolder (CounterAnimal needs both)")
        for sub, (group, background) in subs.items():
            for f in sorted(sub.rglob("*")):
                if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                    samples.append(Sample(id=str(f.relative_to(root)), image=str(f), label=index,
                                          meta={"group": group, "background": background,
                                                "class_folder": folder.name}))
        per_class[folder.name] = sum(1 for s in samples if s.meta["class_folder"] == folder.name)
        if per_class[folder.name] == 0:
            raise DataError(f"{folder}: no images in its common/counter subfolders")
    return samples, names, {"format": "counteranimal", "label_source": source, "images_per_class": per_class}


def load_counteranimal(spec: str) -> ImageDataset:
    """``counteranimal:ROOT`` -> ImageDataset (module docstring)."""
    root = Path(spec.removeprefix("counteranimal:")).expanduser()
    samples, names, info = scan_counteranimal(root)
    return ImageDataset(spec, samples, names, info=info)
