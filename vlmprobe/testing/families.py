"""Registry of tiny random-weight family builders (``TINY_BUILDERS``: model_type ->
``build(out: Path) -> None``, which writes a complete checkpoint directory: config, weights,
processor, tokenizer and the chat template the released checkpoint has, or none).

Builders register with ``@tiny_builder("<model_type>")``; the conformance suite builds every
registered family. (Minimal form; the conformance suite's module extends it.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

TINY_BUILDERS: dict[str, Callable[[Path], None]] = {}


def tiny_builder(model_type: str):
    """Decorator: register ``build(out)`` as the tiny builder of ``model_type``."""
    def register(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        TINY_BUILDERS[model_type] = fn
        return fn
    return register
