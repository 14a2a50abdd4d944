"""The miniature world's material for CPE (``vlmprobe cpe``): a template pool worth weighting
and descriptions of the digits. Additive: nothing here changes what a toy build trains on.

``CPE_POOL`` (spec ``toy:cpe-pool``) holds three kinds of ``{}`` templates:

- seen: the toy CLIP's own caption templates (``corpus.CAPTION_TEMPLATES``);
- unseen, wrong domain: words the toy CLIP never saw ("sketch", "satellite"; its word-level
  tokenizer maps them to ``<unk>``);
- biased: captions that also name a second digit ("a {}, a one."), the toy counterpart of a
  template naming a wrong context or object. Alone each gets 50-72% top-1 and a worst class
  at 0% on the test split; in a uniform ensemble they drag the worst classes down.

``digit_descriptions()`` (spec ``toy:digit-facts``) turns the world's text-only knowledge
(``corpus.knowledge_facts``: parity, size, successor...; the facts the toy VLM is trained on)
into ``{class: [attribute, ...]}`` ("seven" -> ["an odd number", "a large number"]), the
CuPL/DCLIP file format ``--descriptions`` reads. The toy VLM's language model, asked text-only
("Is seven even or odd?"), states the same facts: ``--describer vlm:toy:vlm``.
"""
from __future__ import annotations

from ..errors import DataError
from .corpus import CAPTION_TEMPLATES, knowledge_facts
from .digits import CLASSNAMES

UNSEEN_TEMPLATES = ("a sketch of a {}.", "a satellite photo of a {}.")
BIASED_TEMPLATES = ("a {}, a seven.", "the {} and the seven.", "a {}, a one.", "the {} and the one.",
                    "a {}, a four.", "the {} and the four.")
CPE_POOL = tuple(CAPTION_TEMPLATES) + UNSEEN_TEMPLATES + BIASED_TEMPLATES


def template_kind(template: str) -> str:
    """seen | unseen | biased (for reports on the toy pool)."""
    return "seen" if template in CAPTION_TEMPLATES else "unseen" if template in UNSEEN_TEMPLATES else "biased"


def digit_descriptions() -> dict[str, list[str]]:
    """class name -> the attributes the world's facts state about it ("X is an odd number.",
    "X is a small number." -> "an odd number", "a small number"), in fact order."""
    out: dict[str, list[str]] = {c: [] for c in CLASSNAMES}
    for _, _, wiki in knowledge_facts():
        words = wiki.rstrip(".").lower().split()
        if len(words) == 5 and words[0] in out and words[1] == "is" and words[-1] == "number":
            out[words[0]].append(" ".join(words[2:]))
    return out


def resolve_templates(spec: str) -> list[str]:
    """``toy:cpe-pool`` -> CPE_POOL (the template spec table's resolver)."""
    if spec != "toy:cpe-pool":
        raise DataError(f"template {spec!r}: the miniature world has toy:cpe-pool")
    return list(CPE_POOL)


def resolve_descriptions(spec: str) -> dict[str, list[str]]:
    """``toy:digit-facts`` -> digit_descriptions() (the description spec table's resolver)."""
    if spec != "toy:digit-facts":
        raise DataError(f"descriptions {spec!r}: the miniature world has toy:digit-facts")
    return digit_descriptions()
