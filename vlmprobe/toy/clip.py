"""The toy CLIP: a tiny transformers ``CLIPModel`` trained contrastively on the digits.

Training pairs each training image with a caption of its class in a random template. With
10 classes a batch holds many same-class pairs, so the targets are class-aware: for image
embeddings ``u`` [B, D] and caption embeddings ``v`` [B, D] (both L2-normalised),
``logits = exp(t) * u @ v.T`` and ``T[i, j] = [y_i == y_j] / sum_j [y_i == y_j]``;
``loss = (CE(logits, T) + CE(logits.T, T)) / 2`` (soft-target cross-entropy both ways).
Captions are embedded once per step for the (classes x templates) unique strings and gathered.
Saved with ``save_pretrained`` + ``CLIPProcessor`` so ``hfclip:PATH`` loads it; its vision
tower is reused (frozen) by the toy VLM, as LLaVA reuses CLIP's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from ..progress import bar as tqdm

from .corpus import CAPTION_TEMPLATES
from .digits import CLASSNAMES
from .training import optimizer_step, save_trained, warmup_cosine
from .vocab import build_tokenizer


@dataclass(frozen=True)
class ClipConfig:
    image_size: int = 32
    patch_size: int = 8  # 4 x 4 = 16 patches + CLS
    vision_width: int = 64
    vision_layers: int = 3
    text_width: int = 64
    text_layers: int = 2
    heads: int = 4
    projection_dim: int = 64
    max_text_len: int = 16
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 50
    max_shift: int = 2  # random integer translation (pixels) applied to each training batch


def image_processor(cfg: ClipConfig):
    """CLIP normalisation at the toy resolution (no resize/crop effect on 32x32 inputs)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": cfg.image_size},
                              crop_size={"height": cfg.image_size, "width": cfg.image_size})


def build_clip(cfg: ClipConfig, vocab_size: int, seed: int):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
                         num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.heads,
                         max_position_embeddings=cfg.max_text_len, pad_token_id=0, bos_token_id=2, eos_token_id=3),
        vision_config=dict(image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.vision_width,
                           intermediate_size=4 * cfg.vision_width, num_hidden_layers=cfg.vision_layers,
                           num_attention_heads=cfg.heads),
        projection_dim=cfg.projection_dim)
    return CLIPModel(config)


def _pooled(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor or (transformers 5) an output whose pooler_output it is."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def shift_batch(pixels: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random integer translation per image (zero-padded in normalised space = mean colour)."""
    if max_shift <= 0:
        return pixels
    out = torch.zeros_like(pixels)
    h, w = pixels.shape[-2:]
    shifts = torch.randint(-max_shift, max_shift + 1, (len(pixels), 2), generator=gen).tolist()
    for i, (dy, dx) in enumerate(shifts):
        out[i, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            pixels[i, :, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def train_clip(images: list, labels: np.ndarray, out_dir, cfg: ClipConfig = ClipConfig(), seed: int = 0) -> dict:
    """Train on ``images`` (PIL) / ``labels`` and save model + processor to ``out_dir``.
    Returns training stats (final loss, parameter count, seconds)."""
    import time

    from transformers import CLIPProcessor

    start = time.time()
    captions = [t.format(c) for c in CLASSNAMES for t in CAPTION_TEMPLATES]  # index = class * T + template
    tokenizer = build_tokenizer(captions, image_token=False, add_eos=True, model_max_length=cfg.max_text_len)
    processor = CLIPProcessor(image_processor=image_processor(cfg), tokenizer=tokenizer)
    model = build_clip(cfg, len(tokenizer), seed)
    model.train()
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    text = tokenizer(captions, padding=True, return_tensors="pt")
    y = torch.as_tensor(labels)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    n_t = len(CAPTION_TEMPLATES)
    losses = []
    for _ in tqdm(range(cfg.steps), desc="toy CLIP", leave=False):
        idx = torch.randint(len(y), (cfg.batch_size,), generator=gen)
        yb = y[idx]
        cap = yb * n_t + torch.randint(n_t, (cfg.batch_size,), generator=gen)
        batch_pixels = shift_batch(pixels[idx], cfg.max_shift, gen)
        u = F.normalize(_pooled(model.get_image_features(pixel_values=batch_pixels)), dim=-1)
        v_all = F.normalize(_pooled(model.get_text_features(**text)), dim=-1)
        v = v_all[cap]
        logits = model.logit_scale.exp().clamp(max=100) * u @ v.T
        same = (yb[:, None] == yb[None, :]).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        losses.append(optimizer_step(opt, sched, loss))
    save_trained(model, processor, out_dir)
    return {"config": asdict(cfg), "final_loss": float(np.mean(losses[-50:])),
            "parameters": sum(p.numel() for p in model.parameters()), "seconds": round(time.time() - start, 1)}
