"""Benchmarks run as scripts: ``benchmarks/gpu.py --device cpu --tiny`` exercises every row of the
GPU table (likelihood fast vs naive, generation, feature extraction, CLIP zero-shot, LoRA and
QLoRA steps) through the same code on tiny models; ``benchmarks/machine.py`` names the hardware."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_benchmark_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--device", "cpu", "--tiny", "--tokenizer", "bpe",
                           "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads(out.read_text())
    rows = {r["row"]: r for r in table["rows"]}
    expected = ["likelihood fast, K=1000", "likelihood naive, K=1000", "likelihood fast / naive",
                "generation, batch 4", "features, all LM layers", "CLIP zero-shot, model only",
                "CLIP zero-shot, vlmprobe eval", "lora training", "qlora training"]
    assert list(rows) == expected
    assert all(r["value"] > 0 for r in rows.values())
    assert rows["likelihood fast / naive"]["value"] > 5  # the trie path beats one forward per class
    diff = float(rows["likelihood fast / naive"]["note"].split("|fast-naive| ")[1].split()[0])
    assert diff < 1e-4  # exact against the reference on the timed classes
    assert "CPU:" in table["machine"] and "BLAS:" in table["machine"]
    assert "CPU:" in proc.stdout and "total" in proc.stdout


def test_machine_detects_emulated_dtypes(monkeypatch):
    """Fixed inputs, known answers: the CPU's flags decide when listed (a native-fp16 flag -> native,
    none of them -> emulated, whatever the timing); without flags the measured ratio decides
    against SLOWDOWN_LIMIT (a limit of 0 -> emulated, a huge one -> native)."""
    sys.path.insert(0, str(BENCH))
    try:
        import machine
    finally:
        sys.path.remove(str(BENCH))
    assert machine.native(torch.float32) == (True, 1.0)
    assert machine.native(torch.float16, device="cuda:0") == (True, 1.0)
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"sse2", "avx2", "avx512_fp16"})
    assert machine.native(torch.float16, size=32)[0] is True
    assert machine.native(torch.bfloat16, size=32)[0] is False  # flags listed, none for bfloat16
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"sse2", "avx2"})
    ok, ratio = machine.native(torch.float16, size=32)
    assert ok is False and ratio > 0
    assert "SKIPPED float16" in machine.skip_line(torch.float16, 100.0) and "flags present: none" in \
        machine.skip_line(torch.float16, 100.0)
    monkeypatch.setattr(machine, "cpu_flags", lambda: set())  # no /proc/cpuinfo flags: timing decides
    monkeypatch.setattr(machine, "SLOWDOWN_LIMIT", 0.0)
    assert machine.native(torch.float16, size=32)[0] is False
    monkeypatch.setattr(machine, "SLOWDOWN_LIMIT", 1e9)
    assert machine.native(torch.float16, size=32)[0] is True
    assert machine.cpu_model() and "torch" in machine.blas()
