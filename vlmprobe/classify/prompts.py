"""Questions asked in direct generation: a small registry of named variants plus user files.

A question is the user-turn text only; ``VisionLanguageModel.render`` puts it through the
model's chat template (LLaVA-1.5: ``USER: <image>\\n{question} ASSISTANT:``).

How a question is built for one image (``PromptTemplate.format``)::

    open world   : question
    closed world : question.format(classes=...)             if the question has {classes}
                   question + ' Choose one from "c1, c2, ..."'  otherwise (the paper's clause)
    CoT          : ... + " Let's think step by step."  (and 512 new tokens instead of 64)

``c1, c2, ...`` are the candidate class names joined with ``", "`` in the order given
(shuffled per image or fixed; see ``candidates.py``).

A user prompt file is UTF-8 text: the whole file (stripped) is the question. It may contain
the placeholder ``{classes}`` once (where the candidate list goes in closed world); literal
braces are written ``{{`` and ``}}``. Any other placeholder, unbalanced brace, or an empty
file is an error naming the file.
"""
from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

from ..errors import VlmprobeError
from ..models.base import PAPER_QUESTION

OPEN_WORLD_QUESTION = PAPER_QUESTION  # the paper's question
CLOSED_WORLD_CLAUSE = ' Choose one from "{classes}"'  # the paper's closed-world suffix
COT_SUFFIX = " Let's think step by step."
MAX_NEW_TOKENS = 64  # the paper's budget for a direct answer
COT_MAX_NEW_TOKENS = 512  # the paper's budget with chain of thought
CLASS_SEPARATOR = ", "


class PromptError(VlmprobeError):
    """A prompt name or prompt file that cannot be used."""


@dataclass(frozen=True)
class PromptTemplate:
    """One question variant. ``question`` may hold ``{classes}``; ``cot`` appends COT_SUFFIX."""

    name: str
    question: str
    cot: bool = False
    source: str = "builtin"  # "builtin" or the prompt file's path

    @property
    def has_classes_slot(self) -> bool:
        return any(field == "classes" for _, field, _, _ in string.Formatter().parse(self.question))

    @property
    def max_new_tokens(self) -> int:
        """Default generation budget: 512 with CoT, else 64."""
        return COT_MAX_NEW_TOKENS if self.cot else MAX_NEW_TOKENS

    def with_cot(self, cot: bool = True) -> "PromptTemplate":
        return PromptTemplate(self.name, self.question, cot, self.source)

    def format(self, classnames: list[str] | None = None) -> str:
        """The question for one image; ``classnames`` (closed world, in display order) or None
        (open world)."""
        if classnames is None:
            if self.has_classes_slot:
                raise PromptError(f"prompt {self.name!r} ({self.source}) has a {{classes}} slot but the "
                                  "run is open-world (no candidate list); use --closed-world")
            text = self.question.format()
        else:
            classes = CLASS_SEPARATOR.join(classnames)
            if self.has_classes_slot:
                text = self.question.format(classes=classes)
            else:
                text = self.question.format() + CLOSED_WORLD_CLAUSE.format(classes=classes)
        return text + COT_SUFFIX if self.cot else text

    def to_config(self) -> dict:
        """Everything that determines the question text (recorded in a run's config)."""
        cfg = {"name": self.name, "question": self.question, "cot": self.cot, "source": self.source}
        if self.source != "builtin":
            cfg["sha256"] = hashlib.sha256(self.question.encode()).hexdigest()[:16]
        return cfg


# name -> question. Braces in questions follow str.format rules ({classes}, {{, }}).
PROMPTS: dict[str, str] = {
    "default": OPEN_WORLD_QUESTION,  # the paper's
    "what": "What is in this photo?",
    "main-object": "What is the main object in this image?",
    "short": OPEN_WORLD_QUESTION + " Answer the question using a single word or phrase.",
    "name-it": "Name the object in this photo.",
    "cot": OPEN_WORLD_QUESTION,  # the paper's CoT variant: default question + COT_SUFFIX
}
_COT_NAMES = {"cot"}


def _check_question(question: str, where: str) -> None:
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(question) if field is not None]
    except ValueError as e:  # "Single '}' encountered", "expected '}' before end of string"
        raise PromptError(f"{where}: malformed braces ({e}); write literal braces as {{{{ and }}}}") from None
    bad = [f for f in fields if f != "classes"]
    if bad:
        raise PromptError(f"{where}: unknown placeholder {{{bad[0]}}}; the only placeholder is {{classes}} "
                          "(write literal braces as {{ and }})")
    if fields.count("classes") > 1:
        raise PromptError(f"{where}: {{classes}} appears {fields.count('classes')} times; use it at most once")


def load_prompt_file(path: str | Path) -> PromptTemplate:
    """A user prompt file (see module docstring) -> PromptTemplate named after the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise PromptError(f"prompt file {p}: not UTF-8 text") from None
    except OSError as e:
        raise PromptError(f"prompt file {p}: cannot read ({e.strerror or e})") from None
    if not text:
        raise PromptError(f"prompt file {p}: empty; write the question asked for every image")
    _check_question(text, f"prompt file {p}")
    return PromptTemplate(name=p.stem, question=text, source=str(p))


def get_prompt(name_or_file: str, cot: bool = False) -> PromptTemplate:
    """A registry name (``PROMPTS``) or the path of a prompt file. ``cot`` adds CoT to any prompt."""
    if name_or_file in PROMPTS:
        template = PromptTemplate(name=name_or_file, question=PROMPTS[name_or_file], cot=name_or_file in _COT_NAMES)
    elif Path(name_or_file).expanduser().is_file():
        template = load_prompt_file(Path(name_or_file).expanduser())
    else:
        raise PromptError(f"--prompt {name_or_file!r}: neither a prompt name ({', '.join(PROMPTS)}) nor a file")
    return template.with_cot(True) if cot else template


for _name, _question in PROMPTS.items():  # registry entries obey the same rules as files
    _check_question(_question, f"built-in prompt {_name!r}")
