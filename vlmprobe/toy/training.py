"""Training-loop pieces shared by the toy CLIP and the toy VLM."""
from __future__ import annotations

import math

import torch


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """lr factor ``min(1, (s+1)/warmup) * (1 + cos(pi * min(s, steps) / steps)) / 2`` at step s."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 *
                                             (1 + math.cos(math.pi * min(s, steps) / steps)))


def optimizer_step(opt, sched, loss: torch.Tensor, clip_params=None) -> float:
    """Backward, optional grad-norm clipping to 1, optimizer and schedule step; returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, 1.0)
    opt.step()
    sched.step()
    return loss.item()


def save_trained(model, processor, out_dir) -> None:
    """Eval mode, then ``save_pretrained`` of model and processor (loadable by vlmprobe specs)."""
    model.eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
