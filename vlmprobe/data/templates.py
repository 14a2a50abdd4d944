"""CLIP prompt templates: ``single`` ("a photo of a {}."), ``imagenet`` (the 80-template
ensemble of Radford et al. as shipped by open_clip), a prefix registered in
``specs.TEMPLATE_SPECS`` (``toy:cpe-pool``, the miniature world's pool), or a file in one of the formats
researchers already have:

- text: one template per non-blank line, each with exactly one ``{}`` (or ``{c}``) placeholder;
- JSON list of such templates (CLIP_benchmark writes them with ``{c}``);
- per-class JSON ``{class name: [prompt, ...]}`` (CuPL / CLIP_benchmark "cupl" prompts): full
  prompts per class, no placeholder. A per-class file is one pool member whose class
  embedding is the mean of that class's prompts; it must name exactly the dataset's classes.

``load_templates`` returns the ``{}`` strings (the historical API); ``load_template_pool``
returns ``PoolMember`` objects that cover both kinds (used by zero-shot and CPE).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .classnames import read_string_list

SINGLE = ("a photo of a {}.",)
CLIP_BENCHMARK_SLOT = "{c}"


@dataclass(frozen=True)
class PoolMember:
    """One candidate of a template pool: a ``{}`` template, or per-class prompts (``per_class``)."""

    name: str  # the template text, or "<file>" for a per-class prompt file
    template: str | None = None
    per_class: tuple[tuple[str, tuple[str, ...]], ...] | None = None  # ((class, prompts), ...)

    def prompts(self, classname: str) -> list[str]:
        if self.template is not None:
            return [self.template.format(classname)]
        return list(dict(self.per_class)[classname])

    def to_config(self) -> dict:
        if self.template is not None:
            return {"name": self.name, "template": self.template}
        return {"name": self.name, "per_class": {c: list(p) for c, p in self.per_class}}


def check_classes(named, classnames, where: str, what: str) -> None:
    """One line when ``named`` (classes in a file) and the dataset's ``classnames`` differ:
    unknown names are always an error; ``what`` says what the file holds."""
    unknown = [c for c in named if c not in set(classnames)]
    if unknown:
        raise DataError(f"{where}: {what} for unknown class {unknown[0]!r} ({len(unknown)} unknown; "
                        f"the dataset's classes are e.g. {list(classnames)[:3]})")


def check_pool_classes(pool: list[PoolMember], classnames, where: str) -> None:
    """Per-class members must give prompts for exactly the dataset's classes."""
    for m in pool:
        if m.per_class is None:
            continue
        have = [c for c, _ in m.per_class]
        check_classes(have, classnames, where, "prompts")
        missing = [c for c in classnames if c not in set(have)]
        if missing:
            raise DataError(f"{where}: no prompts for class {missing[0]!r} ({len(missing)} classes missing)")


def _normalize_template(t: str) -> str:
    return t.replace(CLIP_BENCHMARK_SLOT, "{}")


def _check_templates(templates: list[str], path: Path) -> list[str]:
    templates = [_normalize_template(t) for t in templates]
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise DataError(f"{path}: every template must contain exactly one '{{}}' (or '{{c}}') placeholder"
                        + (f" (bad: {bad[0]!r})" if bad else " (file is empty)"))
    return templates


def _per_class(obj: dict, path: Path) -> PoolMember:
    items = []
    for cls, prompts in obj.items():
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise DataError(f"{path}: class {cls!r} must map to a non-empty list of prompt strings")
        items.append((str(cls), tuple(p.strip() for p in prompts)))
    if not items:
        raise DataError(f"{path}: empty template pool (no classes)")
    return PoolMember(name=path.name, per_class=tuple(items))


def _spec_entry(source: str):
    """The template-spec table entry of ``source`` (e.g. ``toy:`` from the toy plug-in), if any."""
    from ..specs import TEMPLATE_SPECS

    return TEMPLATE_SPECS.find(source) if ":" in source and not Path(source).expanduser().exists() else None


def _per_class_json(source: str) -> tuple[Path, dict] | None:
    """(path, object) when ``source`` is a per-class prompt JSON file, else None."""
    path = Path(source).expanduser()
    if path.suffix != ".json" or not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg})") from None
    if isinstance(obj, dict) and obj and not all(str(k).isdigit() for k in obj):
        return path, obj
    return None


def load_template_pool(source: str | None) -> list[PoolMember]:
    """The pool members of a template source (see module docstring); never empty."""
    per_class = _per_class_json(source) if source else None
    if per_class:
        return [_per_class(per_class[1], per_class[0])]
    return [PoolMember(name=t, template=t) for t in load_templates(source)]


def load_templates(source: str | None) -> list[str]:
    """``{}`` templates of a source; a per-class JSON is refused here (use ``load_template_pool``)."""
    if source in (None, "", "single"):
        return list(SINGLE)
    if source in ("imagenet", "openai"):
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    entry = _spec_entry(source)
    if entry is not None:
        return _check_templates(list(entry.resolve(source)), Path(source))
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"template {source!r}: not 'single', 'imagenet' or an existing file")
    if _per_class_json(source):
        raise DataError(f"{path}: per-class prompts ({{class: [prompts]}}) have no '{{}}' templates; "
                        "use them with --method zeroshot --templates or vlmprobe cpe")
    return _check_templates(read_string_list(path, "template"), path)
