"""Run directories: what every evaluation writes, how a killed run resumes, how the processes
of one launch share a run, and the one reader of a run directory.

``DIR/config.json``    resolved config (model, data, method, seed, ``samples``: count and SHA-256
                       of the ordered sample ids, checked on every resume) + runtime + environment
``DIR/samples.jsonl``  one record per sample, in dataset order
``DIR/scores.npy``     [N, K] float32, rows in sample order (NaN rows for skipped images)
``DIR/results.json``   metrics, recomputable from the files above (``vlmprobe metrics DIR``)
``DIR/.lock``          held (``flock``) by the run's writer for the run's lifetime

Crash safety. While running, score rows are appended to ``DIR/scores.partial`` (raw float32)
*before* the matching records are appended to ``samples.jsonl``, each write flushed and
fsynced (``AppendLog``). On reopen, a trailing partial JSONL line is cut off and
``scores.partial`` is truncated to the number of complete records, so a run killed at any
moment (SIGKILL included) resumes at the first unfinished sample and ends with files equal to
an uninterrupted run's. Final files are written to a temporary name and renamed.

Several processes (``accelerate launch`` / ``torchrun``). Each process appends to its own shard
``DIR/shards/<launch>-r<rank>.{jsonl,scores}`` (the same ``AppendLog``; each line
``{"index": i, "record": {...}}``) while holding an ``flock`` on it. Finished = the prefix in
``samples.jsonl`` + every index in the shards, so a resumed run (any number of processes)
computes only the rest. ``merge`` writes the single-process files (records in dataset order),
verifies that every index 0..N-1 appears exactly once with its sample id, then removes the
shards. A shard whose indices are already in ``samples.jsonl`` is a leftover of a merge killed
before its cleanup and is removed.

Retried records. A record with ``api_error`` (an API request that still failed after its
retries, ``models.api``) is not finished: the next run computes it again through a shard, and
the merge replaces the failed record with the new one (a failed retry never replaces an answer).

One writer. The writer (rank 0 of a launch, or the single process) holds an exclusive ``flock``
on ``DIR/.lock``, released by the kernel on any exit (a crash leaves the file, not the lock).
Another process into the same DIR is refused with one line naming the holder; the launch's
other ranks hold only their shard locks.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

from .cache import atomic_write_json, complete_lines, try_lock
from .errors import RunDirError

VOLATILE_SECTIONS = ("runtime", "environment")  # recorded, but not part of a run's identity
VOLATILE_RECORD_FIELDS = ("rank",)  # which process computed a record: not part of its content
DEVICE_FIELDS = ("device", "device_map")  # where a model ran: not part of what it is


def environment() -> dict:
    """Package versions, python, platform and the git commit of the vlmprobe checkout (read once
    per process: the code a process runs is the code it imported), and the time of the call."""
    installed = _installed()
    return {**installed, "versions": dict(installed["versions"]), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@functools.lru_cache(maxsize=None)
def _installed() -> dict:
    from importlib import metadata

    versions = {}
    for pkg in ("vlmprobe", "torch", "torchvision", "transformers", "open_clip_torch", "peft", "accelerate",
                "bitsandbytes", "numpy", "scikit-learn", "pillow"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": commit}


def describe_model(model) -> dict:
    """What a model is, for configs and cache keys (``model.describe()`` without device fields)."""
    return {k: v for k, v in model.describe().items() if k not in DEVICE_FIELDS}


def strip_volatile(record: dict) -> dict:
    """A record without the fields that say where it was computed."""
    return {k: v for k, v in record.items() if k not in VOLATILE_RECORD_FIELDS}


def _identity(config: dict) -> dict:
    """What must match to resume (``samples`` is checked on its own, and a run directory made
    before it was recorded still resumes)."""
    return {k: v for k, v in config.items() if k not in VOLATILE_SECTIONS and k != "samples"}


def sample_list_key(ids: list[str]) -> dict:
    """``{"count": N, "sha256": SHA-256 of the ids joined by newlines}``: the ordered sample list
    a run directory was started on."""
    import hashlib

    return {"count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}


def _diff_keys(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


class AppendLog:
    """JSONL lines + optional raw float32 score rows ``[*, num_scores]``, appended crash-safely
    (scores first, then lines; both fsynced). ``repair()`` cuts a killed writer's tail."""

    def __init__(self, lines: Path, scores: Path, num_scores: int | None):
        self.lines_path, self.scores_path, self.num_scores = Path(lines), Path(scores), num_scores

    def repair(self) -> int:
        """Drop a partial last line and score rows without a line; return the number of lines."""
        n = complete_lines(self.lines_path).count(b"\n")
        if self.num_scores:
            row = 4 * self.num_scores
            have = self.scores_path.stat().st_size // row if self.scores_path.exists() else 0
            if have < n:  # cannot happen with our write order; keep files consistent anyway
                lines = self.lines_path.read_bytes().split(b"\n")[:have]
                self.lines_path.write_bytes(b"".join(line + b"\n" for line in lines))
                n = have
            if self.scores_path.exists():
                with open(self.scores_path, "r+b") as f:
                    f.truncate(n * row)
        return n

    def append(self, lines: list[dict], scores: np.ndarray | None = None) -> None:
        if self.num_scores:
            scores = np.asarray(scores, dtype=np.float32)
            if scores.shape != (len(lines), self.num_scores):
                raise ValueError(f"scores shape {scores.shape} != ({len(lines)}, {self.num_scores})")
            with open(self.scores_path, "ab") as f:
                f.write(scores.tobytes())
                f.flush()
                os.fsync(f.fileno())
        with open(self.lines_path, "a", encoding="utf-8") as f:
            for r in lines:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def lines(self) -> list[dict]:
        if not self.lines_path.exists():
            return []
        with open(self.lines_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def scores(self) -> np.ndarray | None:
        if not self.num_scores or not self.scores_path.exists():
            return None
        return np.fromfile(self.scores_path, dtype=np.float32).reshape(-1, self.num_scores)


class ShardLog(AppendLog):
    """One process's shard: lines ``{"index": i, "record": rec}``; ``hold()`` flocks it."""

    def hold(self) -> None:
        self._fd = os.open(self.lines_path, os.O_RDWR | os.O_CREAT, 0o644)
        if not try_lock(self._fd, self.lines_path):
            raise RunDirError(f"{self.lines_path} is being written by another process")

    def release(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def in_use(self) -> bool:
        fd = os.open(self.lines_path, os.O_RDONLY)
        try:
            return not try_lock(fd, self.lines_path)
        finally:
            os.close(fd)  # closing drops the probe lock


class RunDir:
    """One run directory: ``lock()``, ``open()`` -> #samples in samples.jsonl, then ``append``
    (one process) or ``shard(...).append`` + ``merge`` (several), then ``finalize_scores``."""

    def __init__(self, path: str | os.PathLike, config: dict, num_scores: int | None = None,
                 sample_ids: list[str] | None = None):
        """``sample_ids``: the ordered ids of the run's inputs; their count and SHA-256 are
        recorded in config.json (``samples``) and checked on every resume."""
        self.path = Path(path)
        self.config = json.loads(json.dumps(config, default=str))  # json-normalised
        if sample_ids is not None:
            self.config["samples"] = sample_list_key(sample_ids)
        self.num_scores = num_scores
        self.samples_path = self.path / "samples.jsonl"
        self.partial_path = self.path / "scores.partial"
        self.scores_path = self.path / "scores.npy"
        self.results_path = self.path / "results.json"
        self.shards_dir = self.path / "shards"
        self.log = AppendLog(self.samples_path, self.partial_path, num_scores)
        self._lock_fd = None

    # ---- one writer ----------------------------------------------------------------------
    def lock(self, launch: str | None = None) -> None:
        """Hold ``DIR/.lock`` until this process exits (or ``unlock``); refuse if another holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            free = try_lock(fd, lock_path)
        except Exception:
            os.close(fd)
            raise
        if not free:
            os.close(fd)
            try:
                holder = json.loads(lock_path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
            raise RunDirError(f"{self.path} is in use by another vlmprobe process ({who}); wait for it to "
                              "finish or use another --out")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "launch": launch,
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        os.fsync(fd)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- open / resume -------------------------------------------------------------------
    def open(self) -> int:
        """Create or validate the directory; repair killed writers' tails; return the number of
        records in samples.jsonl."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.validate():
            atomic_write_json(self.path / "config.json", self.config)
        if self.num_scores and self.scores_path.exists() and not self.partial_path.exists():  # finished earlier
            rows = np.load(self.scores_path)
            n = len(self.records())
            if rows.shape != (n, self.num_scores):
                raise RunDirError(f"{self.scores_path} has shape {rows.shape}, expected ({n}, {self.num_scores})")
            rows.astype(np.float32).tofile(self.partial_path)
        n = self.log.repair()
        self._repair_shards(n)
        return n

    def validate(self) -> bool:
        """Check (reading only) that this directory may hold this run: True when it holds one
        with the same config and samples (adopted), False when it holds none; RunDirError when it
        holds another (``open`` and ``--dry-run`` refuse the same way)."""
        cfg_path = self.path / "config.json"
        if not cfg_path.exists():
            if self.samples_path.exists():
                raise RunDirError(f"{self.path} has samples.jsonl but no config.json; use a new --out")
            return False
        try:
            old = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            raise RunDirError(f"{cfg_path} is not valid JSON; use a new --out directory") from None
        was, now = old.get("samples"), self.config.get("samples")
        if was is not None and now is not None and was != now:
            raise RunDirError(f"{self.path} was started on other samples ({was['count']} ids, sha256 "
                              f"{was['sha256'][:12]}; now {now['count']}, {now['sha256'][:12]}): the dataset "
                              "changed; use a new --out")
        diff = _diff_keys(_identity(old), _identity(self.config))
        if diff:
            raise RunDirError(f"{self.path} holds a run with a different config (differs in: "
                              f"{', '.join(diff[:5])}{' ...' if len(diff) > 5 else ''}); use a new --out")
        self.config = old
        return True

    def shards(self) -> list[ShardLog]:
        if not self.shards_dir.is_dir():
            return []
        return [ShardLog(p, p.with_suffix(".scores"), self.num_scores) for p in sorted(self.shards_dir.glob("*.jsonl"))]

    def _repair_shards(self, merged: int) -> None:
        for shard in self.shards():
            if shard.in_use():
                raise RunDirError(f"{shard.lines_path} is being written by a process of another launch; "
                                  "wait for it to finish")
            shard.repair()
            indices = [line["index"] for line in shard.lines()]
            if indices and min(indices) >= merged:
                continue
            retry = set(self.retryable())
            if any(i in retry for i in indices) and all(i in retry or i >= merged for i in indices):
                continue  # retries of api_error records, not merged yet
            if indices and max(indices) >= merged:
                raise RunDirError(f"{shard.lines_path} overlaps samples.jsonl; the run directory is inconsistent")
            self._remove(shard)  # empty, or already merged (a merge killed before its cleanup)

    @staticmethod
    def _remove(shard: ShardLog) -> None:
        shard.lines_path.unlink(missing_ok=True)
        shard.scores_path.unlink(missing_ok=True)

    def finished(self) -> set[int]:
        """Indices already computed: samples.jsonl's prefix and every shard's (after ``open``),
        except ``api_error`` records (an API request that failed after its retries: redone)."""
        done = {i for i, r in enumerate(self.records()) if not r.get("api_error")}
        for shard in self.shards():
            done.update(line["index"] for line in shard.lines() if not line["record"].get("api_error"))
        return done

    def retryable(self) -> list[int]:
        """Indices of samples.jsonl's ``api_error`` records; a run with any goes through shards
        (the retried records replace them at the merge)."""
        return [i for i, r in enumerate(self.records()) if r.get("api_error")]

    def shard(self, launch: str, rank: int) -> ShardLog:
        """This process's shard (created and held)."""
        self.shards_dir.mkdir(exist_ok=True)
        shard = ShardLog(self.shards_dir / f"{launch}-r{rank}.jsonl", self.shards_dir / f"{launch}-r{rank}.scores",
                         self.num_scores)
        shard.hold()
        return shard

    def merge(self, ids: list[str]) -> None:
        """samples.jsonl's prefix + every shard -> samples.jsonl (dataset order) and
        scores.partial; verified (each index 0..N-1 once, with sample id ``ids[i]``), then the
        shards are removed. Idempotent: a merge killed at any point can run again."""
        shards = self.shards()
        if not shards:
            return
        n = len(ids)
        records: list[dict | None] = self.records() + [None] * (n - len(self.records()))
        rows = self.log.scores()
        scores = None
        if self.num_scores:
            scores = np.full((n, self.num_scores), np.nan, dtype=np.float32)
            if rows is not None:
                scores[:len(rows)] = rows
        for shard in shards:
            srows = shard.scores()
            for j, line in enumerate(shard.lines()):
                i = line["index"]
                if 0 <= i < n and records[i] is not None and records[i].get("api_error"):
                    records[i] = None  # a retried api_error record is replaced
                elif 0 <= i < n and records[i] is not None and line["record"].get("api_error"):
                    continue  # a failed retry never replaces an answer
                if not 0 <= i < n or records[i] is not None:
                    raise RunDirError(f"{shard.lines_path}: index {i} is out of range or computed twice")
                records[i] = line["record"]
                if scores is not None:
                    scores[i] = srows[j]
        missing = [i for i, r in enumerate(records) if r is None]
        if missing:
            raise RunDirError(f"{self.path}: merge found {len(missing)} samples not computed (e.g. index {missing[0]})")
        wrong = [i for i, r in enumerate(records) if r.get("id") != ids[i]]
        if wrong:
            raise RunDirError(f"{self.path}: record {wrong[0]} has id {records[wrong[0]].get('id')!r}, "
                              f"expected {ids[wrong[0]]!r}")
        if scores is not None:  # scores first (repair truncates them to the records), as when appending
            tmp = self.path / "scores.partial.tmp"
            scores.tofile(tmp)
            os.replace(tmp, self.partial_path)
        tmp = self.path / "samples.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.samples_path)
        for shard in shards:
            self._remove(shard)
        try:
            self.shards_dir.rmdir()
        except OSError:
            pass

    # ---- single-process writing and final files --------------------------------------------
    def append(self, records: list[dict], scores: np.ndarray | None = None) -> None:
        """Append finished samples to samples.jsonl (scores first; both fsynced)."""
        self.log.append(records, scores)

    def records(self) -> list[dict]:
        return self.log.lines()

    def scores(self) -> np.ndarray | None:
        if not self.num_scores:
            return None
        if self.partial_path.exists():
            return self.log.scores()
        return np.load(self.scores_path) if self.scores_path.exists() else None

    def finalize_scores(self) -> None:
        """Write scores.npy (atomically) from the partial file, then remove the partial file."""
        if self.num_scores and self.partial_path.exists():
            tmp = self.path / "scores.tmp.npy"
            np.save(tmp, self.scores())
            os.replace(tmp, self.scores_path)
            self.partial_path.unlink()

    def write_results(self, results: dict) -> None:
        atomic_write_json(self.results_path, results)


def read_run(path: str | os.PathLike) -> tuple[dict, list[dict], np.ndarray | None]:
    """(config, records, scores or None) of a finished run directory: THE reader of a run
    directory's files (``metrics.rundata.load_run`` builds its arrays on it). Errors name the
    file that is wrong."""
    from .jsonl import read_jsonl

    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    cfg_path = path / "config.json"
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    except json.JSONDecodeError as e:
        raise RunDirError(f"{cfg_path}: not valid JSON ({e})") from None
    samples = path / "samples.jsonl"
    if not samples.is_file():
        raise RunDirError(f"{samples} not found (not a run directory?)")
    records = [rec for _, rec in read_jsonl(samples, error=RunDirError)]
    if (path / "scores.partial").exists() and not (path / "scores.npy").is_file() or (path / "shards").is_dir():
        raise RunDirError(f"{path} is an unfinished run (scores.partial or shards/, no final files): resume it first")
    scores = None
    if (path / "scores.npy").is_file():
        scores = np.load(path / "scores.npy")
        if scores.ndim != 2 or scores.shape[0] != len(records):
            raise RunDirError(f"{path / 'scores.npy'}: shape {scores.shape} does not match "
                              f"{len(records)} records in samples.jsonl")
    return config, records, scores
