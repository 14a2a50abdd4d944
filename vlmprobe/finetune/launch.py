"""Make ``accelerate launch --cpu --num_processes N recipe.py ...`` start N processes.

accelerate (1.x) starts several CPU processes only through mpirun (``--mpirun_hostfile``);
otherwise its simple launcher runs ONE process and the ``--num_processes`` request is dropped.
A recipe calls ``relaunch_cpu_processes()`` first: when it was started that way (accelerate's
``ACCELERATE_USE_CPU`` set, no distributed world yet) and the launching command asked for N > 1
processes, it re-executes itself under ``torch.distributed.run`` with N local processes, which
accelerate then joins as a MULTI_CPU (gloo) world. Anything else passes through untouched.
"""
from __future__ import annotations

import os
import socket
import sys


def requested_processes(launcher_argv: list[str]) -> int:
    """``--num_processes N`` (or ``--num-processes``, ``=N`` forms) of an ``accelerate launch``
    command line, looking only at the launcher's own options (before the script); 1 if absent."""
    at = [i for i, a in enumerate(launcher_argv) if a == "launch" or a.endswith("accelerate.commands.launch")]
    if not at:  # `accelerate launch ...` or `python -m accelerate.commands.launch ...`
        return 1
    args = launcher_argv[at[0] + 1:]
    for i, a in enumerate(args):
        if a.endswith(".py"):
            break
        for flag in ("--num_processes", "--num-processes"):
            if a == flag and i + 1 < len(args):
                return int(args[i + 1])
            if a.startswith(flag + "="):
                return int(a.split("=", 1)[1])
    return 1


def _launcher_argv() -> list[str]:
    import psutil

    try:
        return psutil.Process(os.getppid()).cmdline()
    except (psutil.Error, OSError):
        return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relaunch_cpu_processes() -> None:
    """Re-exec under torch.distributed.run when accelerate's CPU launch dropped N > 1 (see above)."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() != "true" or "WORLD_SIZE" in os.environ:
        return
    n = requested_processes(_launcher_argv())
    if n <= 1:
        return
    print(f"vlmprobe: starting {n} CPU processes (torch.distributed.run, gloo) for accelerate --cpu "
          f"--num_processes {n}", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), sys.argv[0], *sys.argv[1:]]
    os.execv(sys.executable, cmd)
