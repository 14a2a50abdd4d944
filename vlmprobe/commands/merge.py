"""``vlmprobe merge --model hf:BASE+adapter:PATH --out DIR``: merge a LoRA adapter into its base."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("merge", help="merge a LoRA adapter into its base model (loads as hf:DIR)",
                              description=__doc__)
    p.add_argument("--model", required=True, help="hf:BASE+adapter:PATH (e.g. a fine-tuning run's adapter)")
    p.add_argument("--out", required=True, help="new model directory (must not exist or be empty)")
    p.add_argument("--dtype", default="float32", help="dtype to load and save in: float32 | bfloat16 | float16")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..finetune.merge import merge_adapter

    spec = merge_adapter(args.model, args.out, args.dtype)
    print(f"merged model written to {args.out}; evaluate it as --model {spec}")
    return 0
