"""ImageNet-R's 200-class protocol vs 1000-way VLM likelihood: cost side by side, scores checked equal.

    python benchmarks/restricted_likelihood.py --threads 1            # tiny random LLaVA (CPU)
    python benchmarks/restricted_likelihood.py --model hf:DIR --device cuda

On a synthetic ImageNet-R tree (``--images`` images, in the release's ``<wnid>/`` layout) it runs
the ``likelihood`` method through the engine twice: the standard protocol (candidates restricted to
R's 200 classes, ``imagenet-r:`` default) and ``--label-space all`` (all 1,000 ImageNet classes),
printing the wall time of each, their ratio (the issue's "5x cheaper": 1000 / 200 candidates, less
the per-image prefix cost both share) and the max abs difference between the restricted score
matrix and the 1000-way matrix masked to the 200 classes (others -inf): they must be equal, as
``tests/test_shift_runs.py::test_r200_restricted_scores_equal_the_masked_full_matrix`` asserts.
The default model is the tiny random-weight LLaVA of ``vlmprobe.testing`` (built under ``--cache``);
timings are the best of ``--repeats`` (the first run also pays one-off warm-up).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _tree(root: Path, n: int) -> Path:
    from PIL import Image

    from vlmprobe.data.imagenet_shifts import subset_synsets

    wnids, _ = subset_synsets("r")
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "imagenet-r" / wnids[(i * 37) % 200]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"art_{i}.jpg")
    return root / "imagenet-r"


def _timed(model, ds, out: Path, repeats: int, **opts) -> tuple[float, np.ndarray]:
    from vlmprobe.classify.runner import evaluate, make_method

    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        evaluate(model, ds, make_method("likelihood", **opts), out / str(r), batch_size=2, progress=False)
        best = min(best, time.perf_counter() - t0)
    return best, np.load(out / "0" / "scores.npy")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model spec (default: the tiny random LLaVA)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/vlmprobe-bench"))
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from vlmprobe import load_dataset
    from vlmprobe.models import load_model

    spec = args.model
    if spec is None:
        from vlmprobe.testing import build_tiny_model

        spec = f"hf:{build_tiny_model(args.cache, 'llava')}"
    model = load_model(spec, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds = load_dataset(f"imagenet-r:{_tree(tmp, args.images)}")
        subset = ds.info["class_subset"]
        t_sub, sub = _timed(model, ds, tmp / "r200", args.repeats)
        t_all, full = _timed(model, ds, tmp / "all", args.repeats, label_space="all")
    masked = np.full_like(full, -np.inf)
    masked[:, subset] = full[:, subset]
    fin = np.isfinite(masked)
    same_support = bool((np.isfinite(sub) == fin).all())
    diff = float(np.abs(sub[fin] - masked[fin]).max()) if same_support else float("inf")
    print(f"model {spec}  images {len(ds)}  device {args.device}")
    print(f"{'protocol':<28}{'candidates':>11}{'s/image':>10}")
    print(f"{'ImageNet-R 200 (restricted)':<28}{len(subset):>11}{t_sub / len(ds):>10.3f}")
    print(f"{'1000-way (--label-space all)':<28}{full.shape[1]:>11}{t_all / len(ds):>10.3f}")
    print(f"ratio 1000-way / restricted: {t_all / t_sub:.2f}x   "
          f"restricted == masked 1000-way: {same_support and diff <= 1e-4} (max |diff| {diff:.2e})")
    return 0 if same_support and diff <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
