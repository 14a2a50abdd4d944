"""The project's record of GPU figures: one table from one command on one CUDA GPU.

    python benchmarks/gpu.py                      # LLaVA-1.5-7B + CLIP ViT-L/14-336 shapes, bf16, < 8 min
    python benchmarks/gpu.py --device cpu --tiny  # the same code paths on tiny shapes: a smoke test in seconds

Models have random weights built from their configs (nothing downloaded; timing does not depend
on weight values): a LLaVA-1.5-7B-shaped ``LlavaForConditionalGeneration`` (Llama-2-7B LM: hidden
4096, 32 layers, 32 heads, intermediate 11008, vocab 32064; CLIP ViT-L/14-336 vision tower:
hidden 1024, 24 layers, patch 14, 336 px -> 576 image tokens) created directly on the GPU in
bf16, saved once to a scratch directory and loaded back through ``vlmprobe.load_model`` (the
path users take), and open_clip's ``ViT-L-14-336`` with ``pretrained=None``. Class names are
the 1,000 ImageNet names (``--classes imagenet``); the VLM tokenizer is LLaMA-2's real
vocabulary when ``shared/reference/tokenizers`` is present (``--tokenizer auto``; it sets how many
tokens each class name takes), else vlmprobe.testing's Llama-like BPE (said in the output).

Rows (each through the library's public API, i.e. the code users run):

- likelihood: ``model.score`` over 1,000 class names with the paper's answer prefix, ``fast``
  (shared prefix + token trie) on ``--images`` images; ``naive`` (one full forward per class) on
  ``--naive-classes`` classes spread over the 1,000, extrapolated linearly to 1,000; ratio.
- generation: ``model.generate`` at batch ``--gen-batch`` (32), exactly 16 new tokens, left padding.
- features: ``vlmprobe.probe.extract_features`` of every LM layer (last-token pooling) through
  the DataLoader loop, from JPEG files.
- CLIP zero-shot: ``vlmprobe.evaluate(..., "zeroshot")`` end to end from JPEG files with
  ``--workers`` decoding processes (pinned memory), and the model alone on pre-processed tensors.
- LoRA / QLoRA: the fine-tuning recipe's task (``vlmprobe.finetune.tasks.build_task``: load,
  LoRA r=128 alpha=256 on the LM, 4-bit NF4 base for QLoRA) and its loss; AdamW steps timed
  after one warm-up step; tokens/s counts every input token (image tokens included).

Peak memory is ``torch.cuda.max_memory_allocated`` during each row's timed call, weights included
(CUDA only). The machine line names
GPU, CPU and BLAS. Results also go to ``--json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import machine  # noqa: E402  (benchmarks/machine.py; a script's own folder is on sys.path)

QUESTION = "What type of object is in this photo?"
ANSWER_PREFIX = "The photo features a"  # the paper's probability-inference answer start
LORA = {"lora_r": 128, "lora_alpha": 256}  # the paper's fine-tuning adapter


def llava_7b_config(tokenizer):
    """LlavaConfig with llava-hf/llava-1.5-7b-hf's shapes (CLIP ViT-L/14-336 + Llama-2-7B)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    from vlmprobe.testing import IMAGE_TOKEN

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                       image_seq_length=576, vision_feature_select_strategy="default", vision_feature_layer=-2)


def vlm_tokenizer(choice: str, work: Path):
    """(tokenizer, chat template, description): LLaMA-2's real vocabulary (vlmprobe.testing.realtok, from
    ``shared/reference/tokenizers``; never downloaded here) for ``real``, and for ``auto`` when it
    is present; else vlmprobe.testing's Llama-like BPE."""
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.testing import LLAVA_CHAT_TEMPLATE, llama_tokenizer

    note = ""
    if choice in ("auto", "real"):
        try:
            from vlmprobe.testing.realtok import real_tokenizers
            from vlmprobe.testing.real import LLAVA15_HF_CHAT_TEMPLATE, llava_real_tokenizer

            tok = llava_real_tokenizer(real_tokenizers(work / "tokenizers", download=False)["llama"])
            return tok, LLAVA15_HF_CHAT_TEMPLATE, "LLaMA-2 vocabulary (real, 32000 pieces)"
        except (VlmprobeError, ImportError, OSError) as e:
            if choice == "real":
                raise
            note = f" (the real LLaMA-2 vocabulary is not available here: {str(e).splitlines()[0]})"
    return llama_tokenizer(), LLAVA_CHAT_TEMPLATE, "vlmprobe.testing Llama-like BPE" + note


def write_llava_7b(out: Path, device: str, tok, chat_template: str) -> str:
    """Random-weight LLaVA-1.5-7B shapes built on ``device`` in bf16 (sdpa), saved to ``out``."""
    from transformers import CLIPImageProcessor, GenerationConfig, LlavaForConditionalGeneration, LlavaProcessor

    from vlmprobe.testing import IMAGE_TOKEN

    config = llava_7b_config(tok)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(old)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id, do_sample=False)
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 336},
                                                                  crop_size={"height": 336, "width": 336}),
                               tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, image_token=IMAGE_TOKEN, chat_template=chat_template)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    del model
    return str(out)


def write_images(root: Path, n: int, keep: int, seed: int = 0) -> list:
    """``n`` ImageNet-sized (500 x 375) JPEGs in ``root/images/`` (an unlabeled folder); returns
    the first ``keep`` as PIL images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    images = []
    for i in range(n):
        img = Image.fromarray(np.roll(base, 7 * i, axis=1))
        img.save(folder / f"{i:05d}.jpg", quality=90)
        if i < keep:
            images.append(img)
    return images


class Bench:
    """Timing and peak memory of rows on one device."""

    def __init__(self, device: str):
        self.device, self.cuda = device, device.startswith("cuda")
        self.rows: list[dict] = []

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def timed(self, fn):
        """(result, seconds, peak GiB or None) of one call of ``fn``."""
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.sync()
        t = time.perf_counter()
        out = fn()
        self.sync()
        seconds = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None
        return out, seconds, peak

    def add(self, row: str, value: float, unit: str, peak=None, note: str = ""):
        self.rows.append({"row": row, "value": value, "unit": unit, "peak_gib": peak, "note": note})
        mem = f"{peak:8.1f}" if peak is not None else f"{'-':>8}"
        print(f"{row:34s} {value:12.2f} {unit:10s} {mem}  {note}", flush=True)


def bench_likelihood(b: Bench, vlm, images, names, args):
    kw = dict(prompt=QUESTION, answer_prefix=ANSWER_PREFIX, batch_size=args.lik_batch, chunk_size=args.chunk_size)
    vlm.score(images[:1], names[:10], **kw)  # warm-up (kernels, tokenizer caches)
    fast, t_fast, peak = b.timed(lambda: vlm.score(images, names, **kw))
    pick = np.unique(np.linspace(0, len(names) - 1, args.naive_classes).round().astype(int))
    sub = [names[i] for i in pick]
    naive, t_naive, _ = b.timed(lambda: vlm.score(images[:1], sub, scoring="naive", **kw))
    fast_ips = len(images) / t_fast
    naive_ips = 1.0 / (t_naive * len(names) / len(sub))  # one image: K x the per-class forward cost
    diff = (fast[:1, pick].float() - naive.float()).abs().max().item()
    b.add(f"likelihood fast, K={len(names)}", fast_ips, "images/s", peak,
          f"{len(images)} images, batch {args.lik_batch}, chunk {args.chunk_size}")
    b.add(f"likelihood naive, K={len(names)}", naive_ips, "images/s", None,
          f"{len(sub)} classes timed, extrapolated to {len(names)}")
    b.add("likelihood fast / naive", fast_ips / naive_ips, "x", None, f"max|fast-naive| {diff:.2e} on the timed classes")


def bench_generation(b: Bench, vlm, images, args):
    batch = (images * (args.gen_batch // len(images) + 1))[: args.gen_batch]
    vlm.generate(batch[:2], [QUESTION] * 2, max_new_tokens=2)  # warm-up
    out, t, peak = b.timed(lambda: vlm.generate(batch, [QUESTION] * len(batch), max_new_tokens=16, min_new_tokens=16))
    b.add(f"generation, batch {len(batch)}", len(batch) / t, "images/s", peak, "16 new tokens each, greedy, left padding")


def bench_features(b: Bench, vlm, dataset, work: Path, args):
    from vlmprobe.probe.extract import extract_features

    def run(tag):
        return extract_features(vlm, dataset, layers="all", pooling="last", batch_size=args.feat_batch,
                                workers=args.workers, cache_dir=work / f"features-{tag}", progress=False)

    run("warm")  # (small dataset: warm-up over the same images)
    feats, t, peak = b.timed(lambda: run("timed"))
    b.add("features, all LM layers", len(dataset) / t, "images/s", peak,
          f"{len(feats.names) if hasattr(feats, 'names') else ''} features, batch {args.feat_batch}, "
          f"{args.workers} workers, JPEG decode included")


def bench_clip(b: Bench, clip, dataset, names, work: Path, args):
    import vlmprobe
    from vlmprobe.data import ImageDataset

    labeled = ImageDataset(dataset.name, [type(s)(s.id, s.image, i % len(names)) for i, s in enumerate(dataset.samples)],
                           names)
    classifier, t_text, _ = b.timed(lambda: clip.text_classifier(names, ("a photo of a {}.",), cache=False))
    pixels = torch.stack([clip.preprocess(labeled.load_image(i)) for i in range(min(len(labeled), args.clip_batch))])
    pixels = pixels.repeat((args.clip_batch + len(pixels) - 1) // len(pixels), 1, 1, 1)[: args.clip_batch]
    clip.encode_images(pixels[:8])  # warm-up

    def model_only():
        emb = clip.encode_images(pixels)
        return (clip.logit_scale * emb @ classifier.to(emb.device).T).argmax(1).cpu()

    _, t, peak = b.timed(model_only)
    b.add("CLIP zero-shot, model only", len(pixels) / t, "images/s", peak,
          f"batch {len(pixels)}, preprocessed tensors; text classifier ({len(names)} classes) {t_text:.1f} s")
    vlmprobe.evaluate(clip, labeled.subset(range(min(8, len(labeled)))), "zeroshot", work / "zs-warm",
                      batch_size=args.clip_batch, workers=0, progress=False)
    _, t, peak = b.timed(lambda: vlmprobe.evaluate(clip, labeled, "zeroshot", work / "zs", batch_size=args.clip_batch,
                                                   workers=args.workers, progress=False))
    b.add("CLIP zero-shot, vlmprobe eval", len(labeled) / t, "images/s", peak,
          f"{len(labeled)} JPEGs, {args.workers} workers, run files written")


def bench_training(b: Bench, spec: str, dataset, names, method: str, args):
    """LoRA or QLoRA steps of the fine-tuning task; -> tokens/s."""
    from vlmprobe.data import ImageDataset
    from vlmprobe.finetune.config import load_config
    from vlmprobe.finetune.data import ConversationDataset, classification_conversations
    from vlmprobe.finetune.tasks import build_task

    cfg = load_config(None, {"model": spec, "dtype": args.dtype, "method": method, **LORA,
                             "per_device_batch_size": args.train_batch})
    labeled = ImageDataset(dataset.name, [type(s)(s.id, s.image, i % len(names)) for i, s in enumerate(dataset.samples)],
                           names)
    task = build_task(cfg, device=args.device)
    data = ConversationDataset(classification_conversations(labeled, cfg.data.question, cfg.data.answer_template))
    model = task.model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batches = []
    for s in range(args.train_steps + 1):
        items = [data[(s * args.train_batch + j) % len(data)] for j in range(args.train_batch)]
        batch = task.collate(items)
        batches.append({k: v.to(args.device) if torch.is_tensor(v) else v for k, v in batch.items()})

    def step(batch):
        loss, _ = task.forward(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())

    step(batches[0])  # warm-up (allocations, kernels)
    tokens, t, peak = b.timed(lambda: sum(step(x) for x in batches[1:]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    b.add(f"{method} training", tokens / t, "tokens/s", peak,
          f"batch {args.train_batch}, {args.train_steps} steps, r={LORA['lora_r']}, {trainable / 1e6:.0f}M trainable")
    del task, model, opt, batches


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny models (vlmprobe.testing): a smoke test in seconds")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--images", type=int, default=None, help="images for likelihood (CUDA 16, tiny 2)")
    ap.add_argument("--files", type=int, default=None, help="JPEG files for features/CLIP eval (CUDA 2048, tiny 8)")
    ap.add_argument("--naive-classes", type=int, default=None, help="classes the naive path is timed on (20, tiny 4)")
    ap.add_argument("--lik-batch", type=int, default=8, help="images whose prefixes share one forward")
    ap.add_argument("--chunk-size", type=int, default=None, help="trie nodes per forward (CUDA 1024, tiny 256)")
    ap.add_argument("--gen-batch", type=int, default=None, help="generation batch (32, tiny 4)")
    ap.add_argument("--feat-batch", type=int, default=None, help="feature batch (32, tiny 4)")
    ap.add_argument("--clip-batch", type=int, default=None, help="CLIP batch (256, tiny 8)")
    ap.add_argument("--train-batch", type=int, default=None, help="training batch (8, tiny 2)")
    ap.add_argument("--train-steps", type=int, default=None, help="timed optimizer steps (5, tiny 2)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (CUDA: cores - 1, tiny 0)")
    ap.add_argument("--tokenizer", default="auto", choices=["auto", "real", "bpe"],
                    help="VLM tokenizer: real (LLaMA-2's vocabulary from shared/reference/tokenizers), bpe "
                         "(vlmprobe.testing's), auto (real when present)")
    ap.add_argument("--skip", default="", help="comma list of rows to skip: likelihood,generation,features,clip,lora,qlora")
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one, removed)")
    ap.add_argument("--json", default=None, help="also write the table here")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu --tiny for the smoke test", file=sys.stderr)
        return 2
    tiny = args.tiny
    pick = lambda full, small: small if tiny else full  # noqa: E731
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    args.images = args.images or pick(16, 2)
    args.files = args.files or pick(2048, 8)
    args.naive_classes = args.naive_classes or pick(20, 4)
    args.chunk_size = args.chunk_size or pick(1024, 256)
    args.gen_batch = args.gen_batch or pick(32, 4)
    args.feat_batch = args.feat_batch or pick(32, 4)
    args.clip_batch = args.clip_batch or pick(256, 8)
    args.train_batch = args.train_batch or pick(8, 2)
    args.train_steps = args.train_steps or pick(5, 2)
    args.workers = args.workers if args.workers is not None else (0 if tiny else max(1, min(15, (os.cpu_count() or 2) - 1)))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    t_start = time.perf_counter()

    import vlmprobe
    from vlmprobe.data import load_dataset, read_classnames
    from vlmprobe.testing import build_tiny_model

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vlmprobe-gpubench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["VLMPROBE_HOME"] = str(work / "home")  # text classifiers etc. never touch the user's cache
    b = Bench(args.device)
    try:
        print(machine.describe(args.device))
        names = read_classnames("imagenet")
        t = time.perf_counter()
        tok, template, tok_note = vlm_tokenizer(args.tokenizer, work)
        if tiny:
            if tok_note.startswith("LLaMA-2"):
                from vlmprobe.testing.real import build_real_model

                vlm_spec = f"hf:{build_real_model(work / 'models', 'llava-real', download=False)}"
            else:
                vlm_spec = f"hf:{build_tiny_model(work / 'models', 'llava')}"
            clip_spec = f"openclip:local-dir:{build_tiny_model(work / 'models', 'openclip')}"
        else:
            vlm_spec = f"hf:{write_llava_7b(work / 'llava-7b-shapes', args.device, tok, template)}"
            clip_spec = "openclip:ViT-L-14-336"  # no @pretrained: random weights from open_clip's config
        pil = write_images(work, args.files, args.images)
        files = load_dataset(str(work / "images"), unlabeled=True, classes="imagenet")
        vlm = vlmprobe.load_model(vlm_spec, device=args.device, dtype=args.dtype)
        shapes = "tiny" if tiny else "LLaVA-1.5-7B"
        attn = getattr(vlm.model.config, "_attn_implementation", "?")
        print(f"VLM: {shapes} shapes, random weights, {args.dtype}, attention {attn}, "
              f"{sum(p.numel() for p in vlm.model.parameters()) / 1e9:.2f} B parameters; built, saved and loaded "
              f"in {time.perf_counter() - t:.0f} s")
        from vlmprobe.models.tokentrie import build_trie, tokenize_continuations

        # the engine's own token definition: a name's tokens after the rendered prompt (SentencePiece
        # would count a spurious "▁" for a name tokenized alone with a leading space)
        req = tokenize_continuations(vlm.tokenizer, vlm.render(QUESTION, answer_prefix=ANSWER_PREFIX), names)
        ntok = [len(s) - st for s, st in zip(req.seqs, req.start)]
        print(f"tokenizer: {tok_note}; class names: {np.mean(ntok):.2f} tokens on average (max {max(ntok)}); "
              f"token trie of all {len(names)}: {build_trie(req.seqs).size} nodes")
        print(f"{'row':34s} {'value':>12s} {'unit':10s} {'peak GiB':>8s}  note")
        print("-" * 100)
        images = pil[: args.images] if len(pil) >= args.images else (pil * args.images)[: args.images]
        if "likelihood" not in skip:
            bench_likelihood(b, vlm, images, names, args)
        if "generation" not in skip:
            bench_generation(b, vlm, images, args)
        if "features" not in skip:
            bench_features(b, vlm, files.subset(range(min(len(files), pick(256, 8)))), work, args)
        del vlm
        if cuda:
            torch.cuda.empty_cache()
        if "clip" not in skip:
            clip = vlmprobe.load_model(clip_spec, device=args.device, dtype=args.dtype)
            bench_clip(b, clip, files, names, work, args)
            del clip
        for method in ("lora", "qlora"):
            if method not in skip:
                bench_training(b, vlm_spec, files, names, method, args)
                if cuda:
                    torch.cuda.empty_cache()
        print(f"total {time.perf_counter() - t_start:.0f} s; skipped rows: {', '.join(sorted(skip)) or 'none'}")
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": machine.describe(args.device), "tiny": tiny,
                                                   "dtype": args.dtype, "rows": b.rows}, indent=2) + "\n")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
