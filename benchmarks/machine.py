"""What the hardware is and does natively, printed with every benchmark figure.

A figure without its machine misleads: the probe fit was 5.4x scikit-learn on one CPU and 2.1x
on an AMD EPYC, and fp16 arithmetic on a CPU without native fp16 (no AVX512-FP16 / AMX-FP16 /
ARM FP16) is emulated and can be 50-100x slower than fp32. ``describe()`` names the CPU, its
core count, torch/numpy BLAS and threads (and the GPU); ``native(dtype, device)`` measures a
matmul in that dtype against fp32 so a benchmark can skip what the hardware only emulates and
say so (``skip_line``).
"""
from __future__ import annotations

import os
import platform
import time

import torch

CPU_FLAGS = {"float16": ("avx512_fp16", "amx_fp16", "fphp", "asimdhp"), "bfloat16": ("avx512_bf16", "amx_bf16", "bf16")}
SLOWDOWN_LIMIT = 3.0  # a dtype this much slower than fp32 on the same matmul is "emulated"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def blas() -> str:
    """torch's BLAS (from its build config) and numpy's."""
    import numpy as np

    info = torch.__config__.show()
    torch_blas = next((part.split("=", 1)[1] for line in info.splitlines() for part in line.replace(",", " ").split()
                       if part.startswith("BLAS_INFO=")), "unknown")
    try:
        np_blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy: no dict mode
        np_blas = "unknown"
    return f"torch {torch_blas}, numpy {np_blas}"


def describe(device: str = "cpu") -> str:
    """One line: CPU model, cores, BLAS, torch threads (+ GPU name and memory on CUDA)."""
    line = (f"CPU: {cpu_model()} ({os.cpu_count()} cores), BLAS: {blas()}, torch {torch.__version__} "
            f"threads {torch.get_num_threads()}")
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(torch.device(device))
        line += f"; GPU: {p.name} ({p.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    return line


def native(dtype: torch.dtype, device: str = "cpu", size: int = 384) -> tuple[bool, float]:
    """(runs natively, time ratio dtype/fp32 of a ``size`` x ``size`` matmul) on ``device``. CUDA:
    every float dtype is native. CPU: the CPU's feature flags decide where /proc/cpuinfo lists
    them (a native-``dtype`` flag from CPU_FLAGS); elsewhere the measured ratio (<= SLOWDOWN_LIMIT).
    The ratio is the best of 5 timings each, so other load on a shared machine hardly moves it."""
    if device.startswith("cuda") or dtype == torch.float32:
        return True, 1.0

    def timed(dt):
        a = torch.randn(size, size).to(dt)
        a @ a  # warm-up
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t)
        return best

    ratio = timed(dtype) / max(timed(torch.float32), 1e-9)
    flags = cpu_flags()
    if flags:
        return any(f in flags for f in CPU_FLAGS.get(str(dtype).removeprefix("torch."), ())), ratio
    return ratio <= SLOWDOWN_LIMIT, ratio


def skip_line(dtype: torch.dtype, ratio: float) -> str:
    name = str(dtype).removeprefix("torch.")
    flags = [f for f in CPU_FLAGS.get(name, ()) if f in cpu_flags()]
    return (f"SKIPPED {name}: this CPU emulates it ({ratio:.0f}x slower than float32 on a matmul; native-"
            f"{name} CPU flags present: {', '.join(flags) or 'none'}); pass --force-emulated to time it anyway")
