"""API requests in flight, side by side: wall time of the same ``openai:`` generation run with
``--concurrency`` 1, 4 and 16 against the shipped test server (``vlmprobe.testing.api_server``)
answering with the tiny LLaVA of ``vlmprobe.testing`` after a simulated server delay.

    python benchmarks/api_concurrency.py [--samples 32] [--latency 1.0] [--max-new-tokens 8]

Every run is the real path (``vlmprobe.classify.evaluate`` -> the engine -> ``ApiModel`` ->
openai client -> HTTP -> server); the records of all runs are checked equal. The server
generates one answer at a time, so the gain is the overlap of the delays (a remote API's
network and queueing time), bounded by latency / (latency + generation time). Results also go
to OUT/api_concurrency.json (OUT: --out, default the current directory).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py (a script's own folder is on sys.path)
import numpy as np


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
    from vlmprobe.testing import build_tiny_model
    from vlmprobe.testing.api_server import ApiTestServer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--latency", type=float, default=1.0, help="simulated server delay per answer, seconds")
    ap.add_argument("--max-new-tokens", type=int, default=8, help="generation budget (the server's own work)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vlmprobe-apibench-"))
    vlm = load_model(f"hf:{build_tiny_model(tmp / 'models', 'llava')}")
    data = load_dataset(_images(tmp / "images", args.samples))
    os.environ.setdefault("OPENAI_API_KEY", "benchmark")
    results, answers = {}, {}
    with ApiTestServer(vlm, latency=args.latency) as server:
        for concurrency in (1, 4, 16):
            model = load_model(f"openai:tiny-llava@{server.base_url}").configure(ApiOptions(concurrency=concurrency))
            t0 = time.perf_counter()
            method = make_method("generate", max_new_tokens=args.max_new_tokens)
            evaluate(model, data, method, tmp / f"c{concurrency}", batch_size=16, progress=False)
            results[concurrency] = time.perf_counter() - t0
            answers[concurrency] = [json.loads(x)["response"]
                                    for x in (tmp / f"c{concurrency}" / "samples.jsonl").read_text().splitlines()]
    assert answers[1] == answers[4] == answers[16], "concurrency changed the answers"
    print(machine.describe())
    print(f"{args.samples} generation requests ({args.max_new_tokens} new tokens), server delay {args.latency} s, "
          "tiny LLaVA answering one at a time")
    for c, s in results.items():
        print(f"--concurrency {c:2d}  {s:6.2f} s  {args.samples / s:6.1f} req/s  x{results[1] / s:5.2f} vs 1")
    out = Path(args.out or ".") / "api_concurrency.json"
    out.write_text(json.dumps({"samples": args.samples, "latency": args.latency, "max_new_tokens": args.max_new_tokens,
                               "seconds": {str(c): s for c, s in results.items()}}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
