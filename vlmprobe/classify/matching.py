"""Judging a generated answer: which candidate class (if any) does the response name?

Everything is compared after ``str.lower()`` (the paper's ``label.lower() in
response.lower()``). A *mention* of candidate ``c`` is a span of the response equal to ``c``:

- ``substring`` (default, the paper's rule): any occurrence, also inside a longer word
  (``"cat"`` is mentioned in ``"caterpillar"``);
- ``word``: an occurrence not touching a word character (unicode ``\\w``) on either side
  (``"cat"`` is mentioned in ``"a cat."`` but not in ``"cats"`` or ``"caterpillar"``);
- ``first``: mentions as in ``word``; the prediction is the earliest mentioned candidate.

``matches``: every candidate with at least one mention, in order of first mention (then
longer name first, then candidate order). The paper counts an answer correct when the true
class is among them (``any_match``), even if other classes are named too.

For a single prediction, a candidate whose every mention lies inside a mention of a longer,
different name is dropped (``"lion"`` inside ``"sea lion"``); the rest are the *effective*
matches. ``ambiguous`` means more than one effective match. Prediction:

- ``substring`` / ``word``: the effective match if there is exactly one, else None;
- ``first``: the effective match mentioned first; None only if two candidates with the same
  name (case-insensitively, e.g. ImageNet's two "missile"s) tie for first.

No match or an unresolved ambiguity gives ``prediction = None`` (counted wrong, reported).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

RULES = ("substring", "word", "first")


@dataclass
class MatchResult:
    prediction: int | None  # index into the candidate list, or None
    matches: list[int] = field(default_factory=list)  # every mentioned candidate (indices), see above
    ambiguous: bool = False  # more than one effective match


def _spans(name: str, text: str, word: bool) -> list[tuple[int, int]]:
    """(start, end) of every occurrence of ``name`` in ``text`` (both lower-cased), overlaps included."""
    if not name or name not in text:  # cheap pre-filter: most of 1,000 names are absent
        return []
    if word:
        pattern = re.compile(r"(?<!\w)(?=" + re.escape(name) + r"(?!\w))")
        return [(m.start(), m.start() + len(name)) for m in pattern.finditer(text)]
    spans, start = [], text.find(name)
    while start >= 0:
        spans.append((start, start + len(name)))
        start = text.find(name, start + 1)
    return spans


def match_response(response: str, candidates: list[str], rule: str = "substring") -> MatchResult:
    """Judge ``response`` against candidate names (see module docstring)."""
    if rule not in RULES:
        raise ValueError(f"unknown matching rule {rule!r}; choose from {', '.join(RULES)}")
    text = response.lower()
    names = [c.lower().strip() for c in candidates]
    spans = {i: s for i, n in enumerate(names) if (s := _spans(n, text, word=rule != "substring"))}
    matches = sorted(spans, key=lambda i: (spans[i][0][0], -len(names[i]), i))

    def inside_longer(i: int) -> bool:
        return all(any(len(names[j]) > len(names[i]) and names[j] != names[i] and s2 <= s < e <= e2
                       for j in matches for s2, e2 in spans[j])
                   for s, e in spans[i])

    effective = [i for i in matches if not inside_longer(i)]
    ambiguous = len(effective) > 1
    if rule == "first":
        if not effective:
            return MatchResult(None, matches, False)
        first = effective[0]
        tie = any(names[j] == names[first] and spans[j][0][0] == spans[first][0][0] for j in effective[1:])
        return MatchResult(None if tie else first, matches, ambiguous)
    return MatchResult(effective[0] if len(effective) == 1 else None, matches, ambiguous)
