"""Deterministic multiple-choice answer parser. There is no random fallback: a response with
no usable answer is *unparseable* (``letter=None``), scored wrong and counted.

``parse_answer(response, options) -> ParsedAnswer(letter, index, rule)``

1. Mentions are found with their positions in the response (markdown ``*``/`` ` `` removed,
   runs of spaces and tabs made one space):
   - *cue*: an explicit answer statement (``answer is C``, ``Answer: (c)``, ``the correct option
     is C``, ``I choose C``) or a letter opening the response (``C``, ``(C)``, ``C.``, ``c) ...``);
   - *letter*: ``(C)``, ``option C``, or an upper-case standalone ``B``/``C``/``D``; a standalone
     ``A`` only when it cannot be the article (followed by punctuation, the end, or ``is``...);
   - *text*: an option's text, case-insensitive, whole words; a match inside a longer option's
     match does not count (options that contain one another).
2. Dropped: negated mentions (``not C``, ``C is wrong``), letters inside an option-text match,
   lines that echo the option list (two or more ``X. ...`` lines with different letters), and
   lists of different options (``A or B``, ``A, B, C, or D``, ``A/B``): ambiguous.
3. The last remaining cue wins; with no cue, the last remaining mention wins.
   ``rule`` says which: ``cue`` | ``letter`` | ``text``, or why nothing was found:
   ``empty`` | ``no_answer`` | ``ambiguous``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

LETTERS = "ABCD"
_NOT_WORD_AFTER = r"(?![A-Za-z0-9'’\-])"
_CUE = re.compile(
    r"(?:\banswers?\b(?:\s+(?:is|would\s+be|should\s+be|will\s+be|must\s+be|=))?"
    r"|\b(?:option|choice)\s+(?:is|would\s+be|should\s+be|must\s+be)"
    r"|\b(?:correct|right|best)\s+(?:option|choice|one)\s+(?:is|would\s+be)?"
    r"|\bI\s+(?:would\s+)?(?:choose|pick|select|go\s+with)|\bI'd\s+(?:choose|pick|select|go\s+with))"
    r"\s*[:=]?\s*(?:(?:option|choice|letter)\s+)?[(\[]?\s*(?P<l>[A-Da-d])\s*[)\]]?" + _NOT_WORD_AFTER,
    re.IGNORECASE)
_OPENING = re.compile(r"^\s*[(\[]?(?P<l>[A-Da-d])(?:[)\]]|[.:)]|\s*$|\s*\n)")
_PAREN = re.compile(r"[(\[](?P<l>[A-Da-d])[)\]]")
_OPTION_WORD = re.compile(r"\b(?:option|choice)\s+(?P<l>[A-Da-d])" + _NOT_WORD_AFTER, re.IGNORECASE)
_UPPER = re.compile(r"(?<![A-Za-z0-9'’\-.])(?P<l>[A-D])" + _NOT_WORD_AFTER)
_A_IS_LETTER = re.compile(r"\s*(?:$|[.):,;!?\]])|\s+(?:is|was|seems|looks|would|should|must|fits|matches|and|or|nor)\b")
_ARTICLE_AFTER = re.compile(r"\s+[A-Za-z]")
_NEG_BEFORE = re.compile(r"(?:\bnot|n't|\bnor|\bexcept|\bexcluding|\bunlike|\brather\s+than|\binstead\s+of)"
                         r"\s+(?:(?:option|choice)\s+)?[(\[]?$", re.IGNORECASE)
_NEG_AFTER = re.compile(r"^[)\]]?\s*(?:(?:is|are|would\s+be|seems|looks)\s+(?:not\b|wrong|incorrect|false|unlikely)"
                        r"|(?:isn't|doesn't|can't|cannot|is\s+ruled\s+out)\b|[.:,]?\s*(?:wrong|incorrect|false)\b)",
                        re.IGNORECASE)
_SEPARATOR = re.compile(r"^[\s,;/()\[\]]*(?:(?:or|and|&|nor)\b[\s()\[\]]*)?$", re.IGNORECASE)
_ECHO_LINE = re.compile(r"^\s*[(\[]?([A-D])[.):\]]\s+\S")


@dataclass(frozen=True)
class ParsedAnswer:
    letter: str | None  # "A".."D", or None when unparseable
    rule: str  # cue | letter | text | empty | no_answer | ambiguous

    @property
    def index(self) -> int | None:
        return None if self.letter is None else LETTERS.index(self.letter)


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    option: int
    kind: str  # cue | letter | text


def _is_alnum_ascii(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _find_all(haystack: str, needle: str) -> list[int]:
    """Start offsets of ``needle`` in ``haystack`` not touching an ASCII letter/digit on either side."""
    found, i = [], haystack.find(needle)
    while i >= 0:
        j = i + len(needle)
        before_ok = i == 0 or not _is_alnum_ascii(haystack[i - 1])
        if before_ok and (j == len(haystack) or not _is_alnum_ascii(haystack[j])):
            found.append(i)
        i = haystack.find(needle, i + 1)
    return found


def _text_mentions(s: str, options: Sequence[str]) -> list[_Mention]:
    """Whole-word, case-insensitive matches of each option's text (``s`` has single spaces)."""
    low = s.lower()
    if len(low) != len(s):  # lower-casing changed offsets (rare unicode): compare as written
        low = s
    found = []
    for i, opt in enumerate(options):
        needle = " ".join(opt.strip().rstrip(".").split()).lower()
        if needle:
            found += [_Mention(k, k + len(needle), i, "text") for k in _find_all(low, needle)]
    # a match lying inside another option's (longer or equal) match is not a mention of its own
    return [m for m in found if not any(o.option != m.option and o.start <= m.start and m.end <= o.end
                                        for o in found)]


def _letter_mentions(s: str) -> list[_Mention]:
    by_pos: dict[int, _Mention] = {}

    def add(m: re.Match, kind: str) -> None:
        pos = m.start("l")
        old = by_pos.get(pos)
        if old is None or (kind == "cue" and old.kind != "cue"):
            by_pos[pos] = _Mention(pos, pos + 1, LETTERS.index(m.group("l").upper()), kind)

    m = _OPENING.match(s)
    if m:
        add(m, "cue")
    for m in _CUE.finditer(s):
        if m.group("l") == "a" and _ARTICLE_AFTER.match(s, m.end("l")):
            continue  # "the answer is a dog": an article, not option a
        add(m, "cue")
    for m in _PAREN.finditer(s):
        add(m, "letter")
    for m in _OPTION_WORD.finditer(s):
        add(m, "letter")
    for m in _UPPER.finditer(s):
        if m.group("l") == "A" and not _A_IS_LETTER.match(s, m.end("l")):
            continue  # "A dog ...": an article
        add(m, "letter")
    return list(by_pos.values())


def _echo_spans(s: str) -> list[tuple[int, int]]:
    spans, letters, pos = [], set(), 0
    for line in s.split("\n"):
        m = _ECHO_LINE.match(line)
        if m:
            spans.append((pos, pos + len(line)))
            letters.add(m.group(1))
        pos += len(line) + 1
    return spans if len(letters) >= 2 else []


def _negated(s: str, m: _Mention) -> bool:
    return bool(_NEG_BEFORE.search(s[max(0, m.start - 30):m.start]) or _NEG_AFTER.match(s[m.end:m.end + 40]))


def _drop_ambiguous_groups(s: str, mentions: list[_Mention]) -> list[_Mention]:
    """Remove runs of mentions joined only by separators/or/and that name different options."""
    keep: list[_Mention] = []
    group: list[_Mention] = []
    for m in mentions + [None]:
        if m is not None and group and m.start >= group[-1].end and _SEPARATOR.match(s[group[-1].end:m.start]):
            group.append(m)
            continue
        if group and len({g.option for g in group}) == 1:
            keep += group
        group = [m] if m is not None else []
    return keep


def parse_answer(response: str, options: Sequence[str]) -> ParsedAnswer:
    """Parse a free-form response to a four-option question (module docstring)."""
    s = re.sub(r"[ \t\r\f\v]+", " ", re.sub(r"[*`]", "", response or "")).strip()
    if not s:
        return ParsedAnswer(None, "empty")
    texts = _text_mentions(s, options)
    letters = [m for m in _letter_mentions(s)
               if not any(t.start <= m.start and m.end <= t.end for t in texts)]
    echo = _echo_spans(s)
    found = sorted(letters + texts, key=lambda m: (m.start, -m.end))
    mentions = [m for m in found if not _negated(s, m) and not any(a <= m.start < b for a, b in echo)]
    mentions = _drop_ambiguous_groups(s, mentions)
    cues = [m for m in mentions if m.kind == "cue"]
    if cues:
        return ParsedAnswer(LETTERS[cues[-1].option], "cue")
    if mentions:
        last = mentions[-1]
        return ParsedAnswer(LETTERS[last.option], last.kind)
    return ParsedAnswer(None, "ambiguous" if found else "no_answer")
