"""1 vs 2 processes on CPU for the same `vlmprobe eval` run: wall-time ratio and identical outputs.

    python benchmarks/scaleout.py                 # likelihood over 1,000 ImageNet names, tiny LLaVA, 48 images
    python benchmarks/scaleout.py --method zeroshot --images 512

The 1-process run is ``python -m vlmprobe eval ...``; the 2-process run is the same command under
``accelerate launch --cpu --num_processes 2 -m vlmprobe eval ...`` (gloo; the engine shards the
unfinished sample indices and one process merges the shards). Each process gets ``--threads``
torch threads (default 1), so on a 2-core machine the ideal ratio is 2x. Wall time includes
process start-up and model loading, as a user sees it (the launcher and the gloo rendezvous cost
seconds, so small runs do not gain); the headline ratio is the sample loop's throughput from
the engine's own ``timing.json`` (samples/s over the whole run, all processes). The outputs must be identical: same records
(the volatile ``rank`` field aside), scores within 1e-5, same config (runtime aside). Models are
vlmprobe.testing's tiny random-weight ones and the images are written here, so nothing is
downloaded. Exit status 1 when the outputs differ.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import machine  # noqa: E402  (benchmarks/machine.py; a script's own folder is on sys.path)

CLASSES = ("tench", "goldfish", "great white shark")  # ImageNet names: folders relabel onto --classes imagenet


def write_images(root: Path, n: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / CLASSES[i % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return root


def records(run: Path) -> list[dict]:
    try:
        from vlmprobe.runs import strip_volatile
    except ImportError:  # older checkout: the one volatile field is "rank"
        def strip_volatile(r):
            return {k: v for k, v in r.items() if k != "rank"}
    with open(run / "samples.jsonl") as f:
        return [strip_volatile(json.loads(line)) for line in f]


def compare(a: Path, b: Path) -> list[str]:
    """Differences between two run directories (empty: identical outputs)."""
    problems = []
    ra, rb = records(a), records(b)
    if ra != rb:
        first = next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), min(len(ra), len(rb)))
        problems.append(f"samples.jsonl differs ({len(ra)} vs {len(rb)} records; first difference at record {first})")
    sa, sb = a / "scores.npy", b / "scores.npy"
    if sa.exists() != sb.exists():
        problems.append("scores.npy written by only one run")
    elif sa.exists():
        x, y = np.load(sa), np.load(sb)
        if x.shape != y.shape or not np.allclose(x, y, atol=1e-5, rtol=0, equal_nan=True):
            problems.append(f"scores.npy differs (shapes {x.shape} vs {y.shape})")
    ca, cb = (json.loads((d / "config.json").read_text()) for d in (a, b))
    strip = lambda c: {k: v for k, v in c.items() if k not in ("runtime", "environment")}  # noqa: E731
    if strip(ca) != strip(cb):
        problems.append("config.json differs outside runtime/environment")
    if (b / "shards").exists():
        problems.append("the 2-process run left shard files behind")
    return problems


def run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="likelihood", choices=["likelihood", "zeroshot"])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    if importlib.util.find_spec("vlmprobe.engine") is None:
        print("scaleout: this checkout has no multi-process sharding yet (vlmprobe.engine is missing); "
              "nothing to compare. Merge the engine work and run again.")
        return 0
    from vlmprobe.testing import build_tiny_model

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vlmprobe-scaleout-"))
    try:
        kind = "llava" if args.method == "likelihood" else "openclip"
        path = build_tiny_model(work / "models", kind)
        spec = f"hf:{path}" if kind == "llava" else f"openclip:local-dir:{path}"
        data = write_images(work / "images", args.images)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads),
               "MKL_NUM_THREADS": str(args.threads), "VLMPROBE_HOME": str(work / "home")}
        common = ["eval", "--model", spec, "--data", str(data), "--classes", "imagenet", "--method", args.method,
                  "--batch-size", str(args.batch_size), "--workers", "0", "--no-progress"]
        one = [sys.executable, "-m", "vlmprobe", *common, "--out", str(work / "run1")]
        two = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "-m", "vlmprobe",
               *common, "--out", str(work / "run2")]
        if args.method == "zeroshot":  # the text classifier is cached on disk: compute it once, outside the timing
            run([sys.executable, "-m", "vlmprobe", *common, "--limit", "2", "--out", str(work / "warm")], env)
        t1 = run(one, env)
        t2 = run(two, env)
        problems = compare(work / "run1", work / "run2")
        cfg = json.loads((work / "run2" / "config.json").read_text())
        world = cfg.get("runtime", {}).get("world_size")
        loop = {}
        for name in ("run1", "run2"):
            f = work / name / "timing.json"
            loop[name] = json.loads(f.read_text()).get("samples_per_second") if f.exists() else None
        print(machine.describe())
        print(f"{args.method} on {args.images} images ({spec.split(':')[0]} tiny model, 1,000 ImageNet classes), "
              f"{args.threads} torch thread(s) per process")
        print(f"1 process : {t1:7.1f} s wall" + (f"  (loop {loop['run1']:.2f} samples/s)" if loop["run1"] else ""))
        print(f"2 processes: {t2:7.1f} s wall" + (f"  (loop {loop['run2']:.2f} samples/s)" if loop["run2"] else "")
              + f"  world_size recorded: {world}")
        if loop["run1"] and loop["run2"]:
            print(f"ratio 2 / 1 processes, sample loop: {loop['run2'] / loop['run1']:.2f}x (ideal 2x on 2 free cores)")
        print(f"ratio 1 / 2 processes, wall incl. start-up and model loading: {t1 / t2:.2f}x")
        if world != 2:
            problems.append(f"the 2-process run recorded world_size {world!r}")
        print("outputs identical: " + ("yes" if not problems else "NO: " + "; ".join(problems)))
        return 1 if problems else 0
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
