"""Reading JSON Lines files with errors that name the file and line."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import DataError


def read_jsonl(path, error: type[Exception] = DataError, objects: bool = True) -> list[tuple[int, object]]:
    """``[(line number, parsed value), ...]`` for every non-blank line of ``path``.

    Raises ``error`` with ``"PATH:LINE: ..."`` for invalid JSON, or (``objects=True``) for a line
    that is not a JSON object."""
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if objects and not isinstance(value, dict):
                raise error(f"{path}:{lineno}: expected a JSON object")
            rows.append((lineno, value))
    return rows
