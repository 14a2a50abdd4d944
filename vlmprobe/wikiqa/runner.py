"""``run_wikiqa(model, questions, scorer, out)``: score every question into a run directory
(``vlmprobe.runs.RunDir``: config.json, samples.jsonl, scores.npy for likelihood, results.json,
timing.json), resuming a killed run at the first unfinished question.

One record per question, in file order: ``id`` (``L<line>``), ``line``, ``image``, ``classname``,
``label`` (0-3), ``label_letter``, ``prediction`` (0-3 or None), ``parsed``, ``correct``, plus
the scorer's fields. A question whose image is missing or unreadable (when the condition shows
images) is a ``skipped`` record with ``error`` (NaN score row): counted, never dropped.
Nothing is random: the seed is recorded only for the run-directory layout shared with eval.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..data import ImageLoadError, read_image
from ..engine import run_config, run_job
from ..errors import VlmprobeError
from ..models.base import require_kind
from ..runs import read_run
from .loader import LETTERS, Question, QuestionSet
from .report import summarize
from .split import split_by_classification


class QuestionInputs:
    """A ``QuestionSet`` as engine inputs; ``show`` False: no image is loaded (or needed)."""

    def __init__(self, qset: QuestionSet, show: bool):
        self.qset, self.show = qset, show
        self.name = "wikiqa"

    def __len__(self) -> int:
        return len(self.qset.questions)

    def item(self, i: int) -> Question:
        return self.qset.questions[i]

    def load_image(self, i: int):
        q = self.qset.questions[i]
        if not self.show:
            return None
        if q.image_path is None:
            root = self.qset.images_root
            raise ImageLoadError(q.image, f"image not found {f'under {root}' if root else '(no --images given)'}: "
                                          f"{q.image}")
        return read_image(q.image_path)

    def base_record(self, i: int) -> dict:
        q = self.qset.questions[i]
        return {"id": q.id, "line": q.line, "image": q.image_path or q.image, "classname": q.classname,
                "label": q.label, "label_letter": q.letter}

    skip_fields = {"prediction": None, "parsed": None, "correct": False}

    def complete(self, rec: dict, scores) -> None:
        rec["parsed"] = None if rec["prediction"] is None else LETTERS[rec["prediction"]]
        rec["correct"] = rec["prediction"] == rec["label"]


def results_of(path: Path, model_spec: str | None, classification_run: str | None) -> dict:
    """results.json of a finished wikiqa run directory (``report.summarize`` + run facts)."""
    config, records, _ = read_run(path)
    results = summarize(records)
    results.update(condition=config["condition"]["name"], method=config["method"]["name"], model=model_spec)
    if classification_run:
        results["split"] = split_by_classification(records, classification_run, model_spec)
    return results


def run_wikiqa(model, qset: QuestionSet, scorer, out: str | os.PathLike, batch_size: int = 8, seed: int = 0,
               progress: bool = True, classification_run: str | None = None) -> dict:
    """Score ``qset`` with ``scorer`` (GenerateScorer / LikelihoodScorer) into run directory
    ``out``; returns results.json's dict."""
    require_kind(model, "vlm", f"ImageWikiQA --method {scorer.name}", "use --model hf:... or toy:vlm",
                 api=scorer.name == "generate")
    if batch_size < 1:
        raise VlmprobeError(f"--batch-size must be >= 1 (got {batch_size})")
    runtime = {"batch_size": batch_size, "device": str(model.device), "classification_run": classification_run}
    config = run_config("wikiqa", model, scorer.config(), qset.describe(), seed, runtime,
                        condition=scorer.condition.to_config())
    return run_job(model, scorer, QuestionInputs(qset, scorer.condition.image), out, config, scorer.num_scores(qset),
                   lambda path: results_of(path, model.spec, classification_run), batch_size=batch_size,
                   seed=seed, progress=progress, unit="question")
