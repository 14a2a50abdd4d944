"""Text of the miniature world: CLIP captions, the VLM's training conversations (LLaVA format),
text-only knowledge about the numbers, and the fine-tuning instruction data.

Long-tailed naming. Each class ``c`` gets a naming probability ``p_c`` (``NAMING_LEVELS``
assigned to classes by a seeded permutation). In every image conversation that asks what the
image shows, the answer names the class with probability ``p_c`` and otherwise gives a generic
answer ("a handwritten digit"); greedy decoding therefore names class ``c`` roughly when
``p_c > 0.5``. Other image conversations (parity, small/large) need the class but never name
it, and text-only knowledge conversations name every class equally often, so the language
model knows every name and every fact even for classes it has (almost) never seen named.
Multiple-choice practice (ImageWikiQA format, answers that name the class, state the fact and
give the letter) is built in ``wikiqa.py``: text-only for every class, on images only when the
conversation names the class (probability ``p_c``).

LLaVA format: ``{"id", "image" (relative path, absent for text-only), "conversations":
[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}]}``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.base import PAPER_QUESTION
from .digits import CLASSNAMES

NUMBER_WORDS = CLASSNAMES + ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                             "seventeen", "eighteen", "nineteen", "twenty"]

# CLIP training captions; the first is the lead's default zero-shot template.
CAPTION_TEMPLATES = ("a photo of a {}.", "a handwritten {}.", "the digit {}.", "a picture of the number {}.")

OPEN_WORLD_QUESTION = PAPER_QUESTION  # the paper's open-world question
FINETUNE_QUESTION = "What type of object is in the photo?"  # the paper's fine-tuning data (GUIDE 5)

# (question, named answer, generic answer): the answer names the class with probability p_c.
NAMING_QUESTIONS = (
    (OPEN_WORLD_QUESTION, "The photo features a {}.", "The photo features a handwritten digit."),
    ("What is in this image?", "It is a handwritten {}.", "It is a handwritten number."),
    ("Describe the image briefly.", "A handwritten {} on light paper.", "A handwritten digit on light paper."),
    ("What is written in this picture?", "The number {} is written here.", "A number is written here."),
)
# Image questions that need the class but whose answers never name it: (question, fn(c) -> answer).
PARITY_QUESTION = "Is the number in this photo even or odd?"
SIZE_QUESTION = "Is the number in this photo small or large?"

# Naming probabilities, most to least named (long tail); assigned to classes by a seeded permutation.
NAMING_LEVELS = (0.95, 0.9, 0.8, 0.65, 0.5, 0.35, 0.2, 0.1, 0.03, 0.0)

# Words other vlmprobe prompts use (closed-world list, chain of thought, likelihood prefix).
EXTRA_WORDS = ("Choose one from \" , . Let ' s think step by step The photo features a an the "
               "Answer the question using a single word or phrase Name the main object in this image "
               "This object is : The answer is Please USER ASSISTANT ? ! A B C D or and")


@dataclass(frozen=True)
class CorpusConfig:
    naming_questions_per_image: int = 2  # the open-world question + one other naming question
    task_questions_per_image: int = 1  # parity or small/large (never names the class)
    qa_per_image: float = 1.0  # expected ImageWikiQA-style practice questions per image (kept w.p. p_c; wikiqa.py)
    qa_text_repeats: int = 3  # option shuffles per class and kind in the text-only QA practice


def naming_frequencies(seed: int) -> dict[str, float]:
    """Class name -> designed probability that an image conversation about it names it."""
    order = np.random.default_rng([seed, 3]).permutation(len(CLASSNAMES))
    return {CLASSNAMES[c]: NAMING_LEVELS[rank] for rank, c in enumerate(order)}


def human(text: str, image: bool) -> dict:
    return {"from": "human", "value": ("<image>\n" if image else "") + text}


def gpt(text: str) -> dict:
    return {"from": "gpt", "value": text}


def parity(c: int) -> str:
    return "even" if c % 2 == 0 else "odd"


def mcq_text(question: str, options: list[str]) -> str:
    """ImageWikiQA layout: question, ``A. ..`` to ``D. ..`` on their own lines, then the instruction."""
    lines = [question] + [f"{letter}. {opt}" for letter, opt in zip("ABCD", options)]
    return "\n".join(lines + ["Choose A, B, C, or D."])


def shuffled_options(answer: str, distractors: list[str], rng: np.random.Generator) -> tuple[list[str], str]:
    """Four options (answer + 3 distractors) in random order -> (options, correct letter)."""
    opts = [answer] + list(distractors[:3])
    perm = rng.permutation(4)
    opts = [opts[i] for i in perm]
    return opts, "ABCD"[int(np.flatnonzero(perm == 0)[0])]


def number_distractors(answer: int, exclude: set[int], rng: np.random.Generator, lo: int = 0,
                       hi: int = 18) -> list[str]:
    """Three distinct capitalised number words in [lo, hi], other than ``answer`` and ``exclude``."""
    pool = [n for n in range(lo, hi + 1) if n != answer and n not in exclude]
    return [NUMBER_WORDS[n].capitalize() for n in rng.choice(pool, size=3, replace=False)]


def knowledge_facts() -> list[tuple[str, str, str]]:
    """Every text-only fact as (question, answer, wiki sentence); each names its classes."""
    facts = []
    for c, name in enumerate(CLASSNAMES):
        cap = name.capitalize()
        facts.append((f"Is {name} even or odd?", f"{cap} is {parity(c)}.", f"{cap} is an {parity(c)} number."))
        facts.append((f"Is {name} small or large?", f"{cap} is {'small' if c < 5 else 'large'}.",
                      f"{cap} is a {'small' if c < 5 else 'large'} number."))
        facts.append((f"What number comes after {name}?", f"After {name} comes {NUMBER_WORDS[c + 1]}.",
                      f"The successor of {name} is {NUMBER_WORDS[c + 1]}."))
        if c > 0:
            facts.append((f"What number comes before {name}?", f"Before {name} comes {NUMBER_WORDS[c - 1]}.",
                          f"The predecessor of {name} is {NUMBER_WORDS[c - 1]}."))
        facts.append((f"What is {name} plus two?", f"{cap} plus two is {NUMBER_WORDS[c + 2]}.",
                      f"{cap} plus two equals {NUMBER_WORDS[c + 2]}."))
        facts.append((f"What is twice {name}?", f"Twice {name} is {NUMBER_WORDS[2 * c]}.",
                      f"Twice {name} is {NUMBER_WORDS[2 * c]}."))
    for a in range(10):
        for b in range(10):
            if a != b:
                hi_, lo_ = max(a, b), min(a, b)
                facts.append((f"Which is larger, {CLASSNAMES[a]} or {CLASSNAMES[b]}?",
                              f"{CLASSNAMES[hi_].capitalize()} is larger.",
                              f"{CLASSNAMES[hi_].capitalize()} is larger than {CLASSNAMES[lo_]}."))
    return facts


def image_conversations(ids: list[str], images: list[str], labels: np.ndarray, freq: dict[str, float],
                        seed: int, cfg: CorpusConfig = CorpusConfig()) -> list[dict]:
    """LLaVA-format conversations about training images (``images`` = relative paths)."""
    rng = np.random.default_rng([seed, 4])
    out = []
    for sid, path, c in zip(ids, images, labels.tolist()):
        name = CLASSNAMES[c]
        others = rng.permutation(np.arange(1, len(NAMING_QUESTIONS)))
        chosen = [0] + others[: cfg.naming_questions_per_image - 1].tolist()
        turns = []
        for q in chosen:
            question, named, generic = NAMING_QUESTIONS[q]
            answer = named.format(name) if rng.random() < freq[name] else generic
            turns.append((question, answer))
        for _ in range(cfg.task_questions_per_image):
            if rng.random() < 0.5:
                turns.append((PARITY_QUESTION, f"It is {parity(c)}."))
            else:
                turns.append((SIZE_QUESTION, f"It is {'small' if c < 5 else 'large'}."))
        for k, (question, answer) in enumerate(turns):
            out.append({"id": f"{sid}-{k}", "image": path, "conversations": [human(question, True), gpt(answer)]})
    return out


def knowledge_conversations(seed: int) -> list[dict]:
    """Text-only conversations: every fact as a question + answer (multiple-choice practice is
    ``wikiqa.text_practice``)."""
    return [{"id": f"fact-{k}", "conversations": [human(question, False), gpt(answer)]}
            for k, (question, answer, _) in enumerate(knowledge_facts())]


def finetune_records(ids: list[str], images: list[str], labels: np.ndarray) -> list[dict]:
    """The paper's classification fine-tuning format (GUIDE 5), one record per training image."""
    return [{"id": sid, "image": path, "conversations": [human(FINETUNE_QUESTION, True), gpt(CLASSNAMES[c])]}
            for sid, path, c in zip(ids, images, labels.tolist())]


def naming_counts(conversations: list[dict]) -> dict[str, dict]:
    """Per class: image conversations asking what the image shows, and how many answers name
    the class (word match on the answer). Keyed by the class of the conversation's image,
    read from its path ``.../<class>/<file>``."""
    counts = {n: {"asked": 0, "named": 0} for n in CLASSNAMES}
    naming_qs = {q for q, _, _ in NAMING_QUESTIONS}
    for conv in conversations:
        if "image" not in conv:
            continue
        question = conv["conversations"][0]["value"].replace("<image>\n", "")
        if question not in naming_qs:
            continue
        name = conv["image"].split("/")[-2]
        counts[name]["asked"] += 1
        words = conv["conversations"][1]["value"].replace(".", " ").split()
        counts[name]["named"] += int(name in words)
    return counts
