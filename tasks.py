#!/usr/bin/env python3
"""Quickstart tasks that work from a fresh clone with only python3.

    python3 tasks.py demo   # create/reuse .venv, install vlmprobe, run the main job on the miniature world
    python3 tasks.py test   # create/reuse .venv, install vlmprobe[dev], run the test suite
                            # (pytest-xdist: one worker per core, at most 4, whole modules per worker)

``VLMPROBE_VENV`` chooses another virtual-environment directory (default: ./.venv).
Arguments after the task name are passed on (to ``vlmprobe demo`` or to pytest).
"""
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("VLMPROBE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".vlmprobe-installed"


def sh(*cmd, **kw):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, **kw).returncode


def ensure_venv() -> None:
    """Create the venv and install the package (editable, with the dev extra) once; re-install
    when pyproject.toml changed since the last install."""
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pyproject = ROOT / "pyproject.toml"
    if STAMP.exists() and STAMP.stat().st_mtime >= pyproject.stat().st_mtime:
        return
    if sh(PY, "-m", "pip", "install", "-q", "--upgrade", "pip") or \
            sh(PY, "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]"):
        sys.exit("installation failed")
    STAMP.touch()


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        print(__doc__)
        return 2
    task, rest = sys.argv[1], sys.argv[2:]
    ensure_venv()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if task == "demo":
        return sh(BIN / "vlmprobe", "demo", *rest, env=env)
    return sh(PY, "-m", "pytest", "-q", *parallel(rest), *rest, env=env)


def parallel(args: list) -> list:
    """pytest-xdist options: one worker per core (at most 4: each holds its own tiny models), each
    test module whole on one worker (its module-scoped fixtures built once); none when the
    caller chose (-n / -p no:xdist) or there is one core."""
    if any(a.startswith(("-n", "--numprocesses", "--dist", "--no-loadscope")) or a == "no:xdist" for a in args):
        return []
    # vlmprobe.distributed.usable_cores, written out: this file runs before the package is installed
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # keep the module order of tests/conftest.py (xdist would otherwise sort modules by test count)
    return ["-n", str(min(cores, 4)), "--dist", "loadfile", "--no-loadscope-reorder"] if cores > 1 else []


if __name__ == "__main__":
    sys.exit(main())
