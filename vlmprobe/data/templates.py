"""CLIP prompt templates: ``single`` ("a photo of a {}."), ``imagenet`` (the 80-template
ensemble of Radford et al. as shipped by open_clip), a text file with one ``{}`` template per
line, or a JSON list of such templates."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .classnames import read_string_list

SINGLE = ("a photo of a {}.",)


def load_templates(source: str | None) -> list[str]:
    if source in (None, "", "single"):
        return list(SINGLE)
    if source in ("imagenet", "openai"):
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"template {source!r}: not 'single', 'imagenet' or an existing file")
    templates = read_string_list(path, "template")
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise DataError(f"{path}: every line must contain exactly one '{{}}' placeholder"
                        + (f" (bad: {bad[0]!r})" if bad else " (file is empty)"))
    return templates
