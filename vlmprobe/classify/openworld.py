"""Open-world scoring of stored free-form answers (``vlmprobe metrics RUN --open-world``): no
re-generation; every criterion is recomputed from the ``response`` of each record of a
generation run and written per sample to ``RUN/open_world.jsonl`` and as rates to results.json's
``open_world``.

Criteria, per answered sample with true class y (cumulative where stated):

- ``inclusion`` (today's, the paper's): y is among the run's own ``matches`` (its matching rule,
  by default the case-insensitive substring ``label in response``);
- ``synonym``: inclusion, or the answer names a *synonym term* of y: a lemma of a WordNet noun
  synset of y (every sense of the class name; for the ImageNet-1k class list, the class's own
  synset from its WordNet id), or a name from vlmprobe's names lists (ImageNet: timm's lemmas of
  the class, ``data.imagenet_classes``), or a ``--synonyms FILE.json`` entry ``{class: [names]}``;
- ``hypernym`` / ``hyponym`` (reported separately, never counted in ``synonym``): not a synonym
  match, and the answer names a lemma of a hypernym (instance hypernyms included; at most
  ``hypernym_depth`` steps up, default 3: "dog" for "beagle" is 3 steps) or of any hyponym (all
  depths) of y's synsets; ``hierarchy`` = either;
- ``semantic``: the class whose name is nearest to the answer by cosine similarity of text
  embeddings (``--text-encoder SPEC``: a CLIP model's text tower, e.g. the study's ``toy:clip`` or
  ``openclip:ViT-B-32@openai``; embeddings of the raw answer and the raw class names); right
  when that class is y (the "semantic similarity" metric of Conti et al. 2025, arXiv 2503.21851,
  with the prediction as the nearest name);
- ``unmatched``: the answer names no term (name or synonym term) of any class and no hypernym
  or hyponym of y.

"Names a term": the answer and the term are lower-cased and split into word tokens (``\\w+``);
the term's token sequence occurs in the answer's, the answer's last token of the span also
matching with a trailing ``s`` or ``es`` removed (plural). Single-letter terms are dropped
(WordNet lists "I" as a lemma of "one"). Each rate carries a 95%
Clopper-Pearson interval over the answered samples.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import VlmprobeError

DEFAULT_HYPERNYM_DEPTH = 3
MAX_TERM_TOKENS = 8
_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(str(text).lower().replace("_", " ")))


def _singular(tok: str) -> list[str]:
    out = [tok]
    if len(tok) > 3 and tok.endswith("es"):
        out.append(tok[:-2])
    if len(tok) > 2 and tok.endswith("s"):
        out.append(tok[:-1])
    return out


def named_terms(answer: str, terms: dict[tuple, object]) -> list:
    """Values of ``terms`` (token tuple -> value) whose key occurs in the answer's tokens (see
    module docstring), in order of first occurrence, without repeats."""
    toks = tokens(answer)
    found, seen = [], set()
    for i in range(len(toks)):
        for n in range(1, min(MAX_TERM_TOKENS, len(toks) - i) + 1):
            head = toks[i:i + n - 1]
            for last in _singular(toks[i + n - 1]):
                key = head + (last,)
                if key in terms and key not in seen:
                    seen.add(key)
                    found.append(terms[key])
    return found


@dataclass
class ClassTerms:
    """One class's terms (token tuples) by relation."""

    synsets: list[int] = field(default_factory=list)
    synonyms: set = field(default_factory=set)
    hypernyms: set = field(default_factory=set)
    hyponyms: set = field(default_factory=set)


def class_terms(classnames: list[str], wordnet=None, names_lists: dict[int, list[str]] | None = None,
                synsets: dict[int, list[int]] | None = None,
                hypernym_depth: int = DEFAULT_HYPERNYM_DEPTH) -> list[ClassTerms]:
    """Per class: its synonym / hypernym / hyponym terms. ``wordnet``: a ``data.wordnet.WordNet``
    (None: only the names and names lists); ``synsets``: class index -> synset offsets to use
    instead of the name's senses (ImageNet's WordNet ids)."""
    from ..data.wordnet import HYPERNYM, HYPONYM

    out = []
    for c, name in enumerate(classnames):
        t = ClassTerms()
        t.synonyms.add(tokens(name))
        for extra in (names_lists or {}).get(c, []):
            t.synonyms.add(tokens(extra))
        if wordnet is not None:
            t.synsets = list((synsets or {}).get(c) or wordnet.synsets(name))
            for s in t.synsets:
                t.synonyms.update(tokens(lemma) for lemma in wordnet.lemmas(s))
            for s in t.synsets:
                for h in wordnet.related(s, HYPERNYM, hypernym_depth):
                    t.hypernyms.update(tokens(lemma) for lemma in wordnet.lemmas(h))
                for h in wordnet.related(s, HYPONYM, None):
                    t.hyponyms.update(tokens(lemma) for lemma in wordnet.lemmas(h))
        for terms in (t.synonyms, t.hypernyms, t.hyponyms):  # "I" (a lemma of "one") is not a name
            terms.difference_update({k for k in terms if not k or (len(k) == 1 and len(k[0]) == 1 and k[0].isalpha())})
        t.hypernyms -= t.synonyms
        t.hyponyms -= t.synonyms
        out.append(t)
    return out


def imagenet_names_lists(classnames: list[str]) -> tuple[dict[int, list[str]], dict[int, list[int]]] | None:
    """(names lists, synset offsets) per class when ``classnames`` is the ImageNet-1k list
    (open_clip's names, vlmprobe's ``--classes imagenet``), else None."""
    from ..data.imagenet_classes import NUM_CLASSES, imagenet_names

    if len(classnames) != NUM_CLASSES or list(classnames) != list(imagenet_names()):
        return None
    from timm.data import ImageNetInfo

    from ..data.wordnet import wnid_offset

    info = ImageNetInfo()
    names = {i: [x.strip() for x in info.index_to_description(i).split(",") if x.strip()] for i in range(NUM_CLASSES)}
    offsets = {i: [o] for i in range(NUM_CLASSES) if (o := wnid_offset(info.index_to_label_name(i))) is not None}
    return names, offsets


def read_synonyms(path: str, classnames: list[str]) -> dict[int, list[str]]:
    """``--synonyms FILE.json``: {class name or index: [names]} -> class index -> names."""
    import json
    from pathlib import Path

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise VlmprobeError(f"--synonyms {path}: cannot read a JSON object ({e})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                            for v in raw.values()):
        raise VlmprobeError(f"--synonyms {path}: expected {{class: [names]}}")
    out = {}
    for k, v in raw.items():
        if str(k).isdigit() and 0 <= int(k) < len(classnames):
            c = int(k)
        elif k in classnames:
            c = classnames.index(k)
        else:
            raise VlmprobeError(f"--synonyms {path}: {k!r} is not a class of the run")
        out.setdefault(c, []).extend(v)
    return out


def semantic_predictions(encoder, responses: list[str], classnames: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(nearest class [N], cosine to it [N]) under ``encoder.encode_texts`` (L2-normalised)."""
    if not responses:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    names = encoder.encode_texts(list(classnames)).cpu().numpy()
    answers = encoder.encode_texts([r if r.strip() else " " for r in responses]).cpu().numpy()
    cos = answers @ names.T
    return cos.argmax(axis=1), cos.max(axis=1)


def score_records(records: list[dict], classnames: list[str], terms: list[ClassTerms],
                  semantic: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict]:
    """Per answered record (one with a ``response`` and an integer ``label``): the criteria of
    the module docstring. ``semantic``: ``semantic_predictions`` over the same records in order."""
    any_term = {}
    for c, t in enumerate(terms):
        for key in t.synonyms:
            any_term.setdefault(key, []).append(c)
    out = []
    for i, r in enumerate(records):
        y = r["label"]
        t = terms[y]
        response = r["response"]
        named = [c for cs in named_terms(response, any_term) for c in cs]
        syn_terms = named_terms(response, {k: " ".join(k) for k in t.synonyms})
        hyper = named_terms(response, {k: " ".join(k) for k in t.hypernyms})
        hypo = named_terms(response, {k: " ".join(k) for k in t.hyponyms})
        inclusion = y in (r.get("matches") or [])
        synonym = inclusion or bool(syn_terms)
        rec = {"id": r.get("id"), "label": y, "response": response, "inclusion": inclusion, "synonym": synonym,
               "synonym_terms": syn_terms, "named_classes": sorted(set(named)),
               "hypernym": (not synonym) and bool(hyper), "hypernym_terms": hyper,
               "hyponym": (not synonym) and bool(hypo), "hyponym_terms": hypo}
        rec["unmatched"] = not named and not inclusion and not hyper and not hypo
        if semantic is not None:
            rec["semantic_prediction"] = int(semantic[0][i])
            rec["semantic_cosine"] = float(semantic[1][i])
            rec["semantic"] = rec["semantic_prediction"] == y
        out.append(rec)
    return out


RATES = ("inclusion", "synonym", "hypernym", "hyponym", "hierarchy", "semantic", "unmatched")


def rates(scored: list[dict]) -> dict:
    """{criterion: {rate, count, ci95}} over the scored answers (hierarchy = hypernym or hyponym)."""
    from ..metrics.intervals import proportion

    n = len(scored)
    out = {"n": n}
    for name in RATES:
        if name == "semantic" and scored and "semantic" not in scored[0]:
            out[name] = None
            continue
        k = sum(1 for r in scored if (r["hypernym"] or r["hyponym"] if name == "hierarchy" else r[name]))
        iv = proportion(k, n)
        out[name] = {"rate": k / n if n else None, "count": k, "ci95": [iv["low"], iv["high"]] if iv else None}
    return out


def score_run(run, wordnet: str | None = "auto", text_encoder=None, synonyms: str | None = None,
              hypernym_depth: int = DEFAULT_HYPERNYM_DEPTH) -> tuple[dict, list[dict]]:
    """(results.json's ``open_world`` block, per-sample rows) of a loaded generation run
    (``metrics.rundata.RunData``). ``wordnet``: a directory, "auto" (``data.wordnet.find_wordnet``)
    or "none"; ``text_encoder``: a loaded CLIP model (or None: no semantic criterion)."""
    from ..data.wordnet import find_wordnet, open_wordnet

    answered = [r for r in run.records if "response" in r and isinstance(r.get("label"), int)]
    if not answered:
        raise VlmprobeError(f"--open-world: {run.path / 'samples.jsonl'} has no labeled record with a 'response' "
                            "(it scores the stored answers of a --method generate run)")
    classnames = list(run.classnames)
    root = None if wordnet == "none" else find_wordnet(None if wordnet in (None, "auto") else wordnet)
    wn = open_wordnet(str(root)) if root is not None else None
    inet = imagenet_names_lists(classnames)
    names_lists, offsets = inet if inet else ({}, {})
    if synonyms:
        for c, v in read_synonyms(synonyms, classnames).items():
            names_lists.setdefault(c, []).extend(v)
    terms = class_terms(classnames, wn, names_lists, offsets, hypernym_depth)
    semantic = semantic_predictions(text_encoder, [r["response"] for r in answered], classnames) \
        if text_encoder is not None else None
    rows = score_records(answered, classnames, terms, semantic)
    block = {**rates(rows), "wordnet": str(root) if root else None,
             "names_lists": "imagenet (timm lemmas)" if inet else None, "synonyms_file": synonyms,
             "hypernym_depth": hypernym_depth,
             "text_encoder": getattr(text_encoder, "spec", None) if text_encoder is not None else None,
             "classes_without_wordnet_synset": [classnames[c] for c, t in enumerate(terms) if wn and not t.synsets]}
    return block, rows
