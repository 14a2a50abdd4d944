"""``run_probe``: extract (cached) features of train/val/test, probe every layer x pooling, and
write a run directory:

``OUT/config.json``              model, data, probe settings, seed, environment
``OUT/layers.json``              per feature: C, validation curve, validation and test accuracy
                                 (+ test metrics), the validation-chosen best, the references
``OUT/samples.jsonl``, ``scores.npy`` [N_test, K], ``results.json``
                                 the best feature's test predictions, like ``vlmprobe eval``'s
``OUT/accuracy_vs_layer.png``    test accuracy vs layer (references as horizontal lines)
``OUT/reference/zeroshot/``      CLIP zero-shot run on the test split (with a reference model)

Re-running with the same config rewrites the files (features come from the cache); a
different config in an existing OUT is refused. Under ``accelerate launch`` / ``torchrun`` every
process extracts a share of the features (``extract_features``) and rank 0 fits and writes.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..cache import atomic_write_json
from ..errors import VlmprobeError
from ..engine import run_config
from ..runs import RunDir
from .extract import extract_features
from .layers import probe_features
from .linear import DEFAULT_CS
from .plot import accuracy_vs_layer

DEFAULT_POOLINGS = ("last", "image-mean", "mean")


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """``SPEC@SPLIT`` -> (SPEC, SPLIT) for ``load_dataset``; ``toy:digits:SPLIT`` and plain
    specs -> (spec, None). An ``@`` followed by a path separator belongs to the path."""
    head, sep, tail = spec.rpartition("@")
    if sep and head and tail and "/" not in tail and not spec.startswith("toy:"):
        return head, tail
    return spec, None


def _data_config(train, val, test) -> dict:
    def strip(ds):
        return None if ds is None else {k: v for k, v in ds.describe().items() if k != "classnames"}

    return {"classnames": list(test.classnames), "train": strip(train), "val": strip(val), "test": strip(test)}


def _check_classes(train, val, test) -> None:
    for name, ds in (("train", train), ("val", val), ("test", test)):
        if ds is not None and not ds.labeled:
            raise VlmprobeError(f"probe: the {name} split ({ds.name}) is unlabeled; probes need labels")
    for name, ds in (("val", val), ("test", test)):
        if ds is not None and list(ds.classnames) != list(train.classnames):
            raise VlmprobeError(f"probe: the {name} split ({ds.name}) has different class names than the train "
                                f"split ({train.name}); use the same --classes for all")


def _extract_all(model, train, val, test, **kw):
    return tuple(None if ds is None else extract_features(model, ds, **kw) for ds in (train, val, test))


def run_probe(model, train, test, out: str | os.PathLike, val=None, layers="all", pooling=DEFAULT_POOLINGS,
              prompt: str | None = None, reference=None, Cs: Sequence[float] = DEFAULT_CS, backend: str = "torch",
              probe_device: str = "cpu", precision: str = "auto", seed: int = 0, val_fraction: float = 0.2,
              refit: bool = True, batch_size: int = 16, workers: int = 0, storage: str = "float16",
              cache_dir=None, progress: bool = True, worst_k=(1, 5, 10, 20)) -> dict:
    """Probe ``model`` (VLM or CLIP) on ``train``/``val``/``test`` ImageDatasets into ``out``.

    ``val=None`` carves a seeded stratified validation split from train. ``reference``: a loaded
    CLIP model whose ``embed`` probe (same protocol) and zero-shot accuracy are drawn as lines.
    Returns the content of layers.json.
    """
    from .. import distributed
    from ..classify.runner import evaluate

    _check_classes(train, val, test)
    out = Path(out)
    w = distributed.world()
    if model.kind == "vlm":
        from ..models.features import DEFAULT_PROMPT, num_lm_layers, resolve_layers, resolve_poolings

        prompt = prompt or DEFAULT_PROMPT
        layers = resolve_layers(layers, num_lm_layers(model), model.patch_layers())  # bad names fail before OUT
        pooling = resolve_poolings(list(pooling) if not isinstance(pooling, str) else pooling)
        feat_kw = dict(layers=layers, pooling=pooling, prompt=prompt)
    else:
        feat_kw = dict(layers=None if layers in (None, "all", "embed") else layers, pooling=None, prompt=None)
    if reference is not None and reference.kind != "clip":
        raise VlmprobeError(f"--reference must be a CLIP model; {reference.spec} is a {reference.kind}")
    probe_cfg = {"name": "probe", "layers": layers, "pooling": list(pooling) if model.kind == "vlm" else None,
                 "prompt": prompt, "Cs": [float(c) for c in Cs], "backend": backend,
                 "precision": precision, "refit_on_train_val": refit,
                 "val_fraction": val_fraction if val is None else None, "feature_storage": storage,
                 "standardization": "per-dimension (x - mean) / std of the training rows",
                 "objective": "mean cross-entropy + ||W||^2 / (2 C n)  (scikit-learn's C)",
                 "selection": "C and best feature by validation top-1; test scored once per feature"}
    runtime = {"batch_size": batch_size, "workers": workers, "probe_device": probe_device, "device": str(model.device)}
    config = run_config("probe", model, probe_cfg, _data_config(train, val, test), seed, runtime,
                        reference=None if reference is None else reference.spec)
    run = RunDir(out, config, num_scores=len(test.classnames))

    def prepare():
        run.lock()
        run.open()  # refuses a different config
        for name in ("samples.jsonl", "scores.partial", "scores.npy", "results.json"):
            (out / name).unlink(missing_ok=True)
        run.open()

    try:
        distributed.on_main(w, prepare)
        # every process of a launch extracts a share of the features (and runs the reference) ...
        t0 = time.perf_counter()
        common = dict(batch_size=batch_size, workers=workers, storage=storage, cache_dir=cache_dir,
                      progress=progress)
        feats = _extract_all(model, train, val, test, **feat_kw, **common)
        t_extract = time.perf_counter() - t0
        rfeats = zs = None
        if reference is not None:
            rfeats = _extract_all(reference, train, val, test, layers=None, pooling=None, **common)
            zs = evaluate(reference, test, "zeroshot", out / "reference" / "zeroshot", batch_size=batch_size,
                          seed=seed, workers=workers, progress=progress, worst_k=worst_k, command="probe --reference")
        # ... and rank 0 fits the probes and writes the files
        return distributed.on_main(w, lambda: _probe_and_write(
            model, test, run, feats, rfeats, zs, reference, t_extract, Cs=Cs, backend=backend,
            device=probe_device, precision=precision, seed=seed, val_fraction=val_fraction, refit=refit,
            worst_k=worst_k, progress=progress))
    finally:
        run.unlock()


def _probe_and_write(model, test, run, feats, rfeats, zs, reference, t_extract, worst_k, **probe_kw) -> dict:
    from ..classify.runner import summarize_run
    from ..engine import ImageInputs, RecordWriter

    out = run.path
    t0 = time.perf_counter()
    probe_kw["worst_k"] = worst_k
    report = probe_features(feats[0], feats[2], test.classnames, val=feats[1], **probe_kw)
    t_probe = time.perf_counter() - t0
    refs, ref_lines = {}, {}
    if reference is not None:
        rrep = probe_features(rfeats[0], rfeats[2], test.classnames, val=rfeats[1], names=["embed"], **probe_kw)
        refs = {"model": reference.spec, "probe": rrep.layers[0],
                "zeroshot": {"top1": zs.get("top1"), "run": str(out / "reference" / "zeroshot")}}
        ref_lines = {f"CLIP probe ({reference.spec})": rrep.layers[0]["test_accuracy"],
                     f"CLIP zero-shot ({reference.spec})": zs.get("top1")}

    best, logits = report.best, report.best_logits
    skipped = {s["id"]: s["error"] for s in feats[2].skipped}
    items = [(i, None, None if feats[2].valid[i] else skipped.get(test.samples[i].id, "unreadable"))
             for i in range(len(test))]
    preds = [{"prediction": int(np.argmax(logits[i]))} for i, _, err in items if err is None]
    records, rows = RecordWriter(ImageInputs(test), run, len(test.classnames)).records(
        items, preds, logits[[i for i, _, err in items if err is None]])
    for rec in records:
        rec["feature"] = best["name"]
    run.append(records, rows)
    run.finalize_scores()
    results = summarize_run(out, worst_k=worst_k)
    results["probe"] = {"feature": best["name"], "layer": best["layer"], "pooling": best["pooling"], "C": best["C"],
                        "val_accuracy": best["val_accuracy"], "splits": report.splits}
    run.write_results(results)

    summary = {"model": model.spec, "best": best["name"], "best_val_accuracy": best["val_accuracy"],
               "best_test_accuracy": best["test_accuracy"], "splits": report.splits, "layers": report.layers,
               "reference": refs or None,
               "features": {s: (None if f is None else {"key": f.key, "path": str(f.path), "computed": f.computed})
                            for s, f in zip(("train", "val", "test"), feats)},
               "seconds": {"extract": round(t_extract, 3), "probe": round(t_probe, 3)}}
    atomic_write_json(out / "layers.json", summary)
    accuracy_vs_layer(report.layers, out / "accuracy_vs_layer.png", reference=ref_lines, best=best["name"],
                      title=f"Linear probes: {model.spec}")
    return summary
