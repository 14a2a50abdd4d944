"""Where a fine-tuning run's numbers go besides ``log.jsonl``.

- ``--report_to none|tensorboard|wandb|all`` (or a comma list): accelerate's experiment
  trackers (``Accelerator(log_with=...)``, ``init_trackers``, ``log``), writing under
  ``output_dir/trackers``. Offline-safe: wandb runs in offline mode unless ``WANDB_MODE`` is set
  or an API key is configured; tensorboard writes local event files only.
- Always: ``train_log.csv`` (one row per log record: step, epoch, loss, lr, val_loss, val_acc...)
  and ``train_curve.png`` (training loss and validation accuracy against the optimizer step),
  rewritten from ``log.jsonl`` at the end of training (so a resumed run gives the same files).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ..errors import VlmprobeError

TRACKERS = ("tensorboard", "wandb")


def parse_report_to(value: str | None) -> list[str]:
    """``none`` -> [], ``all`` -> every tracker, else a comma list of TRACKERS."""
    if value in (None, "", "none"):
        return []
    names = list(TRACKERS) if value == "all" else [v.strip() for v in str(value).split(",") if v.strip()]
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise VlmprobeError(f"report_to: unknown tracker {bad[0]!r} (use none, all or {', '.join(TRACKERS)})")
    for n in names:
        module = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}[n]
        import importlib.util

        if not any(importlib.util.find_spec(m) for m in module):
            raise VlmprobeError(f"report_to: {n} is not installed (pip install {module[0]})")
    if "wandb" in names and "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY"):
        os.environ["WANDB_MODE"] = "offline"  # never reach the network unless the user set it up
    return names


def scalars(record: dict) -> dict:
    """The numeric fields of a log record (what trackers accept)."""
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k != "step"}


def write_train_log(log_jsonl: str | Path, out_dir: str | Path) -> list[Path]:
    """``train_log.csv`` and ``train_curve.png`` beside ``log_jsonl``'s records."""
    from ..metrics.plots import _pyplot, _save

    out_dir = Path(out_dir)
    recs = [json.loads(x) for x in Path(log_jsonl).read_text().splitlines() if x.strip()]
    cols = list(dict.fromkeys(k for r in recs for k in r))
    tmp = out_dir / "train_log.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(recs)
    tmp.replace(out_dir / "train_log.csv")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    loss = [(r["step"], r["loss"]) for r in recs if "loss" in r]
    if loss:
        ax.plot(*zip(*loss), lw=1, label="training loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", fontsize=7)
    acc = [(r["step"], r["val_acc"]) for r in recs if "val_acc" in r]
    if acc:
        ax2 = ax.twinx()
        ax2.plot(*zip(*acc), "o-", color="C1", label="validation accuracy")
        ax2.set_ylabel("validation accuracy")
        ax2.set_ylim(0, 1.05)
        ax2.legend(loc="center right", fontsize=7)
    ax.set_title("fine-tuning: loss and validation accuracy", fontsize=9)
    return [out_dir / "train_log.csv", _save(fig, out_dir / "train_curve.png")]
