"""A fault hook for multi-process tests: make one rank of a launch fail inside a real model.

``VLMPROBE_TEST_FAULT=RANK[:TEXT] python -m vlmprobe.testing.fault ARGS`` runs ``vlmprobe ARGS``
(under ``accelerate launch`` too: ``-m vlmprobe.testing.fault``) with this hook added to the
loader's ``LOAD_HOOKS``; plain ``vlmprobe`` never reads the variable. Every model whose spec
contains ``TEXT`` (any model when absent) raises ``RuntimeError`` at its first module call on
process ``RANK`` of the launch (the ``RANK`` the launcher sets) and runs normally on the others. The error passes through the real code paths (the engine's loop, the
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


def main(argv: list[str] | None = None) -> int:
    """``vlmprobe ARGS`` with the fault hook armed on every loaded model."""
    import sys

    from ..cli import main as cli_main
    from ..models.registry import LOAD_HOOKS

    LOAD_HOOKS.append(arm)
    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":  # as ``python -m vlmprobe`` does: accelerate's CPU launch re-run on N processes
    from ..distributed import relaunch_cpu_processes

    relaunch_cpu_processes(module="vlmprobe.testing.fault")
    raise SystemExit(main())
