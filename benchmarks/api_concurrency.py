"""API requests in flight, side by side: throughput of the same ``openai:`` generation run with
``--concurrency`` N = 1, 4, 16 and 64 against the shipped test server
(``vlmprobe.testing.api_server``) answering with the tiny LLaVA of ``vlmprobe.testing`` after a
simulated server delay (``--latency``, default 0.4 s).

    python benchmarks/api_concurrency.py [--samples 256] [--latency 0.4] [--batch-size 16] [--repeats 3]

Every run is the real path (``vlmprobe.classify.evaluate`` -> the engine -> ``ApiModel`` ->
openai client -> HTTP -> server). The server is kept from being the bottleneck: it runs in its
own process (``python -m vlmprobe.testing.api_server --cache``) and an untimed warm-up run fills
its answer cache, so each timed request costs the server its delay and a cache lookup, as a
remote API with spare capacity would; ``--latency`` counts from a request's arrival. The goal
(issue 31): throughput at N = 16 and N = 64 at least 0.8 N times N = 1, with identical records;
the engine's batch (``--batch-size``) no longer caps the requests in flight. Throughput needs
rounds: 256 samples are 4 rounds of N = 64 (the default 128 of earlier versions were 2, where
the start-up of the run weighs as much as a round). The short runs (N >= 16, a few seconds
each) are timed ``--repeats`` times and the median is reported, each time listed; the long
ones once. Results also go to OUT/api_concurrency.json (OUT: --out, default the current
directory).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import machine  # benchmarks/machine.py (a script's own folder is on sys.path)
import numpy as np

LEVELS = (1, 4, 16, 64)
GOAL = 0.8  # throughput(N) >= GOAL * N * throughput(1) for N >= 16


def _images(root: Path, n: int) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        name = ("cat", "dog", "bird")[i % 3]
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return str(root)


def main() -> None:
    from vlmprobe import evaluate, load_dataset
    from vlmprobe.classify.runner import make_method
    from vlmprobe.models import load_model
    from vlmprobe.models.api import ApiOptions
    from vlmprobe.runs import strip_volatile
    from vlmprobe.testing import build_tiny_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.4, help="simulated server delay per answer, seconds")
    ap.add_argument("--max-new-tokens", type=int, default=8, help="generation budget (the warm-up's work)")
    ap.add_argument("--batch-size", type=int, default=16, help="the engine's batch")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each N >= 16 (the median is reported)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vlmprobe-apibench-"))
    tiny = build_tiny_model(tmp / "models", "llava")
    data = load_dataset(_images(tmp / "images", args.samples))
    os.environ.setdefault("OPENAI_API_KEY", "benchmark")
    method = make_method("generate", max_new_tokens=args.max_new_tokens)
    seconds, runs, records, spend = {}, {}, {}, {}

    server = subprocess.Popen([sys.executable, "-m", "vlmprobe.testing.api_server", "--model", f"hf:{tiny}", "--port",
                               "0", "--name", "tiny-llava", "--latency", str(args.latency), "--cache"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base_url = server.stdout.readline().split(" at ")[1].split(" ")[0]  # "serving ... at URL (Ctrl-C stops)"

    def run(name: str, concurrency: int):
        model = load_model(f"openai:tiny-llava@{base_url}").configure(ApiOptions(concurrency=concurrency))
        t0 = time.perf_counter()
        evaluate(model, data, method, tmp / name, batch_size=args.batch_size, progress=False)
        elapsed = time.perf_counter() - t0
        lines = (tmp / name / "samples.jsonl").read_text().splitlines()
        return elapsed, [strip_volatile(json.loads(x)) for x in lines], model.spending()

    try:
        run("warmup", 64)  # the server computes every answer once (untimed)
        for n in LEVELS:
            timed = [run(f"c{n}-{k}", n) for k in range(max(1, args.repeats) if n >= 16 else 1)]
            runs[n] = [t[0] for t in timed]
            seconds[n] = float(np.median(runs[n]))
            records[n], spend[n] = timed[0][1], timed[0][2]
            assert all(t[1] == records[n] for t in timed), f"N = {n}: repeated runs gave other records"
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as resp:
            max_active = json.loads(resp.read())["max_active"]
    finally:
        server.terminate()
        server.wait()
    same = all(records[n] == records[1] for n in LEVELS)
    assert same, "concurrency changed the records"
    print(machine.describe())
    print(f"{args.samples} generation requests, server delay {args.latency} s (answers cached after an untimed "
          f"warm-up: the server is not the bottleneck), engine batch {args.batch_size}; records identical: {same}")
    print(f"{'--concurrency':>14} {'seconds':>8} {'req/s':>7} {'x N=1':>7} {'goal':>6}  lowest N in flight  (each run)")
    for n in LEVELS:
        ratio = seconds[1] / seconds[n]
        goal = f"{GOAL * n:5.1f}" if n >= 16 else "    -"
        ok = "" if n < 16 else ("  ok" if ratio >= GOAL * n else "  MISSED")
        print(f"{n:>14} {seconds[n]:8.2f} {args.samples / seconds[n]:7.1f} {ratio:7.2f} {goal:>6}{ok}  "
              f"{spend[n]['concurrency']['lowest']:>3}  ({', '.join(f'{t:.2f}' for t in runs[n])})")
    print(f"most requests the server saw at once: {max_active}")
    out = Path(args.out or ".") / "api_concurrency.json"
    out.write_text(json.dumps({"samples": args.samples, "latency": args.latency, "batch_size": args.batch_size,
                               "max_new_tokens": args.max_new_tokens, "records_identical": same,
                               "repeats": args.repeats, "seconds": {str(n): s for n, s in seconds.items()},
                               "runs": {str(n): r for n, r in runs.items()},
                               "ratio_vs_1": {str(n): seconds[1] / s for n, s in seconds.items()}}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
