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
import time

import numpy as np
from tqdm.auto import tqdm

from ..cache import atomic_write_json
from ..data import ImageLoadError, read_image
from ..errors import VlmprobeError
from ..models.base import require_kind
from ..runs import RunDir, environment
from .loader import LETTERS, Question, QuestionSet
from .report import summarize
from .split import split_by_classification


def base_record(q: Question) -> dict:
    return {"id": q.id, "line": q.line, "image": q.image_path or q.image, "classname": q.classname,
            "label": q.label, "label_letter": q.letter}


def run_config(model, qset: QuestionSet, scorer, seed: int, runtime: dict) -> dict:
    model_desc = {k: v for k, v in model.describe().items() if k not in ("device", "device_map")}
    return {"command": "wikiqa", "method": scorer.config(), "condition": scorer.condition.to_config(),
            "model": model_desc, "data": qset.describe(), "seed": seed, "runtime": runtime,
            "environment": environment()}


def _load(q: Question, images_root: str | None) -> tuple[object | None, str | None]:
    if q.image_path is None:
        where = f"under {images_root}" if images_root else "(no --images given)"
        return None, f"image not found {where}: {q.image}"
    try:
        return read_image(q.image_path), None
    except ImageLoadError as e:
        return None, e.reason


def _run_batch(model, scorer, batch: list[Question], images_root: str | None, run: RunDir) -> None:
    show = scorer.condition.image
    loaded = [_load(q, images_root) if show else (None, None) for q in batch]
    ok = [j for j, (_, err) in enumerate(loaded) if err is None]
    records, scores = ([], None)
    if ok:
        records, scores = scorer.run_batch(model, [batch[j] for j in ok], [loaded[j][0] for j in ok] if show else None)
    out_scores = np.full((len(batch), scorer.num_scores), np.nan, dtype=np.float32) if scorer.num_scores else None
    out = []
    for j, q in enumerate(batch):
        rec = base_record(q)
        err = loaded[j][1]
        if err is not None:
            rec.update(prediction=None, parsed=None, correct=False, skipped=True, error=err)
        else:
            k = ok.index(j)
            rec.update(records[k])
            rec["parsed"] = None if rec["prediction"] is None else LETTERS[rec["prediction"]]
            rec["correct"] = rec["prediction"] == q.label
            if out_scores is not None:
                out_scores[j] = scores[k]
        out.append(rec)
    run.append(out, out_scores)


def results_of(run: RunDir, model_spec: str | None, classification_run: str | None) -> dict:
    records = run.records()
    results = summarize(records)
    results.update(condition=run.config["condition"]["name"], method=run.config["method"]["name"],
                   model=model_spec)
    if classification_run:
        results["split"] = split_by_classification(records, classification_run, model_spec)
    return results


def run_wikiqa(model, qset: QuestionSet, scorer, out: str | os.PathLike, batch_size: int = 8, seed: int = 0,
               progress: bool = True, classification_run: str | None = None) -> dict:
    """Score ``qset`` with ``scorer`` (GenerateScorer / LikelihoodScorer) into run directory
    ``out``; returns results.json's dict."""
    require_kind(model, "vlm", "ImageWikiQA", "use --model hf:... or toy:vlm")
    if batch_size < 1:
        raise VlmprobeError(f"--batch-size must be >= 1 (got {batch_size})")
    runtime = {"batch_size": batch_size, "device": str(model.device), "classification_run": classification_run}
    run = RunDir(out, run_config(model, qset, scorer, seed, runtime), scorer.num_scores)
    start = run.open()
    questions = qset.questions
    t0 = time.perf_counter()
    bar = tqdm(total=len(questions), initial=start, desc=f"wikiqa {scorer.name}", unit="q", disable=not progress)
    for b in range(start, len(questions), batch_size):
        batch = questions[b:b + batch_size]
        _run_batch(model, scorer, batch, qset.images_root, run)
        bar.update(len(batch))
    bar.close()
    elapsed = time.perf_counter() - t0
    run.finalize_scores()
    results = results_of(run, model.spec, classification_run)
    run.write_results(results)
    done = len(questions) - start
    if done:  # a re-run of a finished directory keeps the timing of the run that computed it
        atomic_write_json(run.path / "timing.json", {"seconds": elapsed, "questions_computed": done,
                                                      "seconds_per_question": elapsed / done})
    return results
