"""Fine-tuning throughput on this machine, side by side: optimizer steps/s and answer tokens/s
of the tiny LLaVA (vlmprobe.testing) under LoRA, LoRA + gradient checkpointing, QLoRA (4-bit
base) and projector-only training, same data and batch; ratios are relative to LoRA.

    python benchmarks/finetune_speed.py [--steps 10] [--batch 4]

Each mode runs the real recipe code (config -> task -> accelerate loop) in this process; the
first step is excluded (warm-up); steps/s is 1 / median step time. Results also go to OUT/finetune_speed.json (OUT: --out, default
the current directory).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import machine  # benchmarks/machine.py (a script's own folder is on sys.path)
import numpy as np

MODES = {"lora": {}, "lora+ckpt": {"gradient_checkpointing": True}, "qlora": {"method": "qlora"},
         "projector": {"method": "projector"}}


def _images(root: Path) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog", "bird")):
        (root / name).mkdir(parents=True)
        for i in range(16):
            arr = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
            arr[..., c] += 170
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return str(root)


def main() -> None:
    from accelerate.state import AcceleratorState

    from vlmprobe.finetune.config import load_config
    from vlmprobe.finetune.tasks import build_task, load_datasets
    from vlmprobe.finetune.train import make_accelerator, read_log, train
    from vlmprobe.testing import build_tiny_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vlmprobe-ftbench-"))
    llava = build_tiny_model(tmp / "models", "llava")
    data = _images(tmp / "images")
    repo = Path(__file__).resolve().parents[1]
    results = {}
    for mode, over in MODES.items():
        cfg = load_config(repo / "recipes/configs/tiny.yaml", {
            "model": f"hf:{llava}", "train": data, "train_split": None, "train_limit": None, "val": None,
            "output_dir": str(tmp / mode), "max_steps": args.steps + 1, "per_device_batch_size": args.batch,
            "grad_accum": 1, "save_every": None, **over})
        AcceleratorState._reset_state(reset_partial_state=True)
        acc = make_accelerator(cfg)
        task = build_task(cfg)
        tr, _ = task.datasets(*load_datasets(cfg))
        train(cfg, acc, task, tr, None)
        rows = [json.loads(x) for x in (tmp / mode / "log.jsonl").read_text().splitlines()]
        per_step = np.diff([r["elapsed_s"] for r in rows])  # steps 2..N (step 1 = warm-up)
        step_s = float(np.median(per_step))  # median: robust to other processes' load spikes
        units = np.mean([r["units"] for r in rows[1:]])
        results[mode] = {"steps_per_s": 1.0 / step_s, "answer_tokens_per_s": units / step_s,
                         "mean_steps_per_s": args.steps / float(per_step.sum()),
                         "final_loss": read_log(tmp / mode / "log.jsonl")[args.steps + 1]}
    base = results["lora"]["steps_per_s"]
    print(machine.describe())
    print(f"tiny LLaVA, batch {args.batch}, {args.steps} timed steps, CPU")
    for mode, r in results.items():
        print(f"{mode:10s} {r['steps_per_s']:7.2f} steps/s  {r['answer_tokens_per_s']:8.1f} answer tok/s  "
              f"x{r['steps_per_s'] / base:5.2f} vs lora")
    out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"results: {out / 'finetune_speed.json'}")


if __name__ == "__main__":
    main()
