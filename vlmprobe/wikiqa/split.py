"""The paper's argument as a number: QA accuracy split by whether the same model classified the
question's image correctly, read from a classification run directory (``vlmprobe eval``).

A classification record counts as correct when it is not skipped and ``prediction_name ==
label_name``. Records are matched to questions by image *file name* (ImageNet val names are
unique), so the two runs may use different folder layouts.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import VlmprobeError
from ..runs import read_run


def classification_outcomes(run_dir: str | os.PathLike) -> tuple[dict[str, bool | None], dict]:
    """{image file name: correct (bool), or None when skipped or inconsistent duplicates}, and
    the run's model spec + counts."""
    path = Path(run_dir).expanduser()
    config, records, _ = read_run(path)
    outcomes: dict[str, bool | None] = {}
    for i, r in enumerate(records, 1):
        if "image" not in r:
            raise VlmprobeError(f"{path / 'samples.jsonl'}:{i}: record has no 'image' field")
        name = os.path.basename(str(r["image"]))
        ok = None if r.get("skipped") else (r.get("prediction_name") is not None
                                            and r.get("prediction_name") == r.get("label_name"))
        if name in outcomes and outcomes[name] != ok:
            ok = None  # the same file name classified both ways: cannot tell
        outcomes[name] = ok
    info = {"path": str(path), "model": (config.get("model") or {}).get("spec"),
            "method": (config.get("method") or {}).get("name"), "num_records": len(records)}
    return outcomes, info


def _acc(records: list[dict]) -> dict:
    n = len(records)
    return {"n": n, "accuracy": (sum(bool(r.get("correct")) for r in records) / n) if n else None}


def split_by_classification(records: list[dict], run_dir: str | os.PathLike, model_spec: str | None = None) -> dict:
    """QA accuracy over scored (non-skipped) ``records`` split by the classification outcome of
    their image; ``gap`` = accuracy(classified correctly) - accuracy(classified wrongly)."""
    outcomes, info = classification_outcomes(run_dir)
    scored = [r for r in records if not r.get("skipped")]
    right, wrong, unknown, absent = [], [], 0, 0
    for r in scored:
        name = os.path.basename(str(r["image"]))
        if name not in outcomes:
            absent += 1
        elif outcomes[name] is None:
            unknown += 1
        else:
            (right if outcomes[name] else wrong).append(r)
    a, b = _acc(right), _acc(wrong)
    gap = a["accuracy"] - b["accuracy"] if a["accuracy"] is not None and b["accuracy"] is not None else None
    return {"classification_run": info, "same_model": model_spec is None or info["model"] == model_spec,
            "classified_correct": a, "classified_wrong": b, "gap": gap,
            "not_in_classification_run": absent, "skipped_or_ambiguous_in_classification_run": unknown}
