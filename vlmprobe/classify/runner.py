"""``evaluate(model, dataset, method, out)``: the loop every classification method shares.

Images are loaded (and, if the method asks, preprocessed) by a DataLoader; each batch of loaded
images goes to ``method.run_batch``; unreadable images become ``skipped`` records (NaN score
rows) that are counted in results, never dropped. Records and scores are appended to the run
directory as batches finish, so a killed run resumes where it stopped (``vlmprobe.runs``).
Per-sample randomness (candidate sampling, shuffling) comes from ``rng_for(sample)``, seeded
by (run seed, sample id): results do not depend on batch size or on resuming.
"""
from __future__ import annotations

import os
import time
import zlib
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..cache import atomic_write_json
from ..data import ImageDataset
from ..data.batches import image_batches
from ..errors import VlmprobeError
from ..runs import RunDir, environment, read_run

METHODS = {
    "zeroshot": "vlmprobe.classify.zeroshot",
    "generate": "vlmprobe.classify.generation",
    "likelihood": "vlmprobe.classify.likelihood",
    "classifier": "vlmprobe.classify.supervised",
}


def method_module(name: str):
    import importlib

    if name not in METHODS:
        raise VlmprobeError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return importlib.import_module(METHODS[name])


def make_method(name: str, **options):
    """A method object by name with its options (what ``vlmprobe eval --method`` builds)."""
    return method_module(name).Method(**options)


def rng_factory(seed: int) -> Callable:
    """sample -> numpy Generator seeded by (seed, crc32(sample.id))."""
    return lambda sample: np.random.default_rng([seed, zlib.crc32(sample.id.encode())])


def base_record(dataset: ImageDataset, i: int) -> dict:
    s = dataset.samples[i]
    labeled = s.label >= 0
    rec = {"id": s.id, "image": s.image, "label": s.label if labeled else None,
           "label_name": dataset.classnames[s.label] if labeled else None}
    if s.meta:
        rec["meta"] = s.meta
    return rec


def run_config(model, dataset: ImageDataset, method, seed: int, command: str, runtime: dict) -> dict:
    model_desc = {k: v for k, v in model.describe().items() if k not in ("device", "device_map")}
    return {"command": command, "method": {"name": method.name, **method.config()}, "model": model_desc,
            "data": dataset.describe(), "seed": seed, "runtime": runtime, "environment": environment()}


def evaluate(model, dataset: ImageDataset, method, out: str | os.PathLike, batch_size: int = 32,
             seed: int = 0, workers: int = 0, progress: bool = True, worst_k=(1, 5, 10, 20),
             groups: str | None = None, command: str = "eval") -> dict:
    """Run ``method`` (a Method object or a name) of ``model`` over ``dataset`` into run
    directory ``out`` (resuming it if it holds the same config). Returns results.json's dict."""
    if isinstance(method, str):
        method = make_method(method)
    method.setup(model, dataset)
    num_scores = method.num_scores(dataset)
    runtime = {"batch_size": batch_size, "workers": workers, "device": str(model.device)}
    run = RunDir(out, run_config(model, dataset, method, seed, command, runtime), num_scores)
    start = run.open()
    rng_for = rng_factory(seed)
    transform = method.image_transform(model) if hasattr(method, "image_transform") else None
    todo = range(start, len(dataset))
    t0 = time.perf_counter()
    if len(todo):
        bar = tqdm(total=len(dataset), initial=start, desc=f"{method.name} {dataset.name}", unit="img",
                   disable=not progress)
        for items in image_batches(dataset, todo, batch_size, workers, transform):
            _run_batch(model, dataset, method, run, items, num_scores, rng_for)
            bar.update(len(items))
        bar.close()
    elapsed = time.perf_counter() - t0
    run.finalize_scores()
    results = summarize_run(run.path, worst_k=worst_k, groups=groups, method=method)
    run.write_results(results)
    atomic_write_json(run.path / "timing.json", {"seconds": elapsed, "samples_computed": len(todo),
                                                  "samples_per_second": len(todo) / elapsed if elapsed else None})
    return results


def _run_batch(model, dataset, method, run: RunDir, items, num_scores, rng_for) -> None:
    ok = [(i, img) for i, img, err in items if err is None]
    records, scores = [], None
    if ok:
        idx = [i for i, _ in ok]
        records, scores = method.run_batch(model, [dataset.samples[i] for i in idx], [im for _, im in ok], rng_for)
    by_index = dict(zip([i for i, _ in ok], range(len(ok))))
    out_records = []
    out_scores = np.full((len(items), num_scores), np.nan, dtype=np.float32) if num_scores else None
    for row, (i, _, err) in enumerate(items):
        rec = base_record(dataset, i)
        if err is not None:
            rec.update(prediction=None, prediction_name=None, skipped=True, error=err)
        else:
            j = by_index[i]
            rec.update(records[j])
            pred = rec.get("prediction")
            rec["prediction_name"] = dataset.classnames[pred] if pred is not None else None
            if num_scores:
                out_scores[row] = scores[j]
                rec["top5"] = [int(k) for k in np.argsort(-scores[j], kind="stable")[:5]]
        out_records.append(rec)
    run.append(out_records, out_scores)


def summarize_run(path, worst_k=(1, 5, 10, 20), groups: str | None = None, method=None) -> dict:
    """results.json's dict from a run directory's files (used by eval and ``vlmprobe metrics``):
    the shared metrics, the list of skipped images (id, path, error) and, when the method has a
    ``summarize(records)`` hook, its own summary under ``method_summary``."""
    from ..metrics.report import results_from_run

    results = results_from_run(path, worst_k=worst_k, groups=[groups] if groups else None)
    _, records, _ = read_run(path)
    results["skipped_images"] = [{"id": r["id"], "image": r["image"], "error": r.get("error")}
                                 for r in records if r.get("skipped")]
    if method is not None and hasattr(method, "summarize"):
        results["method_summary"] = method.summarize([r for r in records if not r.get("skipped")])
    return results
