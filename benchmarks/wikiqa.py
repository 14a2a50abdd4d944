"""Time per ImageWikiQA question, measured side by side on the same questions and model:
generation (greedy, parsed) vs likelihood scoring (fast shared-prefix engine vs naive full
forwards), plus the fast/naive agreement. Prints seconds per question and ratios.

    python benchmarks/wikiqa.py --model toy:vlm --data FILE.jsonl --images ROOT --limit 32
    python benchmarks/wikiqa.py --model hf:DIR --data ../shared/reference/imagewikiqa.jsonl --no-image
"""
from __future__ import annotations

import argparse
import time

import machine  # benchmarks/machine.py (a script's own folder is on sys.path)
import numpy as np


def main() -> None:
    from vlmprobe.data import read_image
    from vlmprobe.models import load_model
    from vlmprobe.wikiqa import Condition, GenerateScorer, LikelihoodScorer, load_questions

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--images", default=None)
    p.add_argument("--no-image", action="store_true")
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    qset = load_questions(args.data, None if args.no_image else args.images, limit=args.limit)
    questions = [q for q in qset.questions if args.no_image or q.image_path]
    images = None if args.no_image else [read_image(q.image_path) for q in questions]
    model = load_model(args.model, device=args.device)
    cond = Condition(image=not args.no_image)
    print(machine.describe())
    print(f"{len(questions)} questions, {args.model}, condition {cond.name}, batch {args.batch_size}")

    def timed(fn):
        fn(questions[:1], None if images is None else images[:1])  # warm-up (first-call overheads)
        out, t0 = [], time.perf_counter()
        for b in range(0, len(questions), args.batch_size):
            out.append(fn(questions[b:b + args.batch_size], None if images is None else images[b:b + args.batch_size]))
        return out, (time.perf_counter() - t0) / len(questions)

    gen = GenerateScorer(cond)
    recs, t_gen = timed(lambda q, im: gen.run_batch(model, q, im)[0])
    unparseable = np.mean([r["prediction"] is None for batch in recs for r in batch])
    fast, naive = LikelihoodScorer(cond, scoring="fast"), LikelihoodScorer(cond, scoring="naive")
    s_fast, t_fast = timed(lambda q, im: fast.option_scores(model, q, im))
    s_naive, t_naive = timed(lambda q, im: naive.option_scores(model, q, im))
    diff = max(float(np.abs(a[t] - b[t]).max()) for a, b in zip(s_fast, s_naive) for t in a)
    print(f"generate (greedy, {gen.max_new_tokens} tokens): {t_gen:.4f} s/question, unparseable {unparseable:.3f}")
    print(f"likelihood fast : {t_fast:.4f} s/question (letters + option texts)")
    print(f"likelihood naive: {t_naive:.4f} s/question; naive/fast = {t_naive / t_fast:.2f}x, "
          f"generate/fast = {t_gen / t_fast:.2f}x; max |fast - naive| = {diff:.2e}")


if __name__ == "__main__":
    main()
