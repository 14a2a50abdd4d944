"""Run directories: what every evaluation writes, and how a killed run resumes.

``DIR/config.json``    resolved config (model, data, method, seed) + environment (versions, git)
``DIR/samples.jsonl``  one record per sample, in dataset order
``DIR/scores.npy``     [N, K] float32, rows in sample order (NaN rows for skipped images)
``DIR/results.json``   metrics, recomputable from the files above (``vlmprobe metrics DIR``)

Crash safety. While running, score rows are appended to ``DIR/scores.partial`` (raw float32)
*before* the matching records are appended to ``samples.jsonl``, each write flushed and
fsynced. On reopen, a trailing partial JSONL line is cut off and ``scores.partial`` is truncated
to the number of complete records, so a run killed at any moment (SIGKILL included) resumes at
the first unfinished sample and ends with files equal to an uninterrupted run's.
Final files are written to a temporary name and renamed (never half-written).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from .cache import atomic_write_json
from .errors import RunDirError

VOLATILE_SECTIONS = ("runtime", "environment")  # recorded, but not part of a run's identity


def environment() -> dict:
    """Package versions, python, platform and the git commit of the vlmprobe checkout."""
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
            "git_commit": commit, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _identity(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in VOLATILE_SECTIONS}


def _diff_keys(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


class RunDir:
    """One run directory; ``open()`` -> number of finished samples, then ``append``, ``finalize``."""

    def __init__(self, path: str | os.PathLike, config: dict, num_scores: int | None = None):
        self.path = Path(path)
        self.config = json.loads(json.dumps(config, default=str))  # json-normalised
        self.num_scores = num_scores
        self.samples_path = self.path / "samples.jsonl"
        self.partial_path = self.path / "scores.partial"
        self.scores_path = self.path / "scores.npy"
        self.results_path = self.path / "results.json"

    def open(self) -> int:
        """Create or validate the directory; repair a killed run's tail; return #finished."""
        self.path.mkdir(parents=True, exist_ok=True)
        cfg_path = self.path / "config.json"
        if cfg_path.exists():
            try:
                old = json.loads(cfg_path.read_text())
            except json.JSONDecodeError:
                raise RunDirError(f"{cfg_path} is not valid JSON; use a new --out directory") from None
            diff = _diff_keys(_identity(old), _identity(self.config))
            if diff:
                raise RunDirError(f"{self.path} holds a run with a different config (differs in: "
                                  f"{', '.join(diff[:5])}{' ...' if len(diff) > 5 else ''}); use a new --out")
            self.config = old
        else:
            if self.samples_path.exists():
                raise RunDirError(f"{self.path} has samples.jsonl but no config.json; use a new --out")
            atomic_write_json(cfg_path, self.config)
        return self._repair()

    def _repair(self) -> int:
        n = 0
        if self.samples_path.exists():
            data = self.samples_path.read_bytes()
            end = data.rfind(b"\n") + 1  # drop a partial trailing line
            if end != len(data):
                with open(self.samples_path, "r+b") as f:
                    f.truncate(end)
            n = data[:end].count(b"\n")
        if self.num_scores:
            row = 4 * self.num_scores
            if self.scores_path.exists() and not self.partial_path.exists():  # finished earlier
                rows = np.load(self.scores_path)
                if rows.shape != (n, self.num_scores):
                    raise RunDirError(f"{self.scores_path} has shape {rows.shape}, expected ({n}, {self.num_scores})")
                rows.astype(np.float32).tofile(self.partial_path)
            have = self.partial_path.stat().st_size // row if self.partial_path.exists() else 0
            if have < n:  # cannot happen with our write order; keep files consistent anyway
                self._truncate_samples(have)
                n = have
            if self.partial_path.exists():
                with open(self.partial_path, "r+b") as f:
                    f.truncate(n * row)
        return n

    def _truncate_samples(self, n: int) -> None:
        lines = self.samples_path.read_bytes().split(b"\n")[:n]
        with open(self.samples_path, "wb") as f:
            f.write(b"".join(line + b"\n" for line in lines))

    def append(self, records: list[dict], scores: np.ndarray | None = None) -> None:
        """Append finished samples (scores first, then records; both fsynced)."""
        if self.num_scores:
            scores = np.asarray(scores, dtype=np.float32)
            if scores.shape != (len(records), self.num_scores):
                raise ValueError(f"scores shape {scores.shape} != ({len(records)}, {self.num_scores})")
            with open(self.partial_path, "ab") as f:
                f.write(scores.tobytes())
                f.flush()
                os.fsync(f.fileno())
        with open(self.samples_path, "a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict]:
        if not self.samples_path.exists():
            return []
        with open(self.samples_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def scores(self) -> np.ndarray | None:
        if not self.num_scores:
            return None
        if self.partial_path.exists():
            return np.fromfile(self.partial_path, dtype=np.float32).reshape(-1, self.num_scores)
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
    """(config, records, scores or None) of a finished run directory."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise RunDirError(f"{path} is not a run directory (no config.json)")
    config = json.loads((path / "config.json").read_text())
    with open(path / "samples.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    scores = np.load(path / "scores.npy") if (path / "scores.npy").exists() else None
    return config, records, scores
