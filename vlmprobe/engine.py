"""The one sample loop: every per-sample job (classification methods, ImageWikiQA scorers,
feature extraction) runs through ``process``; ``run_job`` wraps it with a run directory.

A job is a *method* object (the method protocol)::

    name; config() -> dict; setup(model, data); num_scores(data) -> K or 0/None;
    image_transform(model) (optional, runs in DataLoader workers);
    run_batch(model, items, images, rng_for) -> (records [B], scores [B, K] or None);
    summarize(records) (optional, results.json's ``method_summary``)

over *inputs* (a sequence of items indexed 0..N-1: ``ImageInputs`` for an ImageDataset, or
``wikiqa.runner.QuestionInputs``) that know how to load item i's image (``load_image``), its
base record, the fields of a skipped record and how to complete a computed one.

``process`` loads images with DataLoader workers (``data.batches.image_batches``): an
unreadable image never reaches the method but becomes a ``skipped`` record with its error
(counted in results, NaN score row); each batch goes to a *writer* (``RecordWriter``:
records + score rows into a run directory, crash-safely; the feature cache has its own).

Under a launch, a failure on one process reaches the others between two batches
(``distributed.check_peers``) or at a barrier; the command's ``distributed.all_or_none``
boundary then fails it on every process.

``run_job`` = lock the run directory, open/resume it, split the unfinished indices among the
launch's processes (contiguous blocks of the sorted unfinished list), ``process`` this
process's block into its shard (or straight into samples.jsonl for a single process), merge,
summarize, write results.json and timing.json (``runs`` describes the files).

A model answered by a server (``models.api``) offers the interface's optional hook
``server_session()`` (None for local models); the loop drives it: ``start_batch(n, order)`` /
``finish_batch()`` around ``run_batch`` (per-sample usage, or ``api_error``: the sample becomes a
skipped record that the next run retries; ``request_fields``), ``attach_run(DIR)`` (its request
journal), ``batches_in_flight(batch_size)`` (that many batches are computed at once, in threads,
so the model keeps ``--concurrency`` requests in flight; records are still written in batch
order, ``ordered``), ``close()`` and ``--dry-run`` (``dry_run``: the same loop, nothing sent or
written).

Per-sample randomness comes from ``rng_for(item)``, seeded by (run seed, item id): results do
not depend on batch size, resuming or the number of processes.
"""
from __future__ import annotations

import gc
import os
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from .progress import bar as tqdm

from . import distributed
from .cache import atomic_write_json
from .data.batches import image_batches
from .runs import RunDir, describe_model, environment


def rng_factory(seed: int) -> Callable:
    """item -> numpy Generator seeded by (seed, crc32(item.id))."""
    return lambda item: np.random.default_rng([seed, zlib.crc32(item.id.encode())])


def run_config(command: str, model, method_config: dict, data: dict, seed: int, runtime: dict, **extra) -> dict:
    """A run's config.json: command, method, model (``describe_model``), data, seed, extra
    sections, then the volatile ``runtime`` (+ ``world_size``) and ``environment``."""
    w = distributed.world()
    return {"command": command, "method": method_config, **extra, "model": describe_model(model), "data": data,
            "seed": seed, "runtime": {**runtime, "world_size": w.size}, "environment": environment()}


class ImageInputs:
    """An ``ImageDataset`` as engine inputs (classification and probe records)."""

    def __init__(self, dataset):
        self.data = dataset
        self.name = dataset.name

    def __len__(self) -> int:
        return len(self.data)

    def item(self, i: int):
        return self.data.samples[i]

    def load_image(self, i: int):
        return self.data.load_image(i)

    def base_record(self, i: int) -> dict:
        s = self.data.samples[i]
        labeled = s.label >= 0
        rec = {"id": s.id, "image": s.image, "label": s.label if labeled else None,
               "label_name": self.data.classnames[s.label] if labeled else None}
        if s.meta:
            rec["meta"] = s.meta
        return rec

    skip_fields = {"prediction": None, "prediction_name": None}

    def complete(self, rec: dict, scores: np.ndarray | None) -> None:
        """Name the prediction; top-5 class indices from the score row."""
        pred = rec.get("prediction")
        rec["prediction_name"] = self.data.classnames[pred] if pred is not None else None
        if scores is not None and pred is not None:  # no top-5 from a NaN/inf score row
            rec["top5"] = [int(k) for k in np.argsort(-scores, kind="stable")[:5]]


class RecordWriter:
    """Builds each item's final record (base + method fields, or a skip) and appends records and
    score rows to ``sink`` (``RunDir`` or a ``ShardLog``; shard lines carry the index and a
    volatile ``rank``)."""

    def __init__(self, inputs, sink, num_scores: int | None, rank: int | None = None):
        self.inputs, self.sink, self.num_scores, self.rank = inputs, sink, num_scores, rank

    def records(self, items, records, scores) -> tuple[list[dict], np.ndarray | None]:
        """items: [(index, image or None, error or None)]; records/scores: the method's output
        for the items without error, in order."""
        out, j = [], 0
        rows = np.full((len(items), self.num_scores), np.nan, dtype=np.float32) if self.num_scores else None
        for row, (i, _, err) in enumerate(items):
            rec = self.inputs.base_record(i)
            if err is not None:  # a message, or a dict of fields (an API failure: error + api_error)
                rec.update(self.inputs.skip_fields, skipped=True, **(err if isinstance(err, dict) else {"error": err}))
            else:
                rec.update(records[j])
                if rows is not None:
                    rows[row] = scores[j]
                self.inputs.complete(rec, rows[row] if rows is not None else None)
                j += 1
            out.append(rec)
        return out, rows

    def write(self, items, records, scores) -> None:
        out, rows = self.records(items, records, scores)
        if self.rank is None:
            self.sink.append(out, rows)
        else:
            self.sink.append([{"index": i, "record": {**rec, "rank": self.rank}} for (i, _, _), rec in zip(items, out)],
                             rows)

    def close(self) -> None:
        pass


def server_session(model):
    """The model's server hook (``VisionModel.server_session``), or None for a local model."""
    hook = getattr(model, "server_session", None)
    return hook() if hook is not None else None


@contextmanager
def frozen_heap():
    """Leave the objects alive when the loop starts (imported libraries, the model's modules:
    about a million with torch and transformers) out of the cyclic garbage collector's passes
    while the loop runs (``gc.freeze``), and give them back after (``gc.unfreeze``). A full pass
    over them takes 0.2-0.3 s on a 2-core CPU and stops every thread, the requests in flight
    included (``benchmarks/api_concurrency.py``); objects made in the loop are collected as
    usual. Inside a caller's own freeze nothing changes."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def ordered(fn: Callable, items, depth: int):
    """``fn(x)`` for each x of ``items``, yielded in order; ``depth`` > 1: up to ``depth`` calls
    run at once in threads (the next ones start while an earlier result is consumed). An
    exception is raised at its item, after the earlier items were yielded."""
    if depth <= 1:
        for x in items:
            yield fn(x)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pending = deque()
    pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="vlmprobe-batch")
    try:
        for x in items:
            pending.append(pool.submit(fn, x))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)


def process(model, method, inputs, indices: Sequence[int], writer, batch_size: int = 32, workers: int = 0,
            rng_for: Callable | None = None, transform: Callable | None = None, progress: bool = True,
            total: int | None = None, initial: int = 0, scale: int = 1, desc: str = "", unit: str = "img") -> int:
    """THE per-sample loop: load ``indices`` of ``inputs`` in batches (``workers`` DataLoader
    processes, ``transform`` applied there), run ``method.run_batch`` on the readable ones and
    hand every batch to ``writer.write(items, records, scores)`` in order. The bar counts
    ``scale`` items per item done here (all processes' rate, from this one's); returns items
    done. A server-answered model computes ``batches_in_flight`` batches at once."""
    done = 0
    remote = server_session(model)
    bar = tqdm(total=total if total is not None else len(indices), initial=initial, desc=desc, unit=unit,
               disable=not progress, dynamic_ncols=True)

    def compute(numbered):
        order, items = numbered
        distributed.check_peers()  # another process of the launch failed: stop now, not at the next barrier
        ok = [(i, im) for i, im, err in items if err is None]
        records, scores = [], None
        if ok:
            if remote is not None:  # per-sample usage, api_error, budgets
                remote.start_batch(len(ok), order)
            records, scores = method.run_batch(model, [inputs.item(i) for i, _ in ok], [im for _, im in ok], rng_for)
            if remote is not None:
                items, records, scores = request_fields(items, records, scores, remote.finish_batch())
        return items, records, scores

    depth = remote.batches_in_flight(batch_size) if remote is not None else 1
    results = ordered(compute, enumerate(image_batches(inputs, indices, batch_size, workers, transform)), depth)
    with frozen_heap():
        try:
            for items, records, scores in results:
                writer.write(items, records, scores)
                done += len(items)
                bar.update(min(len(items) * scale, bar.total - bar.n) if bar.total else len(items))
        except BaseException:
            if remote is not None:  # a budget, a refused key, Ctrl-C: nothing more is sent for the batches ahead
                remote.abort()
            raise
        finally:
            results.close()  # the batches ahead finish (their requests refused) before the model closes
            if remote is not None:
                remote.close()
    writer.close()
    bar.close()
    return done


def request_fields(items, records, scores, fields: list[dict]):
    """Merge an API model's per-sample fields (``usage``, ``served_model``...) into the batch's
    records; a sample whose request failed (``api_error``) becomes a skipped item (no
    prediction, NaN score row) marked ``api_error`` so the next run retries it."""
    out_items, out_records, rows, j = [], [], [], 0
    for i, im, err in items:
        if err is not None:
            out_items.append((i, im, err))
            continue
        extra = fields[j] if j < len(fields) else {}
        if extra.get("api_error"):
            out_items.append((i, None, {"error": f"api_error: {extra['api_error']}", "api_error": True}))
        else:
            out_items.append((i, im, None))
            out_records.append({**records[j], **extra})
            if scores is not None:
                rows.append(scores[j])
        j += 1
    return out_items, out_records, (np.stack(rows) if rows else None) if scores is not None else None


def share(todo: Sequence[int], w: distributed.World, batch_size: int = 1) -> list[int]:
    """This process's contiguous block of the sorted unfinished indices, cut at multiples of
    ``batch_size`` (so a fresh run's batches are the batches one process would form)."""
    todo = sorted(todo)
    nb = -(-len(todo) // max(1, batch_size))
    lo, hi = nb * w.rank // w.size, nb * (w.rank + 1) // w.size
    return todo[lo * batch_size: hi * batch_size]


def run_job(model, method, inputs, out: str | os.PathLike, config: dict, num_scores: int | None,
            summarize: Callable[[Path], dict], batch_size: int = 32, workers: int = 0, seed: int = 0,
            progress: bool = True, unit: str = "sample") -> dict:
    """Run ``method`` over ``inputs`` into run directory ``out`` (resumed if it holds the same
    ``config``), with every process of the launch; returns results.json's dict (on every rank).

    ``summarize(path) -> dict`` computes results.json from the finished files (rank 0)."""
    w = distributed.world()
    remote = server_session(model)  # a server-answered model (``models.api``): journal, budgets, dry run
    if remote is not None and w.size > 1:
        from .errors import VlmprobeError

        raise VlmprobeError(f"{model.spec}: an API model runs in one process (requests in flight: --concurrency), "
                            "not under a multi-process launch")
    ids = [inputs.item(i).id for i in range(len(inputs))]
    run = RunDir(out, config, num_scores, sample_ids=ids)  # a resume on other samples is refused
    if remote is not None and remote.dry_run:
        return dry_run(model, method, inputs, run, batch_size, workers, seed)
    launch = distributed.launch_id(w)

    def open_run():
        run.lock(launch)
        n_main = run.open()
        if remote is not None:
            remote.attach_run(run.path)
        return n_main, bool(run.shards()) or bool(run.retryable())

    try:
        return _run_locked(model, method, inputs, run, launch, open_run, summarize, w, batch_size=batch_size,
                           workers=workers, seed=seed, progress=progress, unit=unit)
    finally:  # an exception (or Ctrl-C) inside this process must not keep the directory locked
        run.unlock()


def _run_locked(model, method, inputs, run: RunDir, launch: str, open_run, summarize, w, batch_size, workers, seed,
                progress, unit) -> dict:
    n_main, has_shards = distributed.on_main(w, open_run)
    sharded = w.sharded or has_shards
    todo = sorted(set(range(len(inputs))) - run.finished()) if sharded else list(range(n_main, len(inputs)))
    distributed.barrier(w)  # every rank has read the finished set before anyone writes
    mine = share(todo, w, batch_size)
    sink = run.shard(launch, w.rank) if sharded and mine else run
    writer = RecordWriter(inputs, sink, run.num_scores, rank=w.rank if sharded else None)
    transform = method.image_transform(model) if hasattr(method, "image_transform") else None
    t0 = time.perf_counter()
    try:
        process(model, method, inputs, mine, writer, batch_size=batch_size, workers=workers,
                rng_for=rng_factory(seed), transform=transform, progress=progress and w.main, total=len(inputs),
                initial=len(inputs) - len(todo), scale=w.size, desc=f"{method.name} {inputs.name}",
                unit="img" if unit == "sample" else unit)
    finally:
        if sink is not run:
            sink.release()
    elapsed = time.perf_counter() - t0
    distributed.barrier(w)
    elapsed = max(distributed.gather(w, elapsed))

    def finish():
        if sharded:
            run.merge([inputs.item(i).id for i in range(len(inputs))])
        run.finalize_scores()
        results = summarize(run.path)
        remote = server_session(model)
        if remote is not None:  # a server-answered model: token totals, unanswered samples
            results["api"] = remote.results(run.records())
        run.write_results(results)
        if todo or not (run.path / "timing.json").exists():  # a re-run keeps the timing of the run that computed it
            atomic_write_json(run.path / "timing.json", timing(elapsed, len(todo), w.size, unit))
        return results

    return distributed.on_main(w, finish)


class _Discard:
    """A writer that keeps nothing (``--dry-run``)."""

    def write(self, items, records, scores) -> None:
        pass

    def close(self) -> None:
        pass


def dry_run(model, method, inputs, run: RunDir, batch_size: int, workers: int, seed: int) -> dict:
    """``--dry-run`` of a server-answered model: the same loop over the samples the real run
    would compute -- the run directory checked as the real run checks it (a different config or
    other samples are refused with the same error), its finished samples (samples.jsonl and
    pending shards, ``api_error`` records excepted) left out -- with a model that counts and
    estimates instead of sending (answers journaled there count as sent) and a writer that
    keeps nothing. Returns ``{"dry_run": model.spending(), "samples_to_compute": N}``; nothing
    is written."""
    remote = server_session(model)
    finished = run.finished() if run.validate() else set()
    remote.attach_run(run.path, read_only=True)
    todo = [i for i in range(len(inputs)) if i not in finished]
    transform = method.image_transform(model) if hasattr(method, "image_transform") else None
    process(model, method, inputs, todo, _Discard(), batch_size=batch_size, workers=workers, rng_for=rng_factory(seed),
            transform=transform, progress=False)
    return {"dry_run": model.spending(), "samples_to_compute": len(todo)}


def timing(seconds: float, computed: int, world_size: int, unit: str = "sample") -> dict:
    """timing.json: wall seconds of the slowest process, items computed, rates."""
    out = {"seconds": seconds, "samples_computed": computed,
           "samples_per_second": computed / seconds if seconds else None, "world_size": world_size}
    if unit != "sample":
        out.update({f"{unit}s_computed": computed, f"seconds_per_{unit}": seconds / computed if computed else None})
    return out
