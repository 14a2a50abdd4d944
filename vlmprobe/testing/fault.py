"""A fault hook for multi-process tests: make one rank of a launch fail inside a real model.

``VLMPROBE_TEST_FAULT=RANK[:TEXT]`` (read when a model is loaded, ``models.registry.load_model``):
every model whose spec contains ``TEXT`` (any model when absent) raises ``RuntimeError`` at its
first module call on process ``RANK`` of the launch (the ``RANK`` the launcher sets) and runs
normally on the others. The error passes through the real code paths (the engine's loop, the
probe's feature extraction, the training step), which is what the fail-fast tests need; unset,
nothing is installed.
"""
from __future__ import annotations

import os

ENV = "VLMPROBE_TEST_FAULT"


def arm(model) -> None:
    """Install the fault of ``VLMPROBE_TEST_FAULT`` on a loaded ``VisionModel`` (no-op when unset
    or when its spec does not match)."""
    value = os.environ.get(ENV)
    if not value:
        return
    rank, _, text = value.partition(":")
    if text and text not in model.spec:
        return

    def hook(module, args):
        if os.environ.get("RANK", "0") == rank:  # checked per call: a solo section runs as rank 0
            raise RuntimeError(f"injected fault ({ENV}) in {type(module).__name__} on rank {rank}")

    module = getattr(model, "model", None)
    for module in module.modules() if module is not None else ():
        module.register_forward_pre_hook(hook)
