"""Every use of a library's non-public behaviour, isolated here, one function each, so that a
library release that changes it fails ``tests/test_compat.py`` loudly instead of a run quietly.

- ``strong_wolfe``: torch's strong-Wolfe line search (``torch.optim.lbfgs._strong_wolfe``; torch
  has no public line search), used by the probe's full-batch L-BFGS (``probe.linear``).
- ``cache_keyword``: the keyword a transformers language-model forward takes its KV cache under
  (``cache`` from transformers 5.24, ``past_key_values`` before); read from the forward's
  signature because the rename has no feature flag.
- ``launcher_argv``: the parent process's command line (``psutil``), from which
  ``distributed.requested_processes`` reads ``accelerate launch --cpu --num_processes N``: accelerate's
  simple CPU launcher starts one process and passes N to it neither as an argument nor in the
  environment.
"""
from __future__ import annotations

import inspect
import os

from .errors import VlmprobeError


def strong_wolfe(obj, x, t, direction, loss: float, grad, gtd: float):
    """One strong-Wolfe line search from ``x`` along ``direction`` (initial step ``t``):
    ``obj(x, t, d) -> (loss, grad)``; returns ``(new_loss, new_grad, t, evaluations)``."""
    try:
        from torch.optim.lbfgs import _strong_wolfe
    except ImportError as e:  # pragma: no cover - only on a torch release without it
        import torch

        raise VlmprobeError(f"torch {torch.__version__} has no torch.optim.lbfgs._strong_wolfe (the probe's L-BFGS "
                            "line search); use --backend sklearn or a torch release with it") from e
    return _strong_wolfe(obj, x, t, direction, loss, grad, gtd)


def cache_keyword(forward) -> str:
    """``"cache"`` or ``"past_key_values"``: the KV-cache keyword ``forward`` accepts."""
    params = inspect.signature(forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise VlmprobeError(f"{getattr(forward, '__qualname__', forward)} takes neither 'cache' nor 'past_key_values': "
                        "this transformers release renamed the KV-cache argument again; use --scoring naive")


def launcher_argv() -> list[str]:
    """The parent process's command line ([] when it cannot be read)."""
    import psutil

    try:
        return psutil.Process(os.getppid()).cmdline()
    except (psutil.Error, OSError):
        return []
