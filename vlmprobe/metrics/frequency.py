"""Class-name frequency in a training / instruction corpus, and its relation to accuracy
("Why are VLMs bad at image classification?").

Matching rules (both implementations below follow them exactly):
- a term is a class name or one of its synonyms; terms are lower-cased, underscores become spaces,
  and any run of whitespace in a term matches any run of whitespace in the text;
- text is lower-cased; a match must not touch a word character (letter, digit, underscore) on
  either side (word boundary that also works for terms beginning/ending in punctuation);
- scanning goes left to right; at each position the longest matching term wins and the scan
  resumes after it ("great white shark" counts once, for that class, not also for "shark");
- a term shared by several classes (e.g. ImageNet's two "missile" classes) counts for each.

``count_mentions`` compiles all terms into ONE regex shaped as a character trie (common prefixes
factored, greedy so longer terms are tried first), so the text is scanned once whatever the number
of classes. ``count_mentions_naive`` is the plain reference: one regex per term, every start
position, then the same leftmost-longest resolution.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from vlmprobe.errors import DataError, VlmprobeError

_LEFT = r"(?<!\w)"
_RIGHT = r"(?!\w)"


def normalize_term(term: str) -> str:
    """Lower-case, underscores to spaces, whitespace runs collapsed to one space."""
    return " ".join(str(term).replace("_", " ").lower().split())


def build_terms(classnames: list[str], synonyms: dict[str, list[str]] | None = None) -> dict[str, list[int]]:
    """{normalized term: [class indices]} from class names plus optional synonyms
    ({class name: [synonym, ...]}); errors on a synonym for an unknown class or an empty term."""
    terms: dict[str, list[int]] = {}
    index = {}
    for i, name in enumerate(classnames):
        index.setdefault(name, []).append(i)
    for i, name in enumerate(classnames):
        t = normalize_term(name)
        if not t:
            raise VlmprobeError(f"class {i} has an empty name")
        terms.setdefault(t, [])
        if i not in terms[t]:
            terms[t].append(i)
    for cls, syns in (synonyms or {}).items():
        if cls not in index:
            raise VlmprobeError(f"synonyms: {cls!r} is not one of the class names")
        if isinstance(syns, str):
            syns = [syns]
        for s in syns:
            t = normalize_term(s)
            if not t:
                continue
            lst = terms.setdefault(t, [])
            for i in index[cls]:
                if i not in lst:
                    lst.append(i)
    return terms


def _term_regex(term: str) -> str:
    return r"\s+".join(re.escape(w) for w in term.split(" "))


def _trie_regex(terms: list[str]) -> str:
    """A regex matching exactly the given terms, as a character trie; greedy (longest first)."""
    trie: dict = {}
    for t in terms:
        node = trie
        for ch in t:
            node = node.setdefault(ch, {})
        node[""] = True

    def emit(node) -> str:
        end = "" in node
        branches = []
        for ch in sorted(k for k in node if k):
            atom = r"\s+" if ch == " " else re.escape(ch)
            branches.append(atom + emit(node[ch]))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return "(?:" + body + ")?" if end else body  # may stop here; greedy -> longer first

    return emit(trie)


def compile_terms(terms: dict[str, list[int]]) -> re.Pattern:
    """One compiled pattern matching any term with word boundaries (leftmost-longest)."""
    if not terms:
        raise VlmprobeError("no class names to count")
    return re.compile(_LEFT + "(?:" + _trie_regex(list(terms)) + ")" + _RIGHT)


def count_mentions(texts, terms: dict[str, list[int]], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(mentions [K], documents [K]): total matches per class over all texts, and the number of
    texts (e.g. conversations) with at least one match. ``texts``: iterable of str."""
    pattern = compile_terms(terms)
    total: Counter = Counter()
    docs = np.zeros(num_classes, dtype=np.int64)
    for text in texts:
        found = pattern.findall(text.lower())
        if found:
            c = Counter(found)
            total.update(c)
            docs[sorted({k for f in c for k in terms[normalize_term(f)]})] += 1
    mentions = np.zeros(num_classes, dtype=np.int64)
    for matched, n in total.items():
        mentions[terms[normalize_term(matched)]] += n
    return mentions, docs


def count_mentions_naive(texts, terms: dict[str, list[int]], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference for ``count_mentions``: per-term regex at every start position, then a
    left-to-right sweep keeping the longest match at each start that begins after the last kept."""
    patterns = [(t, re.compile(_LEFT + "(?=(" + _term_regex(t) + ")" + _RIGHT + ")")) for t in terms]
    total = np.zeros(num_classes, dtype=np.int64)
    docs = np.zeros(num_classes, dtype=np.int64)
    for text in texts:
        low = text.lower()
        spans = []
        for t, p in patterns:
            for m in p.finditer(low):
                spans.append((m.start(1), -(m.end(1) - m.start(1)), t))
        spans.sort()
        pos, seen = -1, set()
        for start, neg_len, t in spans:
            if start >= pos:
                pos = start - neg_len
                for c in terms[t]:
                    total[c] += 1
                    seen.add(c)
        for c in seen:
            docs[c] += 1
    return total, docs


def read_corpus_texts(path, roles: set[str] | None = None):
    """Yield one text per conversation from a LLaVA-style corpus: a JSON list (or JSONL) of
    ``{"conversations": [{"from", "value"}, ...]}`` records (turns joined by newlines, optionally
    only the given roles, "<image>" removed); records with a plain "text" field yield that."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"corpus file not found: {path}")

    def records():
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for ln, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError as e:
                            raise DataError(f"{path}:{ln}: invalid JSON ({e.msg})") from None
        else:
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
            if not isinstance(data, list):
                raise DataError(f"{path}: expected a JSON list of conversation records")
            yield from data

    for i, rec in enumerate(records()):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: record {i} is not an object")
        conv = rec.get("conversations")
        if conv is None:
            if isinstance(rec.get("text"), str):
                yield rec["text"]
                continue
            raise DataError(f"{path}: record {i} has neither 'conversations' nor 'text'")
        yield "\n".join(str(t.get("value", "")).replace("<image>", " ")
                        for t in conv if roles is None or t.get("from") in roles)


def frequency_vs_accuracy(counts: np.ndarray, accuracy: np.ndarray) -> dict:
    """Spearman and Pearson correlation between log10(1 + count) and per-class accuracy over
    classes with an accuracy (NaN accuracies, i.e. classes without test samples, are dropped)."""
    from vlmprobe.metrics.correlation import pearson, spearman

    logf = np.log10(1.0 + np.asarray(counts, dtype=np.float64))
    acc = np.asarray(accuracy, dtype=np.float64)
    keep = ~np.isnan(acc)
    return {"n_classes": int(keep.sum()), "spearman": spearman(logf[keep], acc[keep]),
            "pearson_log": pearson(logf[keep], acc[keep])}


def load_synonyms(path) -> dict[str, list[str]]:
    """A JSON object {class name: [synonym, ...] or "synonym"}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"synonyms file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not all(isinstance(v, (str, list)) for v in data.values()):
        raise DataError(f"{path}: expected an object {{class name: [synonyms]}}")
    return {str(k): [v] if isinstance(v, str) else [str(x) for x in v] for k, v in data.items()}
