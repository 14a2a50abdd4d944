"""One switch for every progress bar: ``progress_bars(False)`` (what ``--no-progress`` does around
a command, and a study's quiet world build) silences vlmprobe's own bars (``bar``, which every
module uses in place of ``tqdm``: toy builds and training, counting, probes, fine-tuning, the
sample loop) and transformers' / huggingface_hub's (checkpoint loading, downloads)."""
from __future__ import annotations

from contextlib import contextmanager

_enabled = True


def bar(*args, **kwargs):
    """``tqdm.auto.tqdm(*args, **kwargs)``, disabled while ``progress_bars(False)`` is active."""
    from tqdm.auto import tqdm

    if not _enabled:
        kwargs["disable"] = True
    return tqdm(*args, **kwargs)


@contextmanager
def progress_bars(enabled: bool):
    """Every bar on (as each call site decides) or off for the duration of the block."""
    global _enabled
    if enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    before, hf_before = _enabled, hf_logging.is_progress_bar_enabled()
    _enabled = False
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        _enabled = before
        if hf_before:
            hf_logging.enable_progress_bar()
