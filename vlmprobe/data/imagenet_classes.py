"""ImageNet-1k class identities: index <-> names, for models whose outputs are ImageNet classes.

A class is found by its index (``296`` or ``"296"``), its WordNet id (``n02134084``), its
open_clip name (``"polar bear"``, the list ``--classes imagenet`` uses) or any WordNet lemma of
the synset as timm ships it (``"ice bear"``, ``"Ursus maritimus"``), case-insensitive. A name
may belong to several indices (open_clip's "missile", "sunglasses"; WordNet's "crane"); all are
returned. Names come from open_clip and timm (``timm.data.ImageNetInfo``), not copied here;
``imagenet_names()`` is the one place vlmprobe reads the ImageNet class names from.
"""
from __future__ import annotations

from functools import lru_cache

from ..errors import VlmprobeError

NUM_CLASSES = 1000


def _norm(name: str) -> str:
    return " ".join(str(name).replace("_", " ").split()).lower()


@lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    """The 1,000 open_clip ImageNet class names in index order."""
    import open_clip

    return tuple(open_clip.IMAGENET_CLASSNAMES)


@lru_cache(maxsize=1)
def _lookup() -> dict[str, tuple[int, ...]]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    table: dict[str, list[int]] = {}
    for i in range(NUM_CLASSES):
        keys = {_norm(imagenet_names()[i]), _norm(info.index_to_label_name(i))}
        keys.update(_norm(lemma) for lemma in info.index_to_description(i).split(","))
        for key in keys:
            if key:
                table.setdefault(key, []).append(i)
    return {k: tuple(v) for k, v in table.items()}


def imagenet_indices(name_or_index, what: str = "class") -> tuple[int, ...]:
    """ImageNet indices for an index, WordNet id or name (module docstring); VlmprobeError
    naming ``what`` when it is not an ImageNet class."""
    if isinstance(name_or_index, int) or str(name_or_index).strip().isdigit():
        i = int(name_or_index)
        if not 0 <= i < NUM_CLASSES:
            raise VlmprobeError(f"{what} {name_or_index!r}: ImageNet class indices are 0..{NUM_CLASSES - 1}")
        return (i,)
    found = _lookup().get(_norm(name_or_index))
    if not found:
        raise VlmprobeError(f"{what} {name_or_index!r} is not an ImageNet class (no ImageNet index, WordNet id "
                            "or class name matches)")
    return found


def is_imagenet_name(name: str, index: int) -> bool:
    """Whether ``name`` names ImageNet class ``index`` (open_clip name, WordNet id or lemma)."""
    return index in _lookup().get(_norm(name), ())
