"""ImageWikiQA questions: the released JSONL format, options parsed out of ``text``, images
resolved under a root directory.

One row per line::

    {"image": "images/ILSVRC2012_val_00039210.JPEG",
     "text": "Which position ...?\\nA. Fowler's position\\nB. ...\\nC. ...\\nD. ...\\nChoose A, B, C, or D.",
     "label": "C", "wiki": "...", "classname": "stretcher"}

``text`` holds the question stem, then one line per option (``A. ...`` .. ``D. ...``, in order),
then the instruction line. Every malformed row raises ``DataError("FILE:LINE: ...")``.

Images: ``ROOT/image`` when it exists, else ``ROOT/<file name>``, else a file of that name
anywhere under ROOT (an ImageNet val folder, flat or with class sub-folders; indexed once).
Questions whose image is not found keep ``image_path=None`` and are listed in
``QuestionSet.missing`` (reported and counted by the runner, never dropped silently).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..jsonl import read_jsonl

LETTERS = ("A", "B", "C", "D")
REQUIRED_FIELDS = ("image", "text", "label", "classname")
_OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[.):]\s*(.*?)\s*$")


@dataclass
class Question:
    """One four-option question. ``label`` is the index (0-3) of the right option."""

    id: str  # "L<line>": 1-based line number in the file (stable, unique; images repeat)
    line: int
    image: str  # as written in the file
    text: str  # the full prompt text as released (stem + options + instruction)
    stem: str
    options: list[str]
    label: int
    classname: str
    wiki: str = ""
    image_path: str | None = None  # resolved file, None when not found / not resolved

    @property
    def letter(self) -> str:
        return LETTERS[self.label]

    @property
    def image_name(self) -> str:
        return os.path.basename(self.image)


@dataclass
class QuestionSet:
    """Questions in file order plus where they came from; ``missing`` = questions whose image
    was looked for under ``images_root`` and not found."""

    path: str
    questions: list[Question]
    images_root: str | None = None
    sha256: str = ""
    missing: list[Question] = field(default_factory=list)
    limit: int | None = None
    seed: int = 0

    def __len__(self) -> int:
        return len(self.questions)

    def describe(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "num_questions": len(self.questions),
                "images_root": self.images_root, "num_missing_images": len(self.missing),
                "limit": self.limit, "seed": self.seed if self.limit else None}


def parse_options(text: str) -> tuple[str, list[str]]:
    """Split a released ``text`` into (stem, [option A, B, C, D]); ValueError when the four
    option lines ``A. ..`` .. ``D. ..`` are not there exactly once each, in order."""
    lines = text.split("\n")
    found: list[tuple[int, str, str]] = []
    for i, line in enumerate(lines):
        m = _OPTION_LINE.match(line)
        if m and m.group(1) in LETTERS:
            found.append((i, m.group(1), m.group(2)))
    # the option block is the first run "A".."D" on consecutive lines
    for k in range(len(found) - 3):
        block = found[k:k + 4]
        first = block[0][0]
        if [b[1] for b in block] == list(LETTERS) and [b[0] for b in block] == list(range(first, first + 4)):
            options = [b[2] for b in block]
            if any(not o for o in options):
                raise ValueError(f"option {LETTERS[[not o for o in options].index(True)]} is empty")
            if len({o.casefold() for o in options}) < 4:
                raise ValueError("two options have the same text")
            stem = "\n".join(lines[:block[0][0]]).strip()
            if not stem:
                raise ValueError("no question before the options")
            return stem, options
    letters = "".join(f[1] for f in found) or "none"
    raise ValueError(f"expected option lines 'A. ...' to 'D. ...' in order in 'text' (found letters: {letters})")


def _row_to_question(row, path: str, line: int) -> Question:
    where = f"{path}:{line}"
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    for key in REQUIRED_FIELDS:
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise DataError(f"{where}: field {key!r} is missing or not a non-empty string")
    label = row["label"].strip().upper().strip("().")
    if label not in LETTERS:
        raise DataError(f"{where}: field 'label' must be one of A, B, C, D (got {row['label']!r})")
    try:
        stem, options = parse_options(row["text"])
    except ValueError as e:
        raise DataError(f"{where}: field 'text': {e}") from None
    return Question(id=f"L{line}", line=line, image=row["image"], text=row["text"], stem=stem, options=options,
                    label=LETTERS.index(label), classname=row["classname"].strip(), wiki=str(row.get("wiki", "")))


class ImageResolver:
    """Finds a question's image under ``root`` (see module docstring); the by-name index of the
    whole tree is built once, on the first image not found at its relative path."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"--images {root}: not a directory")
        self._index: dict[str, str] | None = None
        self.duplicate_names: set[str] = set()

    def _build_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for name in sorted(filenames):
                if name in index:
                    self.duplicate_names.add(name)
                else:
                    index[name] = os.path.join(dirpath, name)
        return index

    def resolve(self, image: str) -> str | None:
        direct = self.root / image
        if direct.is_file():
            return str(direct)
        name = os.path.basename(image)
        flat = self.root / name
        if flat.is_file():
            return str(flat)
        if self._index is None:
            self._index = self._build_index()
        if name in self.duplicate_names:
            raise DataError(f"--images {self.root}: several files are named {name}; point --images at a "
                            "folder where image file names are unique")
        return self._index.get(name)


def load_questions(path: str | os.PathLike, images_root: str | os.PathLike | None = None,
                   limit: int | None = None, seed: int = 0) -> QuestionSet:
    """Read and check every row of an ImageWikiQA JSONL file; keep a seeded random subset of
    ``limit`` questions (in file order) if given; with ``images_root``, resolve every kept
    question's image (unresolved ones -> ``missing``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"--data {path}: file not found")
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    questions = [_row_to_question(row, str(path), line_no)
                 for line_no, row in read_jsonl(path, objects=False)]
    if not questions:
        raise DataError(f"{path}: no questions")
    if limit is not None:
        if limit <= 0:
            raise DataError(f"--limit must be positive (got {limit})")
        if limit < len(questions):
            keep = np.sort(np.random.default_rng(seed).choice(len(questions), size=limit, replace=False))
            questions = [questions[i] for i in keep]
    qset = QuestionSet(str(path), questions, str(images_root) if images_root else None,
                       hashlib.sha256(raw).hexdigest(), limit=limit, seed=seed)
    if images_root is not None:
        resolver = ImageResolver(images_root)
        for q in questions:
            q.image_path = resolver.resolve(q.image)
            if q.image_path is None:
                qset.missing.append(q)
    return qset
