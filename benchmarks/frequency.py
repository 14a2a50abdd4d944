"""Class-name counting speed on a synthetic LLaVA-style corpus (default 665,000 conversations).

    python benchmarks/frequency.py [--conversations 665000] [--classes 1000] [--subset 2000]

Builds the corpus as one JSON list in a temporary directory, then times, on one core (wall and
process CPU time: on a shared machine the CPU time is the figure to compare):
  1. reading + counting the whole corpus with ``count_mentions`` (one trie-shaped regex);
  2. on the first --subset conversations: ``count_mentions`` vs the plain per-class reference
     ``count_mentions_naive`` and vs a flat longest-first alternation, printed as ratios,
     after checking that all give the same counts.
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py (a script's own folder is on sys.path)
import numpy as np

from vlmprobe.metrics import frequency as fq


def synthetic_classnames(rng, k: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    names = set()
    while len(names) < k:
        words = ["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(rng.integers(1, 4))]
        names.add(" ".join(words))
    return sorted(names)


def synthetic_corpus(rng, classnames, n_conv: int, pool: int = 5000):
    """Yield LLaVA-like records; gpt turns mention class names with a Zipf-like frequency."""
    vocab = ["the", "a", "photo", "shows", "of", "in", "on", "with", "image", "is", "there", "and", "it",
             "background", "near", "two", "small", "large", "white", "black", "object", "scene", "person"]
    weights = 1.0 / np.arange(1, len(classnames) + 1)
    weights /= weights.sum()
    turns = []
    for _ in range(pool):
        words = list(rng.choice(vocab, rng.integers(20, 90)))
        for _ in range(rng.integers(0, 3)):
            words.insert(int(rng.integers(0, len(words))), classnames[rng.choice(len(classnames), p=weights)])
        turns.append(" ".join(words).capitalize() + ".")
    questions = ["<image>\nWhat type of object is in the photo?", "<image>\nDescribe the image in detail.",
                 "What else can you see?", "Is there anything unusual?"]
    pick = rng.integers(0, pool, size=(n_conv, 3))
    for i in range(n_conv):
        conv = [{"from": "human", "value": questions[i % 2]}, {"from": "gpt", "value": turns[pick[i, 0]]},
                {"from": "human", "value": questions[2 + i % 2]}, {"from": "gpt", "value": turns[pick[i, 1]]}]
        yield {"id": f"{i:06d}", "image": f"coco/train2017/{i:012d}.jpg", "conversations": conv}


def write_json_list(path: Path, records) -> None:
    """One JSON list, written record by record (no second copy of the corpus in memory)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for i, rec in enumerate(records):
            f.write(("," if i else "") + json.dumps(rec))
        f.write("]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, default=665_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--subset", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    names = synthetic_classnames(rng, args.classes)
    terms = fq.build_terms(names)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.json"
        t = time.perf_counter()
        write_json_list(path, synthetic_corpus(rng, names, args.conversations))
        print(machine.describe())
        print(f"corpus: {args.conversations} conversations, {path.stat().st_size / 1e6:.0f} MB, "
              f"{args.classes} classes (built in {time.perf_counter() - t:.1f}s)")

        t = time.perf_counter()
        texts = list(fq.read_corpus_texts(path))
        t_read = time.perf_counter() - t
        t, c = time.perf_counter(), time.process_time()
        mentions, _ = fq.count_mentions(texts, terms, len(names))
        t_count, c_count = time.perf_counter() - t, time.process_time() - c
        chars = sum(len(x) for x in texts)
        print(f"full corpus: read {t_read:.1f}s, count {t_count:.1f}s wall / {c_count:.1f}s CPU "
              f"({chars / c_count / 1e6:.1f} M chars per CPU-second), "
              f"{int(mentions.sum())} mentions, {int((mentions == 0).sum())} classes never mentioned")

    sub = texts[: args.subset]
    t = time.perf_counter()
    fast = fq.count_mentions(sub, terms, len(names))
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    naive = fq.count_mentions_naive(sub, terms, len(names))
    t_naive = time.perf_counter() - t
    flat = re.compile(r"(?<!\w)(?:" + "|".join(fq._term_regex(x) for x in sorted(terms, key=len, reverse=True))
                      + r")(?!\w)")
    t = time.perf_counter()
    flat_found = [m for x in sub for m in flat.findall(x.lower())]
    t_flat = time.perf_counter() - t
    assert all((a == b).all() for a, b in zip(fast, naive)), "trie regex and naive reference disagree"
    assert len(flat_found) == int(fast[0].sum()), "flat alternation disagrees"
    print(f"subset of {len(sub)}: trie regex {t_fast:.3f}s, naive per-class loop {t_naive:.2f}s "
          f"(x{t_naive / t_fast:.0f} slower), flat alternation {t_flat:.3f}s (x{t_flat / t_fast:.1f}); counts equal")


if __name__ == "__main__":
    main()
