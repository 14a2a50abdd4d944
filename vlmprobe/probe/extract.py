"""Feature extraction over a dataset with an on-disk cache.

A cache entry lives in ``DIR/<key>/`` (``DIR`` = ``$VLMPROBE_HOME/features`` unless given),
where ``key = content_key(spec)`` and ``spec`` (``feature_spec``) holds everything that
determines the features: the model's fingerprint and description (dtype, quantisation,
adapter...), the rendered prompt, the resolved layers and poolings, the dataset (spec, split,
limit, seed, classes and a hash of every sample's id/path/label), the image preprocessing and
the storage dtype. An entry is reused only when the key matches exactly; anything else computes
a new entry.

Layout of an entry::

    spec.json                   the spec (written first)
    chunks/START-END.safetensors  rows [START, END) of every feature + a validity flag, each
                                written to a temporary name and renamed (never half a chunk)
    features/<name>.npy         [N, D] per feature (float16 or float32), after the last chunk
    labels.npy, valid.npy       [N] int64 labels, [N] bool (False: unreadable image, NaN row)
    meta.json                   names, files, dims, sample ids, skipped images
    COMPLETE                    marker, written last; only then are the chunks deleted

A killed extraction resumes from the first missing chunk; one model forward per batch computes
every requested layer and pooling (``VisionModel.features``).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..cache import atomic_write_json, content_key, home_dir
from ..errors import VlmprobeError

FORMAT_VERSION = 1
STORAGE_DTYPES = {"float16": np.float16, "float32": np.float32}


def _model_identity(model) -> dict:
    desc = {k: v for k, v in model.describe().items() if k not in ("device", "device_map")}
    return {"fingerprint": getattr(model, "fingerprint", None), "describe": desc}


def dataset_identity(dataset) -> dict:
    """Spec/split/limit/seed/classes (``describe()``) + a hash of the exact sample list."""
    rows = [[s.id, s.image, int(s.label)] for s in dataset.samples]
    return {"describe": dataset.describe(), "samples": content_key(rows), "num_samples": len(rows)}


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


def _done_prefix(path: Path) -> int:
    """End of the contiguous run of finished chunks from row 0 (stray chunks are removed)."""
    end = 0
    for a, b, f in _chunks(path):
        if a == end:
            end = b
        else:
            f.unlink()
    return end


def _write_chunk(path: Path, buffer: list, dataset, model, kw: dict, dtype) -> None:
    """Rows ``buffer`` (consecutive indices) -> ``chunks/START-END.safetensors`` (atomic)."""
    from safetensors.numpy import save_file

    start, end = buffer[0][0], buffer[-1][0] + 1
    template = next((f for _, f, _ in buffer if f is not None), None)
    if template is None:  # every image of the chunk unreadable: learn the feature shapes from a blank one
        from PIL import Image

        template = {k: t[0] for k, t in model.features([Image.new("RGB", (64, 64))], **kw).items()}
    names = list(template)
    tensors = {f"f/{k}": np.full((end - start, template[k].shape[0]), np.nan, dtype=dtype) for k in names}
    valid = np.zeros(end - start, dtype=np.uint8)
    errors = []
    for i, feats, err in buffer:
        if feats is None:
            s = dataset.samples[i]
            errors.append({"id": s.id, "image": s.image, "error": err})
            continue
        valid[i - start] = 1
        for k in names:
            tensors[f"f/{k}"][i - start] = feats[k].float().numpy()
    tensors["valid"] = valid
    final = path / "chunks" / f"{start:09d}-{end:09d}.safetensors"
    tmp = final.with_name(final.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"errors": json.dumps(errors), "names": json.dumps(names)})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def _finalize(path: Path, dataset, storage: str) -> None:
    """Chunks -> one .npy per feature + meta.json, then the COMPLETE marker, then cleanup."""
    from safetensors import safe_open

    chunks = _chunks(path)
    n = len(dataset)
    if not chunks or chunks[-1][1] != n:
        raise VlmprobeError(f"{path}: extraction incomplete ({chunks[-1][1] if chunks else 0}/{n} rows)")
    with safe_open(str(chunks[0][2]), "np") as f:
        names = json.loads(f.metadata()["names"])
        dims = {k: f.get_slice(f"f/{k}").get_shape()[1] for k in names}
    files = {k: k.replace(":", "--").replace("/", "_") + ".npy" for k in names}
    (path / "features").mkdir(exist_ok=True)
    arrays = {k: np.lib.format.open_memmap(path / "features" / files[k], mode="w+", dtype=STORAGE_DTYPES[storage],
                                           shape=(n, dims[k])) for k in names}
    valid = np.zeros(n, dtype=bool)
    skipped = []
    for a, b, f in chunks:
        with safe_open(str(f), "np") as fh:
            for k in names:
                arrays[k][a:b] = fh.get_tensor(f"f/{k}")
            valid[a:b] = fh.get_tensor("valid").astype(bool)
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
    from ..data.batches import image_batches

    if storage not in STORAGE_DTYPES:
        raise VlmprobeError(f"unknown feature storage {storage!r}: float16 or float32")
    spec = feature_spec(model, dataset, layers, pooling, prompt, storage)
    path = Path(cache_dir) if cache_dir else home_dir() / "features"
    path = path / content_key(spec)
    if (path / "COMPLETE").exists():
        return FeatureSet.load(path)
    (path / "chunks").mkdir(parents=True, exist_ok=True)
    spec = json.loads(json.dumps(spec, default=str))
    spec_file = path / "spec.json"
    if spec_file.exists() and json.loads(spec_file.read_text()) != spec:
        raise VlmprobeError(f"{spec_file} does not match its key; delete {path}")
    if not spec_file.exists():
        atomic_write_json(spec_file, spec)
    kw = {**(features_kw or {}), **model.feature_options(layers, pooling, prompt)}
    start = _done_prefix(path)
    n = len(dataset)
    chunk = max(1, batch_size * chunk_batches)
    bar = tqdm(total=n, initial=start, desc=f"features {dataset.name}", unit="img", disable=not progress)
    buffer: list[tuple[int, dict | None, str | None]] = []  # (index, {name: [D]} or None, error)
    computed = 0
    if start < n:
        loader = image_batches(dataset, range(start, n), batch_size, workers)
        for items in loader:
            ok = [(i, im) for i, im, err in items if err is None]
            feats = model.features([im for _, im in ok], **kw) if ok else {}
            rows = {i: {k: t[j] for k, t in feats.items()} for j, (i, _) in enumerate(ok)}
            buffer += [(i, rows.get(i), err) for i, _, err in items]
            computed += len(items)
            bar.update(len(items))
            if len(buffer) >= chunk or buffer[-1][0] == n - 1:
                _write_chunk(path, buffer, dataset, model, kw, STORAGE_DTYPES[storage])
                buffer = []
    bar.close()
    _finalize(path, dataset, storage)
    return FeatureSet.load(path, computed=computed)
