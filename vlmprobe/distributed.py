"""The process world of a run: one process (plain ``vlmprobe eval``) or N processes started by
``accelerate launch`` / ``torchrun`` (which set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``).

Coordination between the launch's processes (barriers, rank 0's decisions) goes through a
gloo process group on CPU tensors, whatever device the models run on; every collective here
moves a few bytes. ``relaunch_cpu_processes`` makes ``accelerate launch --cpu --num_processes N``
really start N processes (accelerate's simple launcher starts one where MPI is absent).
"""
from __future__ import annotations

import os
import socket
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from .errors import VlmprobeError

COLLECTIVE_TIMEOUT = timedelta(hours=48)  # a rank may wait this long for the slowest share


@dataclass(frozen=True)
class World:
    """This process's place in the launch (``rank`` 0..``size``-1; ``size`` 1 = plain run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.size > 1


def world() -> World:
    """The launch this process belongs to (from the launcher's environment variables)."""
    env = os.environ
    size = int(env.get("WORLD_SIZE", "1") or 1)
    return World(rank=int(env.get("RANK", "0") or 0), size=size, local_rank=int(env.get("LOCAL_RANK", "0") or 0))


def _group():
    import torch.distributed as dist

    if not dist.is_initialized():  # gloo for our CPU objects; NCCL too when each process has its own GPU (DDP)
        dist.init_process_group(backend=_backend(), timeout=COLLECTIVE_TIMEOUT)
    return dist


def _backend() -> str:
    import torch

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if torch.cuda.is_available() and torch.cuda.device_count() >= local:
        return "cpu:gloo,cuda:nccl"
    return "gloo"


@contextmanager
def solo():
    """Inside: this process acts as a one-process world (``world().size == 1``, no collectives).
    For work rank 0 does alone while the other processes wait at a barrier."""
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def barrier(w: World) -> None:
    if w.sharded:
        _group().barrier()


def broadcast(w: World, obj):
    """Rank 0's ``obj`` on every rank."""
    if not w.sharded:
        return obj
    box = [obj]
    _group().broadcast_object_list(box, src=0)
    return box[0]


def gather(w: World, obj) -> list:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not w.sharded:
        return [obj]
    out = [None] * w.size
    _group().all_gather_object(out, obj)
    return out


def on_main(w: World, fn: Callable[[], object]):
    """Run ``fn`` on rank 0 only; its return value reaches every rank. When it raises, rank 0
    re-raises its own exception and every other rank raises a ``VlmprobeError`` with the same
    one-line message (the same class for a ``VlmprobeError``), so no rank is left waiting."""
    result, own = None, None
    if w.main:
        try:
            result = ("ok", fn())
        except Exception as e:
            if not w.sharded:
                raise
            own = e
            user = isinstance(e, VlmprobeError)
            result = ("error", (type(e) if user else VlmprobeError,
                                str(e) if user else f"rank 0 failed: {type(e).__name__}: {e}"))
    kind, value = broadcast(w, result)
    if kind == "error":
        if own is not None:
            raise own
        cls, msg = value
        raise cls(msg)
    return value


def launch_id(w: World) -> str:
    """An id shared by the processes of one launch (rank 0 draws it)."""
    return broadcast(w, uuid.uuid4().hex[:12] if w.main else None)


def rank_device(device: str, w: World) -> str:
    """``cuda`` -> ``cuda:LOCAL_RANK`` when several processes share a machine (each its own GPU)."""
    if w.sharded and device == "cuda":
        return f"cuda:{w.local_rank}"
    return device


# ---- accelerate launch --cpu --num_processes N ------------------------------------------------
def requested_processes(launcher_argv: list[str]) -> int:
    """``--num_processes N`` (or ``--num-processes``, ``=N`` forms) of an ``accelerate launch``
    command line, looking only at the launcher's own options (before the script or ``-m MODULE``);
    1 if absent."""
    at = [i for i, a in enumerate(launcher_argv) if a == "launch" or a.endswith("accelerate.commands.launch")]
    if not at:  # `accelerate launch ...` or `python -m accelerate.commands.launch ...`
        return 1
    args = launcher_argv[at[0] + 1:]
    for i, a in enumerate(args):
        if a.endswith(".py") or a in ("-m", "--module"):
            break
        for flag in ("--num_processes", "--num-processes"):
            if a == flag and i + 1 < len(args):
                return int(args[i + 1])
            if a.startswith(flag + "="):
                return int(a.split("=", 1)[1])
    return 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relaunch_cpu_processes(module: str | None = None) -> None:
    """Re-exec under ``torch.distributed.run`` with N local processes when accelerate's CPU launch
    dropped ``--num_processes N`` (``ACCELERATE_USE_CPU`` set, no world yet); accelerate then joins
    them as a MULTI_CPU (gloo) world. ``module``: re-run as ``-m module`` (``vlmprobe``), else
    the script ``sys.argv[0]``. Anything else passes through untouched."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() != "true" or "WORLD_SIZE" in os.environ:
        return
    from .compat import launcher_argv

    n = requested_processes(launcher_argv())
    if n <= 1:
        return
    print(f"vlmprobe: starting {n} CPU processes (torch.distributed.run, gloo) for accelerate --cpu "
          f"--num_processes {n}", file=sys.stderr, flush=True)
    target = ["-m", module] if module else [sys.argv[0]]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), *target, *sys.argv[1:]]
    sys.stdout.flush()
    os.execv(sys.executable, cmd)
