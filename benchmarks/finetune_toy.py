"""Does fine-tuning on classification data close the gap in the miniature world? Side by side
on the toy test split: the toy VLM by direct generation (and likelihood) before and after LoRA
fine-tuning with recipes/configs/toy.yaml, and toy CLIP zero-shot before and after the CLIP
fine-tuning baseline (recipes/configs/toy_clip.yaml).

    python benchmarks/finetune_toy.py [--out runs/finetune-toy-bench] [--limit N]

Everything goes through the public paths: the recipe's library calls for training and
``vlmprobe eval`` for accuracy. Writes OUT/finetune_toy.json and prints the table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import machine  # benchmarks/machine.py (a script's own folder is on sys.path)


def _eval(model: str, method: str, out: Path, limit: int | None) -> float:
    from vlmprobe.cli import main as cli

    argv = ["eval", "--model", model, "--data", "toy:digits", "--split", "test", "--method", method,
            "--out", str(out), "--no-progress"] + (["--limit", str(limit)] if limit else [])
    if cli(argv) != 0:
        raise SystemExit(f"vlmprobe {' '.join(argv)} failed")
    results = json.loads((out / "results.json").read_text())
    return float(results["top1"])


def _finetune(config: Path, out: Path) -> dict:
    from accelerate.state import AcceleratorState

    from vlmprobe.finetune.config import load_config
    from vlmprobe.finetune.train import finetune

    cfg = load_config(config, {"output_dir": str(out)})
    AcceleratorState._reset_state(reset_partial_state=True)
    start = time.perf_counter()
    summary = finetune(cfg)
    summary["wall_s"] = time.perf_counter() - start
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/finetune-toy-bench")
    ap.add_argument("--limit", type=int, default=None, help="evaluate a seeded subset of the test split")
    ap.add_argument("--skip-clip", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    recipes = Path(__file__).resolve().parents[1] / "recipes" / "configs"
    rows = {}
    vlm = _finetune(recipes / "toy.yaml", out / "vlm")
    for method in ("generate", "likelihood"):
        rows[f"toy VLM {method}"] = (_eval("toy:vlm", method, out / f"eval-vlm-{method}-before", args.limit),
                                     _eval(vlm["model_spec"], method, out / f"eval-vlm-{method}-after", args.limit))
    report = {"vlm_training": vlm, "rows": rows}
    if not args.skip_clip:
        clip = _finetune(recipes / "toy_clip.yaml", out / "clip")
        rows["toy CLIP zeroshot"] = (_eval("toy:clip", "zeroshot", out / "eval-clip-before", args.limit),
                                     _eval(clip["model_spec"], "zeroshot", out / "eval-clip-after", args.limit))
        report["clip_training"] = clip
    print(machine.describe())
    print(f"{'toy test split, top-1':28s} {'before':>8s} {'after':>8s} {'gain':>8s}")
    for name, (before, after) in rows.items():
        print(f"{name:28s} {before:8.3f} {after:8.3f} {after - before:+8.3f}")
    print(f"VLM fine-tuning: {vlm['steps']} steps in {vlm['wall_s']:.0f} s, val_acc {vlm.get('val_acc')}")
    (out / "finetune_toy.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {out / 'finetune_toy.json'}")


if __name__ == "__main__":
    main()
