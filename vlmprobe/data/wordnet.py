"""A reader of the Princeton WordNet 3.0 noun database (``index.noun`` + ``data.noun``), for
open-world answer scoring (synonyms, hypernyms, hyponyms of a class).

Where the files come from: ``--wordnet DIR`` (a WordNet ``dict`` directory), else
``$VLMPROBE_WORDNET``, else ``$WNHOME/dict``, else ``/usr/share/wordnet`` (Debian/Ubuntu package
``wordnet-base``: ``apt-get install wordnet-base``), else an NLTK data directory's
``corpora/wordnet`` (NLTK ships the same WordNet 3.0 files). No download is ever attempted.

File format (Princeton ``wndb(5WN)``): ``index.noun`` lines are ``lemma pos synset_cnt p_cnt
[ptr_symbol...] sense_cnt tagsense_cnt offset...`` (license lines start with two spaces);
``data.noun`` lines are ``offset lex_filenum ss_type w_cnt(hex) word lex_id ... p_cnt
symbol offset pos source/target ... | gloss`` and a synset's offset is its line's byte offset,
so a synset is read by one seek. Pointers used: ``@`` hypernym, ``@i`` instance hypernym,
``~`` hyponym, ``~i`` instance hyponym (noun to noun only). Lemmas are lower-cased with ``_``
read as a space. A name's synsets are those ``index.noun`` lists for it (all senses, in sense
order), after the same lower-casing and ``" " -> "_"``; no morphological reduction.
An ImageNet WordNet id ``n01234567`` is the noun synset at offset 1234567.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from ..errors import VlmprobeError

HYPERNYM, HYPONYM = ("@", "@i"), ("~", "~i")


def default_dirs() -> list[Path]:
    """Candidate WordNet ``dict`` directories, in the order they are tried."""
    out = []
    for env in ("VLMPROBE_WORDNET",):
        if os.environ.get(env):
            out.append(Path(os.environ[env]))
    if os.environ.get("WNHOME"):
        out.append(Path(os.environ["WNHOME"]) / "dict")
    out.append(Path("/usr/share/wordnet"))
    for root in (os.environ.get("NLTK_DATA"), str(Path.home() / "nltk_data"), "/usr/share/nltk_data",
                 "/usr/local/share/nltk_data"):
        if root:
            out.append(Path(root) / "corpora" / "wordnet")
    return out


def find_wordnet(path: str | None = None) -> Path | None:
    """The WordNet directory: ``path`` (must hold index.noun and data.noun, else VlmprobeError),
    or the first of ``default_dirs()`` that does (None when none does)."""
    if path:
        p = Path(path).expanduser()
        if not (p / "index.noun").is_file() or not (p / "data.noun").is_file():
            raise VlmprobeError(f"--wordnet {path}: no index.noun and data.noun there (a WordNet 3.0 dict directory)")
        return p
    return next((d for d in default_dirs() if (d / "index.noun").is_file() and (d / "data.noun").is_file()), None)


def _key(name: str) -> str:
    return "_".join(str(name).lower().split())


class WordNet:
    """Noun synsets by offset (int) of one WordNet directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._index: dict[str, list[int]] | None = None
        self._data = open(self.root / "data.noun", "rb")
        self._cache: dict[int, tuple[list[str], dict[str, list[int]]]] = {}

    def close(self) -> None:
        self._data.close()

    def _load_index(self) -> dict[str, list[int]]:
        if self._index is None:
            idx = {}
            with open(self.root / "index.noun", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("  ") or not line.strip():
                        continue
                    parts = line.split()
                    n_ptr = int(parts[3])
                    n_syn = int(parts[2])
                    idx[parts[0]] = [int(o) for o in parts[6 + n_ptr:6 + n_ptr + n_syn]]
            self._index = idx
        return self._index

    def synsets(self, name: str) -> list[int]:
        """Offsets of the noun synsets of ``name`` (sense order; [] when WordNet lacks it)."""
        return list(self._load_index().get(_key(name), []))

    def _read(self, offset: int) -> tuple[list[str], dict[str, list[int]]]:
        if offset not in self._cache:
            self._data.seek(offset)
            line = self._data.readline().decode("utf-8")
            parts = line.split(" | ")[0].split()
            if not parts or int(parts[0]) != offset:
                raise VlmprobeError(f"{self.root / 'data.noun'}: no synset at offset {offset}")
            w_cnt = int(parts[3], 16)
            words = [parts[4 + 2 * i].replace("_", " ").lower() for i in range(w_cnt)]
            pos = 4 + 2 * w_cnt
            ptrs: dict[str, list[int]] = {}
            for i in range(int(parts[pos])):
                sym, off, ppos = parts[pos + 1 + 4 * i:pos + 4 + 4 * i]
                if ppos == "n":
                    ptrs.setdefault(sym, []).append(int(off))
            self._cache[offset] = (words, ptrs)
        return self._cache[offset]

    def lemmas(self, offset: int) -> list[str]:
        """The synset's words (lower case, spaces), in file order."""
        return list(self._read(offset)[0])

    def related(self, offset: int, symbols: tuple[str, ...], depth: int | None = None) -> list[int]:
        """Transitive closure of ``symbols`` pointers from ``offset`` (itself excluded), breadth
        first, at most ``depth`` steps (None: all)."""
        seen, frontier, out, step = {offset}, [offset], [], 0
        while frontier and (depth is None or step < depth):
            nxt = []
            for o in frontier:
                for sym in symbols:
                    for t in self._read(o)[1].get(sym, []):
                        if t not in seen:
                            seen.add(t)
                            out.append(t)
                            nxt.append(t)
            frontier, step = nxt, step + 1
        return out


@lru_cache(maxsize=4)
def open_wordnet(root: str) -> WordNet:
    return WordNet(root)


def wnid_offset(wnid: str) -> int | None:
    """``n01440764`` -> 1440764; None when ``wnid`` is not a noun WordNet id."""
    w = str(wnid)
    return int(w[1:]) if len(w) == 9 and w[0] == "n" and w[1:].isdigit() else None
