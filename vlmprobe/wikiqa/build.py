"""ImageWikiQA builder (``vlmprobe wikiqa build``): four-option knowledge questions per class from
a user's article texts, written by an LM and kept by the paper's filter.

The paper (Zhang et al. 2024) built ImageWikiQA's 2,000 questions with an LM from Wikipedia
articles of ImageNet classes and kept a question only when a text-only LM answered it
correctly given the class name and not without it. Here, per class:

1. *Facts*: each article of the class (``--articles A.jsonl``: rows ``{"classname": C, "text":
   ARTICLE}``) is split into sentences (``. ! ?`` followed by white space); sentences under 4
   words are dropped; the class's sentences are put in a seeded order (``--seed``, crc32 of the
   class) and the first ``--per-class`` are used.
2. *Writing*: the LM (``--lm SPEC``: a local model spec or ``openai:MODEL[@URL]``) answers
   ``WRITE_PROMPT`` greedily (no image); the answer must hold ``Question: ...``, four lines
   ``A. ... D. ...`` and ``Answer: X`` (``parse_written``), else the fact is dropped as
   ``unparseable``. Mentions of the class name in the stem become "the object in this photo"
   (whole words, case-insensitive), since the question comes with the image instead.
3. *Options*: permuted with a generator seeded by (seed, the fact's id), so the answer letter is
   uniform and the file is the same for the same seed, articles and LM.
4. *Filter*: the judge LM (``--judge SPEC``, default the same LM) answers the finished question
   twice, text only, greedily: with the class name stated (``prompts.ORACLE_TEMPLATE``, the same
   wording as ``vlmprobe wikiqa --oracle-class``) and without it; answers parsed by
   ``parser.parse_answer``. Kept = right with the name and not right without it.

Every fact is one record of a run directory (``--work DIR``, default ``OUT.build``; through the
engine, so a killed build resumes): the written text, the parsed question, both judge answers
and why it was dropped. ``OUT`` (JSONL in the released format: ``image``, ``text``, ``label``,
``wiki``, ``classname``) holds the kept questions in fact order; ``image`` is a seeded image of
the class from ``--data SPEC`` when given (else empty: the file then serves ``--no-image``).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import VlmprobeError
from .loader import LETTERS
from .parser import parse_answer
from .prompts import ORACLE_TEMPLATE

WRITE_PROMPT = (
    "Fact about {classname}: {fact}\n"
    "Write one multiple-choice question that tests this fact. Refer to the {classname} as \"the object in this "
    "photo\" and do not name it. Give four short options, exactly one of them correct. Reply in exactly this "
    "format:\nQuestion: <question>\nA. <option>\nB. <option>\nC. <option>\nD. <option>\nAnswer: <letter>")
MAX_NEW_TOKENS = 160
ANSWER_TOKENS = 32
MIN_WORDS = 4
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Fact:
    id: str
    classname: str
    fact: str
    image: str = ""
    label: int = -1  # engine records: a fact has no class label


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(" ".join(str(text).split())) if len(s.split()) >= MIN_WORDS]


def read_articles(path: str, classnames: list[str]) -> dict[str, list[str]]:
    """{class: [article text]} from ``A.jsonl`` (errors name the file and line)."""
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_file():
        raise VlmprobeError(f"--articles {path}: no such file")
    from ..jsonl import read_jsonl

    out: dict[str, list[str]] = {c: [] for c in classnames}
    for n, row in read_jsonl(p, VlmprobeError):
        if not isinstance(row.get("classname"), str) or not isinstance(row.get("text"), str):
            raise VlmprobeError(f"{p}:{n}: expected {{\"classname\": str, \"text\": str}}")
        if row["classname"] not in out:
            raise VlmprobeError(f"{p}:{n}: class {row['classname']!r} is not in --classes")
        out[row["classname"]].append(row["text"])
    return out


def facts(articles: dict[str, list[str]], per_class: int, seed: int, images: dict[str, list[str]] | None = None
          ) -> list[Fact]:
    """The facts to write questions from (module docstring, step 1), class order then seeded order."""
    out = []
    for c, texts in articles.items():
        sents = [s for t in texts for s in split_sentences(t)]
        order = np.random.default_rng([seed, zlib.crc32(c.encode())]).permutation(len(sents))
        pool = (images or {}).get(c) or []
        for k, j in enumerate(order[:per_class]):
            img = pool[int(np.random.default_rng([seed, zlib.crc32(c.encode()), k]).integers(len(pool)))] if pool else ""
            out.append(Fact(f"{c}#{k}", c, sents[int(j)], img))
    return out


_OPTION = re.compile(r"^\s*\(?([A-Da-d])[.):]\s*(.+?)\s*$")
_QUESTION = re.compile(r"^\s*question\s*[:.]\s*(.+?)\s*$", re.I)
_ANSWER = re.compile(r"^\s*(?:correct\s+)?answer\s*[:.]?\s*\(?([A-Da-d])\b", re.I)


def parse_written(text: str) -> tuple[str, list[str], int] | str:
    """(stem, 4 options in A-D order, index of the correct one), or the reason it cannot be read."""
    stem, options, answer = None, {}, None
    for line in str(text).splitlines():
        if stem is None and (m := _QUESTION.match(line)):
            stem = m.group(1)
        elif (m := _ANSWER.match(line)) and answer is None:
            answer = m.group(1).upper()
        elif stem is not None and (m := _OPTION.match(line)) and m.group(1).upper() not in options:
            options[m.group(1).upper()] = m.group(2)
    if stem is None:
        return "no 'Question:' line"
    if sorted(options) != list(LETTERS):
        return f"options {''.join(sorted(options)) or 'none'} instead of A-D"
    if answer is None:
        return "no 'Answer: X' line"
    opts = [options[x] for x in LETTERS]
    if len({o.lower() for o in opts}) < 4:
        return "repeated options"
    return stem, opts, LETTERS.index(answer)


def anonymise(stem: str, classname: str) -> str:
    return re.sub(r"(?<!\w)" + re.escape(classname) + r"(?!\w)", "the object in this photo", stem, flags=re.I)


def question_text(stem: str, options: list[str]) -> str:
    """The released ``text`` layout: stem, ``A. ...`` to ``D. ...``, ``Choose A, B, C, or D.``"""
    return "\n".join([stem] + [f"{x}. {o}" for x, o in zip(LETTERS, options)] + ["Choose A, B, C, or D."])


class FactInputs:
    """Facts as engine inputs (no image is loaded)."""

    skip_fields = {"kept": False}

    def __init__(self, items: list[Fact]):
        self.items, self.name = items, "wikiqa-build"

    def __len__(self) -> int:
        return len(self.items)

    def item(self, i: int) -> Fact:
        return self.items[i]

    def load_image(self, i: int):
        return None

    def base_record(self, i: int) -> dict:
        f = self.items[i]
        return {"id": f.id, "classname": f.classname, "wiki": f.fact, "image": f.image, "label": None}

    def complete(self, rec: dict, scores) -> None:
        pass


class BuildMethod:
    """Write, parse, permute and filter one batch of facts (module docstring, steps 2-4)."""

    name = "wikiqa-build"

    def __init__(self, judge=None, seed: int = 0):
        self.judge, self.seed = judge, seed

    def config(self) -> dict:
        return {"name": self.name, "write_prompt": WRITE_PROMPT, "oracle_template": ORACLE_TEMPLATE,
                "max_new_tokens": MAX_NEW_TOKENS, "answer_tokens": ANSWER_TOKENS,
                "judge": getattr(self.judge, "spec", None)}

    def setup(self, model, inputs) -> None:
        pass

    def num_scores(self, inputs) -> None:
        return None

    def run_batch(self, model, items: list[Fact], images, rng_for):
        written = model.generate(None, [WRITE_PROMPT.format(classname=f.classname, fact=f.fact) for f in items],
                                 max_new_tokens=MAX_NEW_TOKENS)
        records, pending = [], []
        for f, text in zip(items, written):
            parsed = parse_written(text)
            rec = {"written": text, "kept": False}
            if isinstance(parsed, str):
                rec["dropped"] = f"unparseable: {parsed}"
            else:
                stem, options, right = parsed
                perm = np.random.default_rng([self.seed, zlib.crc32(f.id.encode())]).permutation(4)
                options = [options[int(k)] for k in perm]
                rec.update(text=question_text(anonymise(stem, f.classname), options),
                           answer=int(np.flatnonzero(perm == right)[0]), options=options)
                pending.append((f, rec))
            records.append(rec)
        if pending:
            judge = self.judge or model
            prompts = [ORACLE_TEMPLATE.format(classname=f.classname) + "\n" + r["text"] for f, r in pending]
            prompts += [r["text"] for _, r in pending]
            answers = judge.generate(None, prompts, max_new_tokens=ANSWER_TOKENS)
            n = len(pending)
            for k, (f, rec) in enumerate(pending):
                with_name = parse_answer(answers[k], rec["options"]).index
                without = parse_answer(answers[n + k], rec["options"]).index
                rec.update(judge_with_class=answers[k], judge_without_class=answers[n + k],
                           right_with_class=with_name == rec["answer"], right_without_class=without == rec["answer"])
                rec["kept"] = rec["right_with_class"] and not rec["right_without_class"]
                if not rec["kept"]:
                    rec["dropped"] = ("wrong with the class name" if not rec["right_with_class"]
                                      else "answerable without the class name")
        return records, None


def summarize_build(records: list[dict]) -> dict:
    done = [r for r in records if not r.get("skipped")]
    reasons: dict[str, int] = {}
    for r in done:
        if not r.get("kept"):
            key = r.get("dropped", "?").split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    return {"facts": len(done), "kept": sum(1 for r in done if r.get("kept")), "dropped": reasons,
            "skipped": len(records) - len(done)}


def kept_rows(records: list[dict]) -> list[dict]:
    """OUT's rows (released ImageWikiQA format) from the build records, in fact order."""
    return [{"image": r["image"], "text": r["text"], "label": LETTERS[r["answer"]], "wiki": r["wiki"],
             "classname": r["classname"]} for r in records if r.get("kept")]
