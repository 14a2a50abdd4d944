"""``evaluate(model, dataset, method, out)``: a classification method over an image dataset,
through the one sample loop (``vlmprobe.engine.run_job``).

Unreadable images become ``skipped`` records (NaN score rows), counted in results, never
dropped; records and scores are appended as batches finish, so a killed run resumes where it
stopped; several launched processes share the run (``vlmprobe.runs``).
"""
from __future__ import annotations

import os

from ..data import ImageDataset
from ..engine import ImageInputs, rng_factory, run_config, run_job
from ..errors import VlmprobeError
from ..runs import read_run

__all__ = ["METHODS", "evaluate", "make_method", "method_module", "rng_factory", "summarize_run"]

METHODS = {
    "zeroshot": "vlmprobe.classify.zeroshot",
    "generate": "vlmprobe.classify.generation",
    "likelihood": "vlmprobe.classify.likelihood",
    "classifier": "vlmprobe.classify.supervised",
    "imagenet16": "vlmprobe.classify.imagenet16",
}


def method_module(name: str):
    import importlib

    if name not in METHODS:
        raise VlmprobeError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return importlib.import_module(METHODS[name])


def make_method(name: str, **options):
    """A method object by name with its options (what ``vlmprobe eval --method`` builds)."""
    return method_module(name).Method(**options)


def evaluate(model, dataset: ImageDataset, method, out: str | os.PathLike, batch_size: int = 32,
             seed: int = 0, workers: int = 0, progress: bool = True, worst_k=(1, 5, 10, 20),
             groups: str | None = None, command: str = "eval", group_drop: tuple[str, str] | None = None) -> dict:
    """Run ``method`` (a Method object or a name) of ``model`` over ``dataset`` into run
    directory ``out`` (resuming it if it holds the same config). Returns results.json's dict;
    ``groups``/``group_drop``: per-group accuracy by that sample field (and the drop A -> B)."""
    if isinstance(method, str):
        method = make_method(method)
    method.setup(model, dataset)
    num_scores = method.num_scores(dataset)
    runtime = {"batch_size": batch_size, "workers": workers, "device": str(model.device)}
    config = run_config(command, model, {"name": method.name, **method.config()}, dataset.describe(), seed, runtime)
    return run_job(model, method, ImageInputs(dataset), out, config, num_scores,
                   lambda path: summarize_run(path, worst_k=worst_k, groups=groups, method=method,
                                              group_drop=group_drop),
                   batch_size=batch_size, workers=workers, seed=seed, progress=progress)


def summarize_run(path, worst_k=(1, 5, 10, 20), groups: str | None = None, method=None,
                  group_drop: tuple[str, str] | None = None) -> dict:
    """results.json's dict from a run directory's files (used by eval and ``vlmprobe metrics``):
    the shared metrics, the list of skipped images (id, path, error) and, when the method has a
    ``summarize(records)`` hook, its own summary under ``method_summary``."""
    from ..metrics.report import results_from_run

    results = results_from_run(path, worst_k=worst_k, groups=[groups] if groups else None, group_drop=group_drop)
    _, records, _ = read_run(path)
    results["skipped_images"] = [{"id": r["id"], "image": r["image"], "error": r.get("error")}
                                 for r in records if r.get("skipped")]
    if method is not None and hasattr(method, "summarize"):
        results["method_summary"] = method.summarize([r for r in records if not r.get("skipped")])
    return results
