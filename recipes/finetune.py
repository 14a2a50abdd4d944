"""Fine-tune a VLM (LoRA / QLoRA / projector) or a CLIP image tower on classification data.

Launch (any accelerate config in recipes/accelerate/: single_gpu, multi_gpu_ddp, fsdp,
deepspeed_zero2, cpu):

    accelerate launch --config_file recipes/accelerate/single_gpu.yaml recipes/finetune.py --config recipes/configs/llava15_7b_imagenet_lora.yaml

Miniature world on CPU, two DDP processes (gloo); either line works (accelerate's own
``--cpu --num_processes N`` would run one process without MPI, so the recipe re-launches itself
with N processes: vlmprobe.finetune.launch):

    accelerate launch --cpu --num_processes 2 recipes/finetune.py --config recipes/configs/toy.yaml
    accelerate launch --config_file recipes/accelerate/cpu.yaml recipes/finetune.py --config recipes/configs/toy.yaml

Any config field can be overridden: ``--lr 1e-4 --max_steps 100 --output_dir runs/x``.
A killed run started again with the same command resumes from its latest checkpoint.
Results: OUTPUT_DIR/summary.json names the model spec to evaluate, e.g.
``vlmprobe eval --model hf:BASE+adapter:OUTPUT_DIR/adapter --dataset ... --method generate``.
"""
from __future__ import annotations

import sys

from vlmprobe.distributed import all_or_none, world
from vlmprobe.errors import VlmprobeError
from vlmprobe.finetune.config import parse_args
from vlmprobe.finetune.launch import relaunch_cpu_processes
from vlmprobe.finetune.tasks import build_task, load_datasets
from vlmprobe.finetune.train import make_accelerator, train


def main(argv=None) -> int:
    relaunch_cpu_processes()  # accelerate launch --cpu --num_processes N: really start N processes
    cfg = parse_args(argv)
    # a failure on any process ends the run on every process with its one-line error (no hang)
    return all_or_none(world(), lambda: run(cfg))


def run(cfg) -> int:
    accelerator = make_accelerator(cfg)  # seeds everything before the adapter is initialised

    # model: the base model and what trains (LoRA / QLoRA / projector / CLIP image tower)
    task = build_task(cfg, device=str(accelerator.device))

    # data: classification conversations (+ general instructions) or labelled images
    train_data, val_data = task.datasets(*load_datasets(cfg))

    # train: accelerate loop with accumulation, schedule, eval, checkpoints; saves the result
    summary = train(cfg, accelerator, task, train_data, val_data)
    if accelerator.is_main_process:
        print(f"model: {summary['model_spec']}")
        print(f"log: {summary['log']}  summary: {cfg.train.output_dir}/summary.json")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VlmprobeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
