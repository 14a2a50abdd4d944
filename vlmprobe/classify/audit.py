"""Order and batch audit of a finished run (``vlmprobe audit RUN``): re-run a seeded sample of
its images through the same engine (``runner.evaluate``: the one sample loop) with one knob
changed at a time, and compare each re-run with the run's own records and score rows.

Knobs (each a run directory under ``AUDIT_DIR/<knob>``):

- ``batch1``: batch size 1 instead of the run's (``config.runtime.batch_size``), same order;
- ``order``: the sampled images in a seeded random order, the run's batch size;
- ``candidates``: each image's recorded candidates (closed-world generation, or likelihood: its
  offered classes, all K when none were sampled) in a seeded random permutation, the run's batch
  size (``candidates.CandidateRule.fixed``); not applicable to open-world generation.

Per knob: ``flips`` (every sample whose prediction differs from the run's: id, before, after),
``max_abs_score_diff`` (largest |score difference| over the finite entries of the score rows,
matched by class index; None for methods without scores), ``responses_changed`` (generation:
answers whose text differs). Per-sample randomness is seeded by (run seed, sample id), so
neither order nor batch size changes what is asked: a deterministic model with an exact engine
gives zero flips (and score differences at floating-point level).

The model comes from config.json's model spec (device and dtype from the run's config unless
given); the method is rebuilt from config.json's method section (``method_options``); the images
from the run's records (path, label, id), so on-the-fly corrupted runs are refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VlmprobeError

KNOBS = ("batch1", "order", "candidates")
AUDITED = ("generate", "likelihood")


def _prompt(cfg: dict):
    p = cfg.get("prompt") or {}
    if not isinstance(p, dict):
        return p, False
    return (p.get("name") if p.get("source") == "builtin" else p.get("source")), bool(p.get("cot"))


def _label_space(cfg: dict):
    ls = cfg.get("label_space")
    if not isinstance(ls, dict) or ls.get("source") in (None, "dataset class_subset"):
        return None
    return f"{ls['source']}@{ls['k']}" if ls.get("k") else ls["source"]


def _candidates(cfg: dict) -> str:
    c = cfg.get("candidates")
    return f"hard:{c['run']}" if isinstance(c, dict) and c.get("rule") == "hard" else "random"


def method_options(cfg: dict) -> dict:
    """Method keyword arguments from a run's ``config.method`` (generate / likelihood)."""
    name = cfg.get("name")
    prompt, cot = _prompt(cfg)
    nc = cfg.get("num_candidates")
    common = {"prompt": prompt or "default", "label_space": _label_space(cfg), "candidates": _candidates(cfg),
              "num_candidates": None if nc in (None, "all") else nc}
    if name == "generate":
        return {**common, "closed_world": bool(cfg.get("closed_world")), "shuffle": bool(cfg.get("shuffle", True)),
                "cot": cot, "max_new_tokens": cfg.get("max_new_tokens"), "match": cfg.get("match", "substring")}
    if name == "likelihood":
        return {**common, "answer_prefix": cfg.get("answer_prefix"), "reduction": cfg.get("reduction", "sum"),
                "scoring": cfg.get("scoring", "fast"), "include_eos": bool(cfg.get("include_eos")),
                "article": cfg.get("article", "none")}
    raise VlmprobeError(f"vlmprobe audit re-runs {' and '.join(AUDITED)} runs (this run's method: {name!r})")


def _dataset(run, ids: list[str]):
    from ..data.datasets import ImageDataset, Sample

    data_cfg = run.config.get("data") or {}
    if any(data_cfg.get(k) for k in ("corrupt", "corruption")):
        raise VlmprobeError(f"{run.path}: its images were corrupted on the fly; vlmprobe audit re-reads the image "
                            "files of the records")
    by_id = {r["id"]: r for r in run.records}
    samples = [Sample(i, by_id[i]["image"], int(by_id[i]["label"]), by_id[i].get("meta") or {}) for i in ids]
    return ImageDataset(str(data_cfg.get("spec") or run.path), samples, list(run.classnames),
                        info={"audit_of": str(run.path)})


def _compare(run, rows: dict[str, int], sub, has_scores: bool) -> dict:
    from ..metrics.rundata import load_run

    new = load_run(sub)
    before = {i: (int(p), r) for i, p, r in zip(run.ids, run.predictions, run.records)}
    flips, diff, changed = [], 0.0, 0
    for j, (i, p, r) in enumerate(zip(new.ids, new.predictions, new.records)):
        old_p, old_r = before[i]
        if int(p) != old_p:
            flips.append({"id": i, "before": None if old_p < 0 else old_p, "after": None if p < 0 else int(p),
                          "label": int(new.labels[j])})
        if "response" in r and r["response"] != old_r.get("response"):
            changed += 1
        if has_scores and new.scores is not None:
            a, b = run.scores[rows[i]].astype(np.float64), new.scores[j].astype(np.float64)
            ok = np.isfinite(a) & np.isfinite(b)
            if (np.isfinite(a) != np.isfinite(b)).any():
                diff = float("inf")
            elif ok.any():
                diff = max(diff, float(np.abs(a[ok] - b[ok]).max()))
    out = {"n": len(new.ids), "flips": flips, "num_flips": len(flips),
           "max_abs_score_diff": diff if has_scores else None}
    if any("response" in r for r in new.records):
        out["responses_changed"] = changed
    return out


def audit_run(run_dir, out_dir, n: int = 32, seed: int = 0, knobs=KNOBS, model=None, batch_size: int | None = None,
              progress: bool = False) -> dict:
    """The audit of RUN_DIR (module docstring) into OUT_DIR; returns audit.json's dict."""
    from ..cache import atomic_write_json
    from ..metrics.report import jsonable
    from ..metrics.rundata import load_run
    from .runner import evaluate, make_method

    run = load_run(run_dir)
    method_cfg = run.config.get("method") or {}
    opts = method_options(method_cfg)
    bad = [k for k in knobs if k not in KNOBS]
    if bad:
        raise VlmprobeError(f"--knobs {bad[0]!r}: choose from {', '.join(KNOBS)}")
    if run.labels is None or not run.ids:
        raise VlmprobeError(f"{run.path}: no labeled scored samples to audit")
    rng = np.random.default_rng(seed)
    ids = sorted(rng.choice(run.ids, size=min(n, len(run.ids)), replace=False).tolist(), key=run.ids.index)
    rows = {i: k for k, i in enumerate(run.ids)}
    bs = batch_size or int((run.config.get("runtime") or {}).get("batch_size") or 32)
    if model is None:
        from ..models import LoadOptions, load_model

        spec = (run.config.get("model") or {}).get("spec")
        if not spec:
            raise VlmprobeError(f"{run.path / 'config.json'}: no model spec")
        model = load_model(spec, LoadOptions(dtype=(run.config.get("model") or {}).get("dtype") or "auto"))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    has_scores = run.scores is not None
    result = {"run": str(run.path), "method": method_cfg.get("name"), "n": len(ids), "seed": seed,
              "run_batch_size": bs, "knobs": {}}
    by_id = {r["id"]: r for r in run.records}
    for knob in knobs:
        order, size, method = list(ids), bs, make_method(method_cfg["name"], **opts)
        if knob == "batch1":
            size = 1
        elif knob == "order":
            order = [ids[k] for k in rng.permutation(len(ids))]
        else:
            if method_cfg["name"] == "generate" and not opts["closed_world"]:
                result["knobs"][knob] = {"applicable": False, "why": "open-world generation lists no candidates"}
                continue
            from .candidates import CandidateRule

            K = len(run.classnames)
            table = {i: [int(c) for c in rng.permutation(by_id[i].get("candidates") or list(range(K)))] for i in ids}
            method.rule = CandidateRule.fixed(table)
        evaluate(model, _dataset(run, order), method, out_dir / knob, batch_size=size, seed=int(run.config.get("seed", 0)),
                 progress=progress, command="audit")
        result["knobs"][knob] = {"applicable": True, "batch_size": size, **_compare(run, rows, out_dir / knob, has_scores)}
    result["total_flips"] = sum(k.get("num_flips", 0) for k in result["knobs"].values())
    result = jsonable(result)
    atomic_write_json(out_dir / "audit.json", result)
    return result
