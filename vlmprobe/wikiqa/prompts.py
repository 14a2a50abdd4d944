"""What the model is asked, per condition.

- ``image`` (default): the released ``text`` as is (stem, options A-D, "Choose A, B, C, or D."),
  with the image.
- ``no_image``: the same text, no image (language prior only).
- ``oracle_class``: ``ORACLE_TEMPLATE`` (the true class name) before the text; with the image
  kept or (with ``no_image``) withheld. It bounds what perfect recognition would give.
- ``cot`` (generation only): ``COT_SUFFIX`` appended, as in the paper's CoT prompts, and a
  budget of ``COT_MAX_NEW_TOKENS`` new tokens instead of ``MAX_NEW_TOKENS`` (shared with
  ``classify.prompts``).

Likelihood scoring renders the question through the chat template and appends
``answer_prefix`` (default ``"The answer is"``); the options (letters or texts) are scored as
continuations of that prefix.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..classify.prompts import COT_MAX_NEW_TOKENS, COT_SUFFIX, MAX_NEW_TOKENS
from .loader import Question

ORACLE_TEMPLATE = "This object is: {classname}."
ANSWER_PREFIX = "The answer is"


@dataclass(frozen=True)
class Condition:
    """Which information the model gets: the image, the class name, a CoT cue."""

    image: bool = True
    oracle_class: bool = False
    cot: bool = False

    @property
    def name(self) -> str:
        parts = (["oracle_class"] if self.oracle_class else []) + (["image"] if self.image else ["no_image"])
        return "+".join(parts + (["cot"] if self.cot else []))

    def question(self, q: Question) -> str:
        """The user turn's text for question ``q`` (before the chat template)."""
        text = q.text.strip()
        if self.oracle_class:
            text = ORACLE_TEMPLATE.format(classname=q.classname) + "\n" + text
        if self.cot:
            text = text + COT_SUFFIX
        return text

    @property
    def max_new_tokens(self) -> int:
        return COT_MAX_NEW_TOKENS if self.cot else MAX_NEW_TOKENS

    def to_config(self) -> dict:
        return {**asdict(self), "name": self.name,
                "oracle_template": ORACLE_TEMPLATE if self.oracle_class else None,
                "cot_suffix": COT_SUFFIX if self.cot else None}
