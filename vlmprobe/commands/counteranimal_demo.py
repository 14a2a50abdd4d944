"""``vlmprobe toy counteranimal``: the CounterAnimal protocol on the miniature world, as the
``vlmprobe`` commands a user would type (each printed before it runs), ending in the paper's
table (``vlmprobe compare --groups group``): common / counter accuracy and drop for

- ``toy:clip-spurious`` zero-shot (a toy CLIP trained on background-correlated digits) and the
  plain ``toy:clip`` (trained on white paper) for contrast;
- ``toy:vlm`` direct generation and probability inference (1-vs-all), and closed-world
  generation on a 1-vs-k label space: each image's class plus the k classes the spurious CLIP
  confuses it with most (the paper's 1-vs-20 protocol; k = 3 in a 10-class world);
- ``toy:cnn``, the world's supervised "ImageNet model" (``--method classifier``).

All runs go to ``--out`` and resume when run again.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import VlmprobeError

CONFUSERS = 3  # 1-vs-k with k = 3 (the paper's 20 needs more than 10 classes)


def _step(argv: list[str]) -> None:
    from ..cli import main

    print("\n$ vlmprobe " + " ".join(shlex.quote(a) for a in argv), flush=True)
    code = main(argv)
    if code:
        raise VlmprobeError(f"step failed (exit {code}): vlmprobe {' '.join(argv)}")


def run_demo(out: str, seed: int = 0, limit: int | None = None, skip: set[str] = frozenset()) -> list[Path]:
    """Evaluate every model on ``toy:spurious`` into ``out/<name>`` and print the comparison."""
    from ..toy import build_world

    out = Path(out)
    root = Path(build_world(seed=seed, progress=True)["dir"])
    data = ["--data", "toy:spurious", "--seed", str(seed), "--no-progress", "--groups", "group"]
    data += ["--limit", str(limit)] if limit else []
    templates = ["--templates", str(root / "templates.json")]
    steps = {
        "clip-spurious-zeroshot": ["--model", "toy:clip-spurious", "--method", "zeroshot", *templates],
        "clip-zeroshot": ["--model", "toy:clip", "--method", "zeroshot", *templates],
        "cnn-classifier": ["--model", "toy:cnn", "--method", "classifier"],
        "vlm-generate": ["--model", "toy:vlm", "--method", "generate"],
        "vlm-likelihood": ["--model", "toy:vlm", "--method", "likelihood", "--answer-prefix", "paper"],
        "vlm-generate-1vs3": ["--model", "toy:vlm", "--method", "generate", "--closed-world", "--label-space",
                              f"{out / 'clip-spurious-zeroshot'}@{CONFUSERS}"],
    }
    done = []
    for name, argv in steps.items():
        if name in skip:
            continue
        _step(["eval", *argv, *data, "--out", str(out / name)])
        done.append(out / name)
    _step(["compare", *map(str, done), "--groups", "group", "--out", str(out / "compare.json")])
    return done
