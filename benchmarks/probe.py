"""Linear-probe training: vlmprobe's torch L-BFGS vs scikit-learn ``LogisticRegression``.

Both fit the same objective (multinomial cross-entropy + L2, ``C`` in scikit-learn's units,
same tolerance DEFAULT_TOL = 1e-5 on the gradient max-abs) on the same standardised features, side by side
in one process, with the same thread count. Timings are the best of ``--repeats`` interleaved
runs, as wall time and as process CPU time (robust on a shared machine with ``--threads 1``). Printed: test accuracy, final objective J (float32, same
formula for all), seconds, and the ratio sklearn / ours, for

- ``single``: one fit at ``--C``;
- ``sweep``: the probe protocol, one fit per C of the default grid (1e-4 .. 1e2) on train,
  validation accuracy for each, then a refit on train + validation at the chosen C
  (``select_probe``; ours warm-starts along the grid, scikit-learn fits each C from scratch).

    python benchmarks/probe.py                          # 10k x 1024, 100 classes, CPU, 2 threads (< 5 min on 2 cores)
    python benchmarks/probe.py --device cuda --n 200000  # GPU (ours only: --skip-sklearn)

The machine (CPU model, cores, BLAS, GPU) is printed with the figures; fp16 is timed only where
the hardware does it natively (``machine.native``: an emulated fp16 fit took 219 s instead of 3 s
on an AMD EPYC), otherwise it is skipped and the skip printed (``--force-emulated`` times it).

Synthetic data: class means ``mu_k ~ N(0, s^2 I)`` in a random 64-dim subspace, rows
``x = mu_y + N(0, I)``; ``--separation s`` sets the difficulty.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def synthetic(n: int, d: int, k: int, separation: float, seed: int):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, 64)))[0]  # [d, 64]
    means = rng.standard_normal((k, 64)) * separation @ basis.T  # [k, d]
    y = rng.integers(0, k, size=n)
    x = means[y] + rng.standard_normal((n, d))
    return x.astype(np.float32), y


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="training rows (validation and test: n/4 each)")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--separation", type=float, default=0.35)
    ap.add_argument("--C", type=float, default=0.01, help="inverse L2 strength (scikit-learn units) for 'single'")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch and BLAS threads, the same for both")
    ap.add_argument("--repeats", type=int, default=1, help="timings are the best of this many runs")
    ap.add_argument("--modes", default="single,sweep")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--force-emulated", action="store_true",
                    help="time fp16 even where the CPU only emulates it (minutes instead of seconds)")
    args = ap.parse_args(argv)
    import machine
    from threadpoolctl import threadpool_limits

    from vlmprobe.probe.linear import Standardizer, accuracy, fit_probe, objective, select_probe

    torch.set_num_threads(args.threads)
    q = args.n // 4
    x, y = synthetic(args.n + 2 * q, args.dim, args.classes, args.separation, args.seed)
    xtr, ytr = x[:args.n], y[:args.n]
    xva, yva = x[args.n:args.n + q], y[args.n:args.n + q]
    xte, yte = x[args.n + q:], y[args.n + q:]
    scaler = Standardizer.fit(torch.from_numpy(xtr))
    yt = torch.from_numpy(ytr).long()
    cuda = args.device.startswith("cuda")
    solvers = {"ours fp32": dict(backend="torch", precision="fp32", device=args.device),
               "ours fp16": dict(backend="torch", precision="fp16", device=args.device)}
    fp16_native, ratio = machine.native(torch.float16, args.device)
    if not fp16_native and not args.force_emulated:  # e.g. 219 s instead of 3 s on an AMD EPYC
        del solvers["ours fp16"]
        print(machine.skip_line(torch.float16, ratio))
    if not args.skip_sklearn:
        solvers["sklearn"] = dict(backend="sklearn", device="cpu")
    print(machine.describe(args.device))
    print(f"train {xtr.shape}, val {xva.shape}, test {xte.shape}, {args.classes} classes, device={args.device}, "
          f"threads={args.threads}, best of {args.repeats}")

    def single(kw):
        sc = Standardizer(scaler.mean.to(kw["device"]), scaler.std.to(kw["device"]))
        p = fit_probe(xtr, ytr, args.classes, args.C, scaler=sc, **kw)
        return p, None

    def sweep(kw):
        sel = select_probe(xtr, ytr, xva, yva, args.classes, **kw)
        return sel.probe, sel.C

    results = {"n": args.n, "dim": args.dim, "classes": args.classes, "device": args.device, "threads": args.threads,
               "machine": machine.describe(args.device), "fp16_native": fp16_native, "fp16_vs_fp32_matmul": ratio}
    for mode in args.modes.split(","):
        fn = {"single": single, "sweep": sweep}[mode]
        times = {name: [] for name in solvers}
        cpu_times = {name: [] for name in solvers}
        out = {}
        with threadpool_limits(args.threads):
            for _ in range(args.repeats):
                for name, kw in solvers.items():
                    if cuda:
                        torch.cuda.synchronize()
                    t0, c0 = time.perf_counter(), time.process_time()
                    probe, chosen = fn(kw)
                    if cuda:
                        torch.cuda.synchronize()
                    times[name].append(time.perf_counter() - t0)
                    cpu_times[name].append(time.process_time() - c0)
                    out[name] = (probe, chosen)
        print(f"\n[{mode}] " + (f"C={args.C}" if mode == "single" else "C grid 1e-4..1e2 + refit on train+val"))
        rows = {}
        for name, (probe, chosen) in out.items():
            acc = accuracy(probe.logits(torch.from_numpy(xte)), yte)
            zz = probe.scaler(torch.from_numpy(xtr if mode == "single" else np.concatenate([xtr, xva])))
            yy = yt if mode == "single" else torch.from_numpy(np.concatenate([ytr, yva])).long()
            j = float(objective(zz.cpu(), yy, probe.weight.cpu(), probe.bias.cpu(), probe.C))
            rows[name] = {"seconds": min(times[name]), "cpu_seconds": min(cpu_times[name]), "test_accuracy": acc,
                          "objective": j, "C": probe.C, "iterations": probe.n_iter}
            print(f"  {name:10s} wall {min(times[name]):7.2f} s  cpu {min(cpu_times[name]):7.2f} s  "
                  f"test acc {100 * acc:6.2f}%  J={j:.6f}  C={probe.C:g}")
        if "sklearn" in rows:
            for name in [n for n in ("ours fp32", "ours fp16") if n in rows]:
                r = rows[name]
                r["speedup_vs_sklearn"] = rows["sklearn"]["seconds"] / r["seconds"]
                r["cpu_speedup_vs_sklearn"] = rows["sklearn"]["cpu_seconds"] / r["cpu_seconds"]
                r["accuracy_minus_sklearn_points"] = 100 * (r["test_accuracy"] - rows["sklearn"]["test_accuracy"])
                print(f"  {name}: {r['speedup_vs_sklearn']:.1f}x faster than sklearn (wall), "
                      f"{r['cpu_speedup_vs_sklearn']:.1f}x (CPU time), accuracy "
                      f"{r['accuracy_minus_sklearn_points']:+.2f} points")
        results[mode] = rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
