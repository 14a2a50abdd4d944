"""The sample browser: ``vlmprobe browse STUDY_OR_RUN_DIR [--out DIR]`` writes a static page
(``DIR/browse/index.html`` by default, next to the study's ``report.html``) that shows one row per
sample: a thumbnail, the true class and, for every run, the prediction, whether it is right and
the model's answer (generation) or its top-5 classes with their scores (CLIP zero-shot,
likelihood, classifier).

It opens from the file system (``file://``): no server, no network, no CDN. Everything the page
reads is written beside it:

``index.html``, ``browse.js``, ``browse.css``  the page (copied from ``vlmprobe/browse/static``)
``data/index.js``        the datasets and their runs (``VB.index({...})``)
``data/d<k>.js``         dataset k: sample ids, image paths, labels, thumbnail names, class names
``data/d<k>-r<j>.js``    run j on dataset k: predictions, status, top-5 classes and scores or
                         answers (typed arrays as base64, answers as a table of distinct strings)
``thumbs/<key>.jpg``     one thumbnail per image, keyed by the image's path, size and mtime: made
                         once (in parallel worker processes, with a progress bar) and reused

A study's runs are grouped by the study's dataset name; a run joins the browser when its records
are image classifications (an integer ``label`` and a ``prediction`` field), i.e. zero-shot,
generation, likelihood, classifier and fine-tuned runs. Per sample and run the status is
``ok`` (a prediction), ``unmatched`` (no class found in the answer, or no prediction),
``skipped`` (the image could not be used), ``api_error`` (an API request that failed after its
retries) or ``absent`` (the run did not cover this sample). Right = a prediction equal to the
label; wrong = ``ok`` with another class, or ``unmatched`` (as the metrics count it); skipped,
failed and absent samples are neither.

The page keeps its state in the URL's fragment (``#ds=test&run=RUN&cls=3&wrong=1``), so the
report's worst-class and confusion links open the matching samples.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..cache import atomic_write_text
from ..errors import RunDirError, VlmprobeError

STATIC = Path(__file__).parent / "static"
THUMB_SIZE = 96  # longest side of a thumbnail in pixels
THUMB_VERSION = 1  # part of each thumbnail's key: bump when the thumbnail recipe changes
STATUS = ("ok", "unmatched", "skipped", "api_error", "absent")  # codes 0..4 in the status arrays
TOP = 5  # classes shown per scored run
PARALLEL_MIN = 1000  # fewer thumbnails to make than this: made in the calling process (no pool start-up)
NOT_SHOWN = ("finetune", "wikiqa", "frequency")  # study measures whose records are not image classifications


# ---------------------------------------------------------------- runs -> arrays

def _status(rec: dict, is_skipped) -> int:
    if rec.get("api_error"):
        return 3
    if is_skipped(rec):
        return 2
    return 0 if isinstance(rec.get("prediction"), int) and not isinstance(rec.get("prediction"), bool) else 1


def _is_classification(records: list[dict]) -> bool:
    """Image classification records: an integer label and a prediction field (None allowed)."""
    from ..metrics.rundata import is_skipped

    kept = [r for r in records if not is_skipped(r)] or records
    return bool(kept) and all(isinstance(r.get("label"), int) and not isinstance(r.get("label"), bool)
                              and "prediction" in r for r in kept)


def top_k(scores: np.ndarray, k: int = TOP) -> tuple[np.ndarray, np.ndarray]:
    """(classes [N, k] int32, scores [N, k] float32) of each row's k highest finite scores, best
    first, ties to the lower class index; -1 / NaN where a row has fewer finite scores."""
    s = np.where(np.isfinite(scores), scores, -np.inf).astype(np.float32)
    k = min(k, s.shape[1])
    if s.shape[1] > 4 * k:  # ImageNet's 1,000 columns: partition instead of sorting every row
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(s, part, 1).min(axis=1, keepdims=True)
        part.sort(axis=1)  # ties among the k then fall to the lower class index below
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1, kind="stable")
        idx = np.take_along_axis(part, order, 1)
        # a tie at the k-th value that reaches outside the k partitioned columns: sort that row in full
        for r in np.flatnonzero((s >= kth).sum(axis=1) > k):
            idx[r] = np.argsort(-s[r], kind="stable")[:k]
    else:
        idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(s, idx, 1)
    idx = np.where(np.isfinite(vals), idx, -1).astype(np.int32)
    return idx, np.where(np.isfinite(vals), vals, np.nan).astype(np.float32)


def run_arrays(records: list[dict], scores: np.ndarray | None, index: dict[str, int], n: int,
               generation: bool) -> dict:
    """One run's columns over the browser's ``n`` samples (``index``: sample id -> row)."""
    pred = np.full(n, -1, np.int32)
    status = np.full(n, 4, np.uint8)
    top = np.full((n, TOP), -1, np.int32) if not generation else None
    tops = np.full((n, TOP), np.nan, np.float32) if not generation else None
    strings: dict[str, int] = {}
    answer = np.full(n, -1, np.int32)
    from ..metrics.rundata import is_skipped

    scored = scores if top is not None and scores is not None else None
    if scored is not None:
        best, best_s = top_k(scored[:len(records)], TOP)
    for i, rec in enumerate(records):
        row = index.get(str(rec.get("id")))
        if row is None:
            continue
        st = _status(rec, is_skipped)
        status[row] = st
        if st == 0:
            pred[row] = rec["prediction"]
        text = rec.get("response") if generation else None
        if st >= 2:
            text = str(rec.get("api_error") or rec.get("skipped") or rec.get("error") or "")
        if text:
            answer[row] = strings.setdefault(str(text), len(strings))
        if top is not None and st < 2:
            if scored is not None and i < len(best):
                top[row, :best.shape[1]] = best[i]
                tops[row, :best.shape[1]] = best_s[i]
            elif isinstance(rec.get("top5"), list):
                ids = [int(c) for c in rec["top5"][:TOP]]
                top[row, :len(ids)] = ids
    out = {"pred": pred, "status": status, "answer": answer, "strings": list(strings)}
    if top is not None:
        out["top"], out["tops"] = top, tops
    return out


def _write(path: Path, text: str) -> None:
    """Write ``text`` atomically unless the file already holds it (a rebuilt browser of unchanged
    runs touches no file)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)


def _uri(path: str) -> str:
    """``file://`` URL of an image path (absolute, percent-encoded; "" for none)."""
    from urllib.parse import quote

    return "file://" + quote(os.path.abspath(path)) if path else ""


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def _js(call: str, obj, *args) -> str:
    """``call(args..., obj);`` as a script file (loaded by a <script> tag: works from file://)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    return f"{call}({''.join(f'{a},' for a in args)}{text});\n"


# ---------------------------------------------------------------- thumbnails

def thumb_key(path: str) -> str | None:
    """Cache key of an image's thumbnail (path, size, mtime, thumbnail recipe), or None when the
    path is not a file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    ident = f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{THUMB_SIZE}\0{THUMB_VERSION}"
    return hashlib.sha1(ident.encode()).hexdigest()[:20]


def _make_thumb(job: tuple[str, str]) -> str | None:
    """Write one thumbnail (JPEG, longest side THUMB_SIZE) atomically; the error text or None."""
    from PIL import Image

    from ..data.datasets import read_image
    from ..data.datasets import ImageLoadError

    src, dst = job
    try:
        img = read_image(src)
    except ImageLoadError as e:
        return str(e)
    img.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BICUBIC)
    tmp = f"{dst}.{os.getpid()}.tmp"
    img.save(tmp, "JPEG", quality=85)
    os.replace(tmp, dst)
    return None


def _make_chunk(jobs: list[tuple[str, str]]) -> list[str | None]:
    return [_make_thumb(j) for j in jobs]


def make_thumbnails(paths: list[str], folder: Path, workers: int = 0, progress: bool = True) -> dict:
    """Thumbnails of ``paths`` in ``folder`` (``<key>.jpg``), the missing ones only, made by
    ``workers`` processes (0: the usable cores from PARALLEL_MIN thumbnails on, else 1; 1: in this
    process, the plain reference path).
    Returns ``{"names": [key or None per path], "made": n, "reused": n, "failed": [(path, why)]}``."""
    from ..distributed import usable_cores
    from ..progress import bar

    folder.mkdir(parents=True, exist_ok=True)
    names, todo, seen = [], [], set()
    for p in paths:
        key = thumb_key(p) if p else None
        names.append(key)
        if key and key not in seen and not (folder / f"{key}.jpg").exists():
            seen.add(key)
            todo.append((p, str(folder / f"{key}.jpg")))
    failed = []
    workers = workers or (usable_cores() if len(todo) >= PARALLEL_MIN else 1)
    chunk = 64
    chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    with bar(total=len(todo), desc="thumbnails", unit="img", disable=not progress or not todo) as pb:
        if workers <= 1 or len(chunks) <= 1:
            results = (_make_chunk(c) for c in chunks)
            pool = None
        else:
            pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks)))
            results = pool.map(_make_chunk, chunks)
        try:
            for jobs, errs in zip(chunks, results):
                failed += [(src, e) for (src, _), e in zip(jobs, errs) if e]
                pb.update(len(jobs))
        finally:
            if pool is not None:
                pool.shutdown()
    bad = {src for src, _ in failed}
    names = [None if (p in bad or key is None) else key for p, key in zip(paths, names)]
    missing = [(p, "file not found") for p, key in zip(paths, names) if p and key is None and p not in bad]
    return {"names": names, "made": len(todo) - len(failed), "reused": len(set(k for k in names if k)) - (len(todo) - len(failed)),
            "failed": failed + missing}


# ---------------------------------------------------------------- what to show

def _study_groups(root: Path, log) -> list[dict]:
    """[{name, runs: [(run id, label, run dir)]}] of a study directory, grouped by dataset."""
    from ..study.collect import describe

    plan = json.loads((root / "study.json").read_text(encoding="utf-8"))
    groups: dict[str, list] = {}
    for run in plan.get("runs") or []:
        d = root / run["id"]
        if run.get("measure") in NOT_SHOWN or not (d / "samples.jsonl").is_file():
            continue
        try:
            label = f"{run['model']}: {describe(run)}"
        except (KeyError, TypeError):
            label = run["id"]
        groups.setdefault(run.get("dataset") or "", []).append((run["id"], label, d))
    return [{"name": k, "runs": v} for k, v in groups.items()]


def collect(src: Path, log=print) -> list[dict]:
    """The datasets of the browser: per dataset its samples and its classification runs' records."""
    if (src / "study.json").is_file():
        groups = _study_groups(src, log)
    elif (src / "samples.jsonl").is_file():
        groups = [{"name": src.name, "runs": [(src.name, src.name, src)]}]
    else:
        raise VlmprobeError(f"{src}: neither a study directory (study.json) nor a run directory (samples.jsonl)")
    from ..metrics.rundata import _classnames
    from ..runs import read_run

    out = []
    for g in groups:
        runs = []
        for rid, label, d in g["runs"]:
            try:
                config, records, scores = read_run(d)
            except RunDirError as e:
                log(f"browse: left out {rid}: {e}")
                continue
            if config.get("command") in NOT_SHOWN or not _is_classification(records):
                continue
            method = config.get("method") or {}
            name = method.get("name") if isinstance(method, dict) else method
            if rid == label and isinstance(config.get("model"), dict):
                label = f"{config['model'].get('spec', rid)}: {name}"
            runs.append({"id": rid, "label": label, "method": name, "records": records, "scores": scores,
                         "classnames": _classnames(d, config, records, None if scores is None else scores.shape[1]),
                         "generation": name == "generate" or any("response" in r for r in records[:50])})
        if runs:
            out.append({"name": g["name"], "runs": runs})
    if not out:
        raise VlmprobeError(f"{src}: no finished classification run (samples.jsonl with label and prediction) to browse")
    return out


# ---------------------------------------------------------------- writing

def write_browser(src, out=None, workers: int = 0, progress: bool = True, log=print) -> dict:
    """Write the browser of a study or run directory ``src`` into ``out`` (default ``src/browse``).
    Returns ``{"index": path, "datasets": n, "samples": n, "runs": n, "thumbnails": {...}}``."""
    src = Path(src)
    if not src.is_dir():
        raise VlmprobeError(f"{src}: no such directory")
    out = Path(out) if out else src / "browse"
    datasets = collect(src, log)
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    index, totals = [], {"made": 0, "reused": 0, "failed": []}
    n_samples = n_runs = 0
    for k, ds in enumerate(datasets):
        ids, images, labels, seen = [], [], [], {}
        for run in ds["runs"]:
            for rec in run["records"]:
                sid = str(rec.get("id"))
                if sid not in seen:
                    seen[sid] = len(ids)
                    ids.append(sid)
                    images.append(str(rec["image"]) if isinstance(rec.get("image"), str) else "")
                    lab = rec.get("label")
                    labels.append(lab if isinstance(lab, int) and not isinstance(lab, bool) else -1)
        classnames = max((r["classnames"] for r in ds["runs"]), key=len)
        thumbs = make_thumbnails(images, out / "thumbs", workers=workers, progress=progress)
        for key in ("made", "reused"):
            totals[key] += thumbs[key]
        totals["failed"] += thumbs["failed"]
        wide = len(classnames) >= 32767
        cls_t = np.int32 if wide else np.int16
        files = []
        for j, run in enumerate(ds["runs"]):
            arr = run_arrays(run["records"], run["scores"], seen, len(ids), run["generation"])
            payload = {"pred": _b64(arr["pred"].astype(cls_t)), "status": _b64(arr["status"]),
                       "answer": _b64(arr["answer"]), "strings": arr["strings"]}
            if "top" in arr:
                payload["top"] = _b64(arr["top"].astype(cls_t))
                payload["tops"] = _b64(arr["tops"])
            name = f"d{k}-r{j}.js"
            _write(data_dir / name, _js("VB.run", payload, j))
            files.append({"id": run["id"], "label": run["label"], "method": run["method"],
                          "generation": run["generation"], "file": name,
                          "counts": {s: int((arr["status"] == i).sum()) for i, s in enumerate(STATUS)}})
        meta = {"name": ds["name"], "n": len(ids), "classnames": classnames, "ids": ids,
                "images": [_uri(p) for p in images],
                "thumbs": [t or "" for t in thumbs["names"]], "label": _b64(np.array(labels, cls_t)),
                "int32": wide}
        _write(data_dir / f"d{k}.js", _js("VB.dataset", meta))
        index.append({"name": ds["name"], "file": f"d{k}.js", "n": len(ids), "runs": files})
        n_samples += len(ids)
        n_runs += len(files)
    report = "../report.html" if (src / "report.html").is_file() and out.resolve() == (src / "browse").resolve() else None
    _write(data_dir / "index.js", _js("VB.index", {"title": src.resolve().name, "datasets": index,
                                                             "report": report}))
    for name in ("index.html", "browse.js", "browse.css"):
        _write(out / name, (STATIC / name).read_text(encoding="utf-8"))
    if totals["failed"]:
        first = totals["failed"][0]
        log(f"browse: {len(totals['failed'])} images have no thumbnail (first: {first[0]}: {first[1]})")
    return {"index": str(out / "index.html"), "datasets": len(index), "samples": n_samples, "runs": n_runs,
            "thumbnails": {"made": totals["made"], "reused": totals["reused"], "failed": len(totals["failed"])}}


def link(dataset: str, **state) -> str:
    """The browser URL (relative to a study's report) that opens with ``state`` applied, e.g.
    ``link("test", run="vlm/test/generate", cls=3, wrong=1)``."""
    from urllib.parse import quote

    parts = [f"ds={quote(str(dataset), safe='')}"]
    parts += [f"{k}={quote(str(v), safe='')}" for k, v in state.items() if v is not None]
    return "browse/index.html#" + "&".join(parts)
