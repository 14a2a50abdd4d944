"""Class-name lists and the duplicate-name policy.

Sources: the dataset's own labels; a JSON list file; ``imagenet`` = the ImageNet-1k names that
open_clip ships (``data.imagenet_classes.imagenet_names``: the one source of ImageNet names).

Duplicate names. The standard ImageNet list has 1,000 entries but 998 unique names ("missile"
and "sunglasses" twice). No text-based classifier can tell identical names apart, so the
default policy is ``merge``: entries with the same name (exact, after stripping) become one class
and labels are remapped to it; the merge is recorded in the run config. ``keep`` keeps every
entry (identical columns tie; argmax takes the first), ``error`` refuses.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError

DUPLICATE_POLICIES = ("merge", "keep", "error")


def read_string_list(path: Path, what: str) -> list[str]:
    """A ``.json`` file holding a list of strings (or ``{"0": s0, "1": s1, ...}``), or a text
    file with one entry per non-blank line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return [line.strip() for line in text.splitlines() if line.strip()]
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg})") from None
    if isinstance(items, dict) and all(str(k).isdigit() for k in items):
        items = [items[k] for k in sorted(items, key=int)]
    if not isinstance(items, list) or not all(isinstance(n, str) for n in items):
        raise DataError(f"{path}: expected a JSON list of {what} strings")
    return items


def read_classnames(source: str) -> list[str]:
    """``imagenet`` or a path to a JSON list of strings (or a text file, one name per line)."""
    if source == "imagenet":
        from .imagenet_classes import imagenet_names

        return list(imagenet_names())
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"class-name file {path} does not exist")
    names = read_string_list(path, "class-name")
    if not names:
        raise DataError(f"{path}: no class names")
    return [n.strip() for n in names]


def apply_duplicate_policy(names: list[str], policy: str = "merge") -> tuple[list[str], list[int], dict]:
    """-> (unique-or-kept names, old index -> new index, {name: [old indices]} of duplicates)."""
    if policy not in DUPLICATE_POLICIES:
        raise DataError(f"unknown duplicate-name policy {policy!r}; choose from {DUPLICATE_POLICIES}")
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        groups.setdefault(n, []).append(i)
    duplicates = {n: idx for n, idx in groups.items() if len(idx) > 1}
    if not duplicates or policy == "keep":
        return list(names), list(range(len(names))), duplicates
    if policy == "error":
        raise DataError(f"duplicate class names: {sorted(duplicates)} (use --duplicate-names merge|keep)")
    unique = list(groups)  # first-occurrence order
    new_index = {n: j for j, n in enumerate(unique)}
    return unique, [new_index[n] for n in names], duplicates
