"""YAML with line numbers: ``load_located(path)`` -> (plain Python value, {key path: line}).

Built on ``yaml.compose`` (the node graph keeps each node's start mark), so every error about a
study file can say ``FILE:LINE: key.path: message``. Key paths are tuples of mapping keys and
list indices, e.g. ``("measurements", 2, "templates")``; lines are 1-based.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import VlmprobeError


class StudyFileError(VlmprobeError):
    """A study file is invalid; the message names the file, line and key."""


def _construct(node, path: tuple, lines: dict, file: str):
    import yaml

    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            if not isinstance(key, (str, int)):
                raise StudyFileError(f"{file}:{key_node.start_mark.line + 1}: mapping keys must be strings")
            if key in out:
                raise StudyFileError(f"{file}:{key_node.start_mark.line + 1}: {_fmt(path + (key,))}: duplicate key")
            out[key] = _construct(value_node, path + (key,), lines, file)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), lines, file) for i, v in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _fmt(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def load_located(text: str, file: str) -> tuple[object, dict]:
    """Parse YAML ``text`` (named ``file`` in errors) -> (value, {key path: line})."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        raise StudyFileError(f"{file}:{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if node is None:
        raise StudyFileError(f"{file}:1: the study file is empty")
    lines: dict = {}
    return _construct(node, (), lines, file), lines


class Located:
    """Error helper for one parsed file: ``loc.error(path, msg)`` -> StudyFileError with line."""

    def __init__(self, file: str | Path, lines: dict):
        self.file, self.lines = str(file), lines

    def line(self, path: tuple) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: tuple, message: str) -> StudyFileError:
        return StudyFileError(f"{self.file}:{self.line(path)}: {_fmt(path)}: {message}")
