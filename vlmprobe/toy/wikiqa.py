"""Toy ImageWikiQA: four-option questions about the number shown in a test image, in the real
benchmark's format (``image``, ``text`` = question + ``A. ..`` .. ``D. ..`` + "Choose A, B, C,
or D.", ``label`` A-D, ``wiki`` = the knowledge sentence that answers it, ``classname``).

Answering needs the image's class plus one fact the VLM was trained on as text (parity,
size, successor, predecessor, plus two, twice). No word of the question or its options is the
class name (checked), so the class must come from the image.
"""
from __future__ import annotations

import numpy as np

from .corpus import (CLASSNAMES, NUMBER_WORDS, PARITY_QUESTION, SIZE_QUESTION, mcq_text, number_distractors,
                     parity, shuffled_options)
from .vocab import words_of


def question_for(c: int, kind: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """-> (text, correct letter, wiki sentence) for class ``c`` and question ``kind``."""
    name = CLASSNAMES[c]
    cap = name.capitalize()
    if kind == "parity":
        other = "Odd" if c % 2 == 0 else "Even"
        opts, letter = shuffled_options(parity(c).capitalize(), [other, "Neither", "Both"], rng)
        return mcq_text(PARITY_QUESTION, opts), letter, f"{cap} is an {parity(c)} number."
    if kind == "size":
        size = "small" if c < 5 else "large"
        opts, letter = shuffled_options(size.capitalize(), ["Large" if c < 5 else "Small", "Neither", "Both"], rng)
        return mcq_text(SIZE_QUESTION, opts), letter, f"{cap} is a {size} number."
    q, ans, wiki = {
        "successor": ("What number comes right after the number in this photo?", c + 1,
                      f"The successor of {name} is {NUMBER_WORDS[c + 1]}."),
        "predecessor": ("What number comes right before the number in this photo?", c - 1,
                        f"The predecessor of {name} is {NUMBER_WORDS[max(c - 1, 0)]}."),
        "plus_two": ("What is the number in this photo plus two?", c + 2,
                     f"{cap} plus two equals {NUMBER_WORDS[c + 2]}."),
        "twice": ("What is twice the number in this photo?", 2 * c, f"Twice {name} is {NUMBER_WORDS[2 * c]}."),
    }[kind]
    opts, letter = shuffled_options(NUMBER_WORDS[ans].capitalize(), number_distractors(ans, {c}, rng), rng)
    return mcq_text(q, opts), letter, wiki


KINDS = ("parity", "size", "successor", "predecessor", "plus_two", "twice")


def build_questions(images: list[str], labels: np.ndarray, seed: int, n: int = 300) -> list[dict]:
    """``n`` rows, each on a distinct image (``images``: paths relative to the build dir)
    chosen by a seeded permutation; question kinds cycle so each appears equally often."""
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(len(images))[:n]
    rows = []
    for k, i in enumerate(order.tolist()):
        c = int(labels[i])
        kind = KINDS[k % len(KINDS)]
        if c == 0 and kind in ("predecessor", "twice"):  # no predecessor; twice zero names the class
            kind = "successor" if kind == "predecessor" else "plus_two"
        if c == 2 and kind == "plus_two":  # "plus two" would name the class
            kind = "successor"
        text, letter, wiki = question_for(c, kind, rng)
        assert CLASSNAMES[c] not in {w.lower() for w in words_of([text])}, text
        rows.append({"image": images[i], "text": text, "label": letter, "wiki": wiki, "classname": CLASSNAMES[c],
                     "kind": kind})
    return rows
