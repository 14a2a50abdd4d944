"""Toy ImageWikiQA: four-option questions about the number shown in a test image, in the real
benchmark's format (``image``, ``text`` = question + ``A. ..`` .. ``D. ..`` + "Choose A, B, C,
or D.", ``label`` A-D, ``wiki`` = the knowledge sentence that answers it, ``classname``), and
the VLM's question-answering practice that lets it *use* a recognised class.

Answering needs the image's class plus one fact the VLM was trained on as text (parity,
size, successor, predecessor, plus two, twice). No word of a test question or its options is
the class name (checked), so the class must come from the image.

Practice (training conversations, never on test images). Every answer reasons in the open:
``"It is seven. Seven plus two is nine."`` -- name the class, then state the fact exactly as the
text-only knowledge does; it ends in the words of the right option (options are lower-case
number words), which the deterministic answer parser maps to the letter. The VLM sees
- text-only questions that name the class (``"What is seven plus two?"``) for every class, and
  the oracle form (``"This object is: seven."`` + the photo question) for every class;
- image questions (``"What is the number in this photo plus two?"``) only about training images
  whose class the conversation names, i.e. with the class's naming probability ``p_c``.
So the model answers an image question correctly roughly when it *names* the image's class:
QA accuracy is high on images it classifies correctly, near chance elsewhere, far above chance
when told the class, and rises when fine-tuning teaches it to name more classes (the paper's
"classification is the foundation", Zhang et al. 2024, Sec. 5).
"""
from __future__ import annotations

import numpy as np

from .corpus import (CLASSNAMES, NUMBER_WORDS, PARITY_QUESTION, SIZE_QUESTION, gpt, human, mcq_text,
                     number_distractors, parity, shuffled_options)
from .vocab import words_of

KINDS = ("parity", "size", "successor", "predecessor", "plus_two", "twice")
ORACLE_HINT = "This object is: {}."  # = vlmprobe.wikiqa.prompts.ORACLE_TEMPLATE (checked in tests)

# kind -> (question about the photo, question naming the class {n}, fact sentence {N} {n} {a})
_STEMS = {
    "parity": (PARITY_QUESTION, "Is {n} even or odd?", "{N} is {a}."),  # = corpus.knowledge_facts answers
    "size": (SIZE_QUESTION, "Is {n} small or large?", "{N} is {a}."),
    "successor": ("What number comes right after the number in this photo?", "What number comes after {n}?",
                  "After {n} comes {a}."),
    "predecessor": ("What number comes right before the number in this photo?", "What number comes before {n}?",
                    "Before {n} comes {a}."),
    "plus_two": ("What is the number in this photo plus two?", "What is {n} plus two?", "{N} plus two is {a}."),
    "twice": ("What is twice the number in this photo?", "What is twice {n}?", "Twice {n} is {a}."),
}


def valid_kind(c: int, kind: str) -> str:
    """Zero has no predecessor and "twice zero" / "two plus two" would name a class in the options
    the same as the image; swap those for a kind that does not."""
    if c == 0 and kind in ("predecessor", "twice"):
        return "successor" if kind == "predecessor" else "plus_two"
    if c == 2 and kind == "plus_two":
        return "successor"
    return kind


def _answer_and_distractors(c: int, kind: str, rng: np.random.Generator) -> tuple[str, list[str]]:
    if kind == "parity":
        return parity(c), ["odd" if c % 2 == 0 else "even", "neither", "both"]
    if kind == "size":
        return ("small", ["large", "neither", "both"]) if c < 5 else ("large", ["small", "neither", "both"])
    ans = {"successor": c + 1, "predecessor": c - 1, "plus_two": c + 2, "twice": 2 * c}[kind]
    return NUMBER_WORDS[ans], [w.lower() for w in number_distractors(ans, {c}, rng)]


def question_for(c: int, kind: str, rng: np.random.Generator, named: bool = False) -> tuple[str, str, str, str]:
    """-> (text, correct letter, wiki sentence, answer word) for class ``c`` and question ``kind``;
    ``named``: the stem names the class (text-only practice) instead of pointing at the photo."""
    name = CLASSNAMES[c]
    answer, distractors = _answer_and_distractors(c, kind, rng)
    opts, letter = shuffled_options(answer, distractors, rng)
    photo, by_name, fact = _STEMS[kind]
    stem = by_name.format(n=name) if named else photo
    wiki = fact.format(N=name.capitalize(), n=name, a=answer.lower())
    return mcq_text(stem, opts), letter, wiki, answer


def reasoned_answer(c: int, kind: str, answer: str, say_class: bool = True) -> str:
    """``"It is seven. Seven plus two is nine."`` (the first sentence optional): the class, then
    the fact exactly as the text-only knowledge states it, ending in the option's own words
    (the answer parser maps them to the letter)."""
    name = CLASSNAMES[c]
    fact = _STEMS[kind][2].format(N=name.capitalize(), n=name, a=answer)
    return (f"It is {name}. " if say_class else "") + fact


def build_questions(images: list[str], labels: np.ndarray, seed: int, n: int = 300) -> list[dict]:
    """``n`` rows, each on a distinct image (``images``: paths relative to the build dir)
    chosen by a seeded permutation; question kinds cycle so each appears equally often."""
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(len(images))[:n]
    rows = []
    for k, i in enumerate(order.tolist()):
        c = int(labels[i])
        kind = valid_kind(c, KINDS[k % len(KINDS)])
        text, letter, wiki, _ = question_for(c, kind, rng)
        assert CLASSNAMES[c] not in {w.lower() for w in words_of([text])}, text
        rows.append({"image": images[i], "text": text, "label": letter, "wiki": wiki, "classname": CLASSNAMES[c],
                     "kind": kind})
    return rows


def image_practice(ids: list[str], images: list[str], labels: np.ndarray, freq: dict[str, float], seed: int,
                   per_image: float = 1.0) -> list[dict]:
    """Image QA practice on training images: each image gets ``per_image`` questions in
    expectation, kept only with its class's naming probability ``p_c`` (the answer names it)."""
    rng = np.random.default_rng([seed, 8])
    out = []
    for sid, path, c in zip(ids, images, labels.tolist()):
        n = int(per_image) + int(rng.random() < per_image - int(per_image))
        for j in range(n):
            kind = valid_kind(c, KINDS[int(rng.integers(len(KINDS)))])
            text, _, _, answer = question_for(c, kind, rng)
            if rng.random() < freq[CLASSNAMES[c]]:
                out.append({"id": f"{sid}-qa{j}", "image": path,
                            "conversations": [human(text, True), gpt(reasoned_answer(c, kind, answer))]})
    return out


def text_practice(seed: int, repeats: int = 3) -> list[dict]:
    """Text-only QA practice for every class and kind, ``repeats`` option shuffles each: the
    question naming the class, and the oracle form (hint + photo question)."""
    rng = np.random.default_rng([seed, 9])
    out = []
    for c in range(len(CLASSNAMES)):
        for kind in dict.fromkeys(valid_kind(c, k) for k in KINDS):
            for r in range(repeats):
                text, _, _, answer = question_for(c, kind, rng, named=True)
                out.append({"id": f"qa-{c}-{kind}-{r}", "conversations": [
                    human(text, False), gpt(reasoned_answer(c, kind, answer, say_class=False))]})
                text, _, _, answer = question_for(c, kind, rng)
                out.append({"id": f"qa-oracle-{c}-{kind}-{r}", "conversations": [
                    human(ORACLE_HINT.format(CLASSNAMES[c]) + "\n" + text, False),
                    gpt(reasoned_answer(c, kind, answer))]})
    return out


def text_constants() -> dict:
    """Every fixed text the build depends on (part of the world's cache key)."""
    from . import corpus

    return {"qa": [ORACLE_HINT, _STEMS], "captions": corpus.CAPTION_TEMPLATES, "naming": corpus.NAMING_QUESTIONS,
            "levels": corpus.NAMING_LEVELS, "tasks": [PARITY_QUESTION, SIZE_QUESTION], "extra": corpus.EXTRA_WORDS,
            "finetune": corpus.FINETUNE_QUESTION}
