"""The ``state`` fast likelihood path on a hybrid model, against naive scoring, side by side in one run.

    python benchmarks/likelihood_state.py --threads 1            # CPU: a Qwen3.5-shaped random model
    python benchmarks/likelihood_state.py --ks 10,100 --repeats 1  # quicker

Qwen3.5's language model mixes Gated DeltaNet (linear attention with a recurrent state and a short
convolution) with full attention, so a candidate trie cannot be scored in one masked forward;
``scoring="fast"`` picks the ``state`` path (``vlmprobe.models.likelihood``): the image + prompt
once, then every candidate row continues from a copy of the prefix's cache. ``scoring="naive"``
runs one full forward (image included) per candidate.

The model is ``Qwen3_5ForConditionalGeneration`` with random weights, built in memory: a 2-block,
64-wide ViT (patch 8, 2x2 merger: a 128 px image = 64 image tokens), a 4-layer, 256-wide language
model in the released 3:1 pattern (3 Gated DeltaNet layers, 1 gated full-attention layer), Qwen2's
real byte-level BPE vocabulary (151,936 ids, ``vlmprobe.testing.realtok``; Qwen3.5's own vocabulary
is larger, 248k) with Qwen3.5's non-thinking chat template (``vlmprobe.testing.families_hybrid``),
fp32 on the CPU. Candidates: the first K ImageNet class names after "The photo features a".
Naive is timed on ``--naive-candidates`` names spread over the K and extrapolated linearly to K
(the per-image processor call once, plus K times the measured cost per candidate), as
``benchmarks/likelihood.py`` does; the max abs difference is taken on those names. Times are the
best of ``--repeats`` runs. It also prints fast scoring's own split: the prefix forward vs the
candidate rows (how many rows and forwards the chunking made).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

import machine  # benchmarks/machine.py (a script's own folder is on sys.path)
from likelihood import ANSWER_PREFIX, QUESTION, best, classnames  # benchmarks/likelihood.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
IMAGE = 128  # px: (128 / 8)^2 = 256 patches -> 64 merged image tokens


def build(cache: str | None):
    """An in-memory Qwen3.5 VLM with the real Qwen2 vocabulary (module docstring)."""
    from transformers import (AutoTokenizer, Qwen2VLImageProcessor, Qwen3_5Config, Qwen3_5ForConditionalGeneration,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    from vlmprobe.cache import home_dir
    from vlmprobe.models.vlm import VisionLanguageModel
    from vlmprobe.testing.families_hybrid import QWEN3_5_TEMPLATE
    from vlmprobe.testing.realtok import real_tokenizers

    tok = AutoTokenizer.from_pretrained(real_tokenizers(cache or home_dir() / "real-tokenizers")["qwen2"],
                                        padding_side="left", eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = dict(zip(("start", "end", "image", "video"),
                   tok.convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])))
    text = dict(vocab_size=len(tok), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=64, linear_key_head_dim=64,
                linear_value_head_dim=64, linear_num_key_heads=2, linear_num_value_heads=4, linear_conv_kernel_dim=4,
                layer_types=["linear_attention"] * 3 + ["full_attention"], max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25,
                                 "mrope_section": [4, 2, 2], "mrope_interleaved": True},
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=256, patch_size=8,
                  spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=256)
    config = Qwen3_5Config(text_config=text, vision_config=vision, image_token_id=ids["image"],
                           video_token_id=ids["video"], vision_start_token_id=ids["start"],
                           vision_end_token_id=ids["end"])
    torch.manual_seed(0)
    model = Qwen3_5ForConditionalGeneration(config).eval()
    pixels = dict(min_pixels=IMAGE * IMAGE, max_pixels=IMAGE * IMAGE)
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(patch_size=8, merge_size=2, **pixels),
                                 video_processor=Qwen3VLVideoProcessor(patch_size=8, merge_size=2), tokenizer=tok,
                                 chat_template=QWEN3_5_TEMPLATE)
    return VisionLanguageModel.from_parts(model, processor, "random:qwen3.5-cpu-shapes+qwen2-tokenizer")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", default="10,100,1000")
    ap.add_argument("--images", type=int, default=2, help="images scored by the fast path")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--chunk-size", type=int, default=256, help="candidate tokens per forward")
    ap.add_argument("--repeats", type=int, default=3, help="each timing is the best of this many runs")
    ap.add_argument("--naive-candidates", type=int, default=10, help="naive timed on this many names")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--cache", default=None, help="where the converted real tokenizer is kept "
                                                   "(default $VLMPROBE_HOME/real-tokenizers)")
    args = ap.parse_args(argv)
    args.device = "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)

    from vlmprobe.models import likelihood
    from vlmprobe.models.tokentrie import plan_rows, tokenize_continuations

    vlm = build(args.cache)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (IMAGE, IMAGE, 3), dtype=np.uint8)) for _ in range(args.images)]
    names = classnames()
    prompt = vlm.render(QUESTION, answer_prefix=ANSWER_PREFIX)
    prefix_len = vlm.encode(images[:1], [prompt])["input_ids"].shape[1]
    req = tokenize_continuations(vlm.tokenizer, prompt, names)
    ntok = [len(s) - st for s, st in zip(req.seqs, req.start)]
    kw = dict(answer_prefix=ANSWER_PREFIX, batch_size=args.batch_size, chunk_size=args.chunk_size)
    print(machine.describe("cpu"))
    print(f"model: {vlm.spec}, layers {vlm.model.config.text_config.layer_types}; fast path: "
          f"{likelihood.fast_path(vlm.model)}; torch threads {torch.get_num_threads()}")
    print(f"prefix: {prefix_len} tokens (64 image tokens); candidates: ImageNet class names, {np.mean(ntok):.2f} "
          f"tokens on average (max {max(ntok)}); {len(plan_rows(req.seqs)[0])} candidate rows for all {len(names)}")
    print(f"fast: {len(images)} images, batch {args.batch_size}, chunk {args.chunk_size} tokens. naive: 1 image, "
          f"{args.naive_candidates} names spread over the K, extrapolated linearly. Times: best of {args.repeats}.\n")
    vlm.score(images[:1], names[:10], **kw)  # warm-up
    t_fixed = best(lambda: vlm.encode(images[:1], [prompt], padding_side="right"), args)[1]
    # fast scoring's split: the prefix forward alone (what every K pays once per image)
    t_prefix = best(lambda: vlm.model(**vlm.encode(images[:1], [prompt], padding_side="right"), use_cache=True,
                                      logits_to_keep=1), args)[1]
    header = f"{'K':>5} {'fast s/img':>11} {'naive s/img':>12} {'ratio':>8} {'max|diff|':>10}  note"
    print(header)
    print("-" * len(header))
    for K in [int(k) for k in args.ks.split(",")]:
        cands = names[:K]
        fast, t_fast = best(lambda: vlm.score(images, cands, **kw), args)
        pick = np.unique(np.linspace(0, K - 1, min(args.naive_candidates, K)).round().astype(int))
        sub = [cands[i] for i in pick]
        naive, t_naive = best(lambda: vlm.score(images[:1], sub, scoring="naive", **kw), args)
        per_fast = t_fast / len(images)
        per_naive = t_fixed + (t_naive - t_fixed) * K / len(sub)
        diff = (fast[:1, pick] - naive).abs().max().item()
        rows = len(plan_rows(tokenize_continuations(vlm.tokenizer, prompt, cands).seqs)[0])
        note = f"{rows} rows; prefix forward {t_prefix:.3f} s/img"
        note += "" if len(sub) == K else f"; naive: {len(sub)}/{K} timed, extrapolated"
        if (fast[:1, pick].argmax(1) != naive.argmax(1)).any():
            note += "; ARGMAX DIFFERS"
        print(f"{K:>5} {per_fast:>11.4f} {per_naive:>12.3f} {per_naive / per_fast:>7.1f}x {diff:>10.2e}  {note}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
