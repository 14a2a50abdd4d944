"""Zero-shot with ten template sets on one dataset: image embeddings computed once and reused
(``classify/embeddings.py``, the default) vs ten full runs that each run the image tower
(``--no-embedding-cache``), side by side in one process, each path with its own empty
``VLMPROBE_HOME`` (so each computes its own text classifiers). Printed: wall and CPU seconds of
each path, the ratio full / reuse, and the largest absolute score difference between paired runs
(must be <= 1e-6).

    python benchmarks/embeddings.py                                  # random-weight ViT-B-32, 200 digits, CPU
    python benchmarks/embeddings.py --model openclip:ViT-B-32@openai --data /imagenet/val --limit 1000
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TEMPLATES = ["a photo of a {}.", "a blurry photo of a {}.", "a drawing of a {}.", "itap of a {}.",
             "a photo of the large {}.", "a photo of the small {}.", "art of the {}.", "a bad photo of the {}.",
             "a origami {}.", "a sculpture of a {}.", "a rendering of a {}.", "a close-up photo of a {}."]


def digits_folder(root: Path, n: int) -> Path:
    """An ImageFolder of ``n`` scikit-learn digits (32x32 PNGs)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    d = load_digits()
    for i in range(n):
        (root / names[d.target[i]]).mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i] / 16 * 255).astype(np.uint8)).resize((32, 32)).save(
            root / names[d.target[i]] / f"{i:04d}.png")
    return root


def run_all(model: str, data: list, sets: list[Path], out: Path, home: Path, reuse: bool) -> tuple[float, float]:
    from vlmprobe.cli import main

    os.environ["VLMPROBE_HOME"] = str(home)
    wall, cpu = time.perf_counter(), time.process_time()
    for i, t in enumerate(sets):
        argv = ["eval", "--model", model, *data, "--method", "zeroshot", "--templates", str(t),
                "--out", str(out / f"set{i}"), "--no-progress"]
        if main(argv + ([] if reuse else ["--no-embedding-cache"])) != 0:
            sys.exit(f"failed: vlmprobe {' '.join(argv)}")
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="openclip:ViT-B-32", help="CLIP spec (default: ViT-B-32, random weights)")
    ap.add_argument("--data", default=None, help="dataset (default: an ImageFolder of scikit-learn digits)")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--sets", type=int, default=10, help="template sets (each a different subset of templates)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data or str(digits_folder(tmp / "digits", args.limit))
        sets = []
        for i in range(args.sets):
            path = tmp / f"templates{i}.json"
            path.write_text(json.dumps([TEMPLATES[(i + j) % len(TEMPLATES)] for j in range(1 + i % 4)]))
            sets.append(path)
        data_args = ["--data", data, "--limit", str(args.limit)]
        full = run_all(args.model, data_args, sets, tmp / "full", tmp / "home_full", reuse=False)
        reuse = run_all(args.model, data_args, sets, tmp / "reuse", tmp / "home_reuse", reuse=True)
        diff = max(float(np.nanmax(np.abs(np.load(tmp / "full" / f"set{i}" / "scores.npy")
                                          - np.load(tmp / "reuse" / f"set{i}" / "scores.npy"))))
                   for i in range(args.sets))
    print(f"zero-shot, {args.sets} template sets, {args.limit} images, model {args.model}")
    print(f"{'path':<34}{'wall s':>9}{'CPU s':>9}")
    print(f"{'10 full runs (--no-embedding-cache)':<34}{full[0]:>9.1f}{full[1]:>9.1f}".replace("10", str(args.sets), 1))
    print(f"{'embeddings once + reuse':<34}{reuse[0]:>9.1f}{reuse[1]:>9.1f}")
    print(f"ratio full / reuse: wall {full[0] / reuse[0]:.2f}x, CPU {full[1] / reuse[1]:.2f}x;  "
          f"max |score difference| = {diff:.2e} ({'equal within 1e-6' if diff <= 1e-6 else 'NOT EQUAL'})")
    return 0 if diff <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
