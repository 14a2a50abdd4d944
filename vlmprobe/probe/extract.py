"""Feature extraction over a dataset with an on-disk cache.

A cache entry lives in ``DIR/<key>/`` (``DIR`` = ``$VLMPROBE_HOME/features`` unless given),
where ``key = content_key(spec)`` and ``spec`` (``feature_spec``) holds everything that
determines the features: the model's fingerprint and description (dtype, quantisation,
adapter...), the rendered prompt, the resolved layers and poolings, the dataset (spec, split,
limit, seed, classes, a hash of every sample's id/path/label and one of every image file's size
and modification time), the image preprocessing and
the storage dtype. An entry is reused only when the key matches exactly; anything else computes
a new entry.

Layout of an entry::

    spec.json                   the spec (written first)
    chunks/FIRST-END.safetensors  some rows (``rows``, FIRST..END-1) of every feature + a validity
                                flag, each written to a temporary name and renamed (never half
                                a chunk)
    features/<name>.npy         [N, D] per feature (float16 or float32), after the last chunk
    labels.npy, valid.npy       [N] int64 labels, [N] bool (False: unreadable image, NaN row)
    meta.json                   names, files, dims, sample ids, skipped images
    COMPLETE                    marker, written last; only then are the chunks deleted

Extraction runs through the engine's sample loop (``vlmprobe.engine.process``); the processes of
a launch (``accelerate launch`` / ``torchrun``) each compute a share of the rows not yet in a
chunk, then rank 0 assembles them. A killed extraction resumes with the missing rows (any number
of processes); one model forward per batch computes
every requested layer and pooling (``VisionModel.features``). One launch writes an entry at a
time: its rank 0 holds ``DIR/<key>.lock`` (``flock``) from opening the entry to COMPLETE, and
another launch (or process) wanting the same entry waits, then reuses it.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import atomic_write, atomic_write_json, content_key, file_lock, home_dir
from ..errors import VlmprobeError

FORMAT_VERSION = 1
STORAGE_DTYPES = {"float16": np.float16, "float32": np.float32}


def _model_identity(model) -> dict:
    from ..runs import describe_model

    return {"fingerprint": getattr(model, "fingerprint", None), "describe": describe_model(model)}


def dataset_identity(dataset) -> dict:
    """Spec/split/limit/seed/classes (``describe()``) + a hash of the exact sample list + a key
    of the image files' sizes and modification times (an image replaced in place)."""
    rows = [[s.id, s.image, int(s.label)] for s in dataset.samples]
    return {"describe": dataset.describe(), "samples": content_key(rows), "num_samples": len(rows),
            "files": dataset.files_fingerprint()}


def feature_spec(model, dataset, layers, pooling, prompt: str | None, storage: str) -> dict:
    """Everything that determines a cache entry (see module docstring)."""
    spec = {"format": FORMAT_VERSION, "model": _model_identity(model), "data": dataset_identity(dataset),
            "preprocessing": model.preprocessing(), "storage": storage}
    opts = model.feature_options(layers, pooling, prompt)  # validated, canonical (VLM: prompt defaulted)
    question = opts.get("prompt")
    spec.update(layers=opts["layers"], pooling=opts["pooling"],
                prompt=None if question is None else {"question": question,
                                                      "rendered": model.render(question, image=True)})
    return spec


@dataclass
class FeatureSet:
    """A finished cache entry: ``get(name)`` -> [N, D] array (memory-mapped)."""

    path: Path
    spec: dict
    names: list[str]
    labels: np.ndarray  # [N] int64
    ids: list[str]
    valid: np.ndarray  # [N] bool: False for skipped (unreadable) images (their rows are NaN)
    skipped: list[dict]
    files: dict
    computed: int = 0  # rows computed by this call (0: loaded from cache)

    @property
    def key(self) -> str:
        return self.path.name

    def get(self, name: str) -> np.ndarray:
        if name not in self.files:
            raise VlmprobeError(f"feature {name!r} is not in {self.path} (has: {', '.join(self.names)})")
        return np.load(self.path / "features" / self.files[name], mmap_mode="r")

    @classmethod
    def load(cls, path: Path, computed: int = 0) -> "FeatureSet":
        meta = json.loads((path / "meta.json").read_text())
        spec = json.loads((path / "spec.json").read_text())
        return cls(path, spec, meta["names"], np.load(path / "labels.npy"), meta["ids"], np.load(path / "valid.npy"),
                   meta["skipped"], meta["files"], computed)


def _chunks(path: Path) -> list[tuple[int, int, Path]]:
    out = []
    for f in (path / "chunks").glob("*.safetensors"):
        try:
            a, b = (int(x) for x in f.stem.split("-"))
        except ValueError:
            continue
        out.append((a, b, f))
    return sorted(out)


def _chunk_rows(a: int, b: int, f: Path) -> np.ndarray:
    """The dataset rows a chunk holds (its ``rows`` tensor; older chunks: ``a..b-1``)."""
    from safetensors import safe_open

    with safe_open(str(f), "np") as fh:
        return fh.get_tensor("rows") if "rows" in fh.keys() else np.arange(a, b)


def _done_rows(path: Path) -> set[int]:
    """Rows already written by any process (unreadable chunks are removed)."""
    done: set[int] = set()
    for a, b, f in _chunks(path):
        try:
            done.update(int(i) for i in _chunk_rows(a, b, f))
        except Exception:  # a chunk cut short by a crash outside the rename protocol
            f.unlink()
    return done


class ChunkWriter:
    """Engine writer for the feature cache: buffers rows (index, {name: [D]} or None, error)
    and writes ``chunks/FIRST-LAST+1.safetensors`` (features, ``valid`` flags and the ``rows``
    they belong to) every ``chunk`` rows and on ``close``; each file is written to a temporary
    name and renamed (never half a chunk)."""

    def __init__(self, path: Path, dataset, model, kw: dict, dtype, chunk: int):
        self.path, self.dataset, self.model, self.kw, self.dtype, self.chunk = path, dataset, model, kw, dtype, chunk
        self.buffer: list[tuple[int, dict | None, str | None]] = []

    def write(self, items, records, feats) -> None:
        ok = [i for i, _, err in items if err is None]
        rows = {i: {k: t[j] for k, t in feats.items()} for j, i in enumerate(ok)} if ok else {}
        self.buffer += [(i, rows.get(i), err) for i, _, err in items]
        if len(self.buffer) >= self.chunk:
            self.flush()

    def close(self) -> None:
        self.flush()

    def flush(self) -> None:
        if self.buffer:
            _write_chunk(self.path, self.buffer, self.dataset, self.model, self.kw, self.dtype)
            self.buffer = []


class FeatureMethod:
    """Feature extraction as an engine method: ``model.features`` of a batch (no records)."""

    name = "features"

    def __init__(self, kw: dict):
        self.kw = kw

    def run_batch(self, model, items, images, rng_for=None):
        return [{} for _ in images], model.features(images, **self.kw)


def _write_chunk(path: Path, buffer: list, dataset, model, kw: dict, dtype) -> None:
    """Rows ``buffer`` -> ``chunks/FIRST-LAST+1.safetensors`` (atomic)."""
    from safetensors.numpy import save_file

    start, end = buffer[0][0], buffer[-1][0] + 1
    template = next((f for _, f, _ in buffer if f is not None), None)
    if template is None:  # every image of the chunk unreadable: learn the feature shapes from a blank one
        from PIL import Image

        template = {k: t[0] for k, t in model.features([Image.new("RGB", (64, 64))], **kw).items()}
    names = list(template)
    tensors = {f"f/{k}": np.full((len(buffer), template[k].shape[0]), np.nan, dtype=dtype) for k in names}
    valid = np.zeros(len(buffer), dtype=np.uint8)
    errors = []
    for row, (i, feats, err) in enumerate(buffer):
        if feats is None:
            s = dataset.samples[i]
            errors.append({"id": s.id, "image": s.image, "error": err})
            continue
        valid[row] = 1
        for k in names:
            tensors[f"f/{k}"][row] = feats[k].float().cpu().numpy()
    tensors["valid"] = valid
    tensors["rows"] = np.array([i for i, _, _ in buffer], dtype=np.int64)
    final = path / "chunks" / f"{start:09d}-{end:09d}.safetensors"
    atomic_write(final, lambda tmp: save_file(tensors, str(tmp), metadata={"errors": json.dumps(errors),
                                                                            "names": json.dumps(names)}))


def _finalize(path: Path, dataset, storage: str) -> None:
    """Chunks -> one .npy per feature + meta.json, then the COMPLETE marker, then cleanup."""
    from safetensors import safe_open

    chunks = _chunks(path)
    n = len(dataset)
    rows = [_chunk_rows(a, b, f) for a, b, f in chunks]
    seen = np.bincount(np.concatenate(rows), minlength=n) if rows else np.zeros(n, np.int64)
    if len(seen) != n or (seen != 1).any():
        raise VlmprobeError(f"{path}: extraction incomplete or inconsistent ({int((seen > 0).sum())}/{n} rows, "
                            f"{int((seen > 1).sum())} twice)")
    with safe_open(str(chunks[0][2]), "np") as f:
        names = json.loads(f.metadata()["names"])
        dims = {k: f.get_slice(f"f/{k}").get_shape()[1] for k in names}
    files = {k: k.replace(":", "--").replace("/", "_") + ".npy" for k in names}
    (path / "features").mkdir(exist_ok=True)
    arrays = {k: np.lib.format.open_memmap(path / "features" / files[k], mode="w+", dtype=STORAGE_DTYPES[storage],
                                           shape=(n, dims[k])) for k in names}
    valid = np.zeros(n, dtype=bool)
    skipped = []
    for (a, b, f), idx in zip(chunks, rows):
        with safe_open(str(f), "np") as fh:
            for k in names:
                arrays[k][idx] = fh.get_tensor(f"f/{k}")
            valid[idx] = fh.get_tensor("valid").astype(bool)
            skipped += json.loads(fh.metadata()["errors"])
    for arr in arrays.values():
        arr.flush()
    del arrays
    np.save(path / "labels.npy", np.array([s.label for s in dataset.samples], dtype=np.int64))
    np.save(path / "valid.npy", valid)
    atomic_write_json(path / "meta.json", {"names": names, "files": files, "dims": dims, "num_samples": n,
                                           "ids": [s.id for s in dataset.samples], "skipped": skipped})
    atomic_write_json(path / "COMPLETE", {"num_samples": n})
    shutil.rmtree(path / "chunks", ignore_errors=True)


def extract_features(model, dataset, layers="all", pooling="last", prompt: str | None = None,
                     batch_size: int = 16, workers: int = 0, storage: str = "float16",
                     cache_dir: str | os.PathLike | None = None, chunk_batches: int = 8,
                     progress: bool = True, features_kw: dict | None = None) -> FeatureSet:
    """Features of every image of ``dataset`` for ``model`` (CLIP or VLM), from the cache when
    an entry with the same key is complete, else computed (resuming a partial entry).

    VLM: ``layers`` (``all`` / list, see ``models.features.resolve_layers``), ``pooling`` (one or
    more of last, image-mean, mean) and ``prompt`` (user question; default the paper's) -> names
    ``lm.i:POOL``, ``vision``, ``projector``. CLIP: passed to ``model.features`` (``embed`` and,
    for transformers CLIP, ``vision.i``). Rows of unreadable images are NaN and flagged invalid.
    ``chunk_batches`` batches are written per chunk (the unit of resumption).
    """
    from .. import distributed
    from ..engine import ImageInputs, process, share

    if storage not in STORAGE_DTYPES:
        raise VlmprobeError(f"unknown feature storage {storage!r}: float16 or float32")
    spec = feature_spec(model, dataset, layers, pooling, prompt, storage)
    path = Path(cache_dir) if cache_dir else home_dir() / "features"
    path = path / content_key(spec)
    if (path / "COMPLETE").exists():
        return FeatureSet.load(path)
    w = distributed.world()
    spec = json.loads(json.dumps(spec, default=str))
    lock = ExitStack()  # rank 0 holds the entry's lock (``DIR/<key>.lock``) while its launch writes

    def open_entry() -> bool:
        lock.enter_context(file_lock(path.with_name(path.name + ".lock"),
                                     waiting=f"waiting for another process extracting features into {path}"))
        if (path / "COMPLETE").exists():  # the process we waited for finished it
            return True
        _prepare(path, spec)
        return False

    with lock:
        if distributed.on_main(w, open_entry):
            return FeatureSet.load(path)
        kw = {**(features_kw or {}), **model.feature_options(layers, pooling, prompt)}
        n = len(dataset)
        todo = sorted(set(range(n)) - _done_rows(path))
        distributed.barrier(w)  # every process has read the finished rows before anyone writes
        mine = share(todo, w, batch_size)
        writer = ChunkWriter(path, dataset, model, kw, STORAGE_DTYPES[storage], max(1, batch_size * chunk_batches))
        process(model, FeatureMethod(kw), ImageInputs(dataset), mine, writer, batch_size=batch_size,
                workers=workers, progress=progress and w.main, total=n, initial=n - len(todo), scale=w.size,
                desc=f"features {dataset.name}")
        distributed.barrier(w)
        distributed.on_main(w, lambda: _finalize(path, dataset, storage))
    return FeatureSet.load(path, computed=len(todo))


def _prepare(path: Path, spec: dict) -> None:
    """Create the entry and its spec.json (or check that an existing one matches its key)."""
    (path / "chunks").mkdir(parents=True, exist_ok=True)
    spec_file = path / "spec.json"
    if spec_file.exists() and json.loads(spec_file.read_text()) != spec:
        raise VlmprobeError(f"{spec_file} does not match its key; delete {path}")
    if not spec_file.exists():
        atomic_write_json(spec_file, spec)
