"""The process world of a run: one process (plain ``vlmprobe eval``) or N processes started by
``accelerate launch`` / ``torchrun`` (which set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``).

Coordination between the launch's processes (barriers, rank 0's decisions) goes through a
gloo process group on CPU tensors, whatever device the models run on; every collective here
moves a few bytes.

Fail fast (no rank left waiting). Every rank of a launch shares the rendezvous key-value store
(``torch.distributed.TCPStore``, the one the process group is made from). A rank whose work
raises writes ``abort/<generation>/<rank>`` = its one-line error there (``raise_flag``). The
other ranks see it within a poll interval wherever they are: between batches (``check_peers``,
called by the engine's loop and the training loop) or waiting at a meeting point (``barrier``;
``broadcast`` and ``gather`` meet first, so their gloo collective only starts once every rank is
present, and never waits for a rank that failed). ``all_or_none(w, fn)`` is the boundary of a
launched command or a study run: every rank runs ``fn``, then all of them *settle* (a meeting
that ignores the abort flag); when any rank failed, every rank raises (``RankFailed``, or the
failing rank its own exception) with ``rank R failed: ...``, and the next boundary starts a new
generation, so a study goes on to its next run on every rank. A rank killed outright
(SIGKILL, segfault) is the launcher's to notice: torchrun stops the other processes. ``relaunch_cpu_processes`` makes ``accelerate launch --cpu --num_processes N``
really start N processes (accelerate's simple launcher starts one where MPI is absent).
"""
from __future__ import annotations

import atexit
import os
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from .errors import VlmprobeError

# A gloo collective starts only when every rank has met (``_meet``), so it waits for data, not for
# the slowest share of work (that wait polls the store instead); DDP's all-reduce in training is
# preceded by a meeting too. 30 minutes is accelerate's own default.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
POLL_SECONDS = 0.05  # the longest sleep between two looks at the store while waiting


class RankFailed(VlmprobeError):
    """Another rank of the launch failed; the message names it (``rank 1 failed: ...``)."""


class PeerFailed(RankFailed):
    """Raised inside a boundary on the ranks that see another rank's abort flag."""


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


_STORE = None  # this launch's store under the "vlmprobe/" prefix (abort flags, meetings)
_STATE = {"generation": 0, "meeting": 0, "depth": 0}


def _group():
    """The default process group (created here from the env:// rendezvous, keeping its store)."""
    import torch.distributed as dist

    global _STORE
    if not dist.is_initialized():  # gloo for our CPU objects; NCCL too when each process has its own GPU (DDP)
        store, rank, size = next(dist.rendezvous("env://", timeout=COLLECTIVE_TIMEOUT))
        store.set_timeout(COLLECTIVE_TIMEOUT)
        dist.init_process_group(backend=_backend(), store=dist.PrefixStore("default_pg", store), rank=rank,
                                 world_size=size, timeout=COLLECTIVE_TIMEOUT)
        _STORE = dist.PrefixStore("vlmprobe", store)
        atexit.register(_close_group)
    return dist


def _close_group() -> None:
    """At interpreter exit, destroy the gloo process group created by ``_group``: a gloo group
    still alive while the interpreter tears down can abort the process ("terminate called without
    an active exception", SIGABRT; seen once in a loaded test run), which the launcher then
    reports as a failed rank. NCCL groups are left to torch (destroying one can wait on a
    collective another rank never joins, and fail-fast exits must not block)."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "gloo":
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001  (exiting anyway: nothing left to report to)
            pass


def init(w: World) -> None:
    """Create the process group now (before a library such as accelerate makes its own), so the
    abort channel shares its store. No-op for one process."""
    if w.sharded:
        _channel()


def _channel():
    """The launch's key-value store for abort flags and meetings."""
    global _STORE
    dist = _group()
    if _STORE is None:  # the group was made elsewhere (accelerate): join the launcher's store again
        try:
            store, _, _ = next(dist.rendezvous("env://", timeout=COLLECTIVE_TIMEOUT))
        except (RuntimeError, ValueError) as e:
            raise VlmprobeError(f"cannot open the launch's store for failure reports ({e}); create the process "
                                "group through vlmprobe.distributed.init before other libraries") from e
        _STORE = dist.PrefixStore("vlmprobe", store)
    return _STORE


def one_line(e: BaseException) -> str:
    """``Type: first line of the message`` (the message alone for a user error)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, VlmprobeError):
        return text or type(e).__name__
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _abort_key() -> str:
    return f"abort/{_STATE['generation']}"


def raise_flag(w: World, e: BaseException) -> None:
    """Tell every rank that this one failed with ``e`` (its one-line error)."""
    if not w.sharded:
        return
    store = _channel()
    store.set(f"{_abort_key()}/{w.rank}", one_line(e))
    store.add(_abort_key(), 1)


def _failures(w: World) -> dict[int, str]:
    store = _channel()
    return {r: store.get(f"{_abort_key()}/{r}").decode() for r in range(w.size)
            if store.check([f"{_abort_key()}/{r}"])}


def _describe(failures: dict[int, str]) -> str:
    return "; ".join(f"rank {r} failed: {msg}" for r, msg in sorted(failures.items()))


def check_peers(w: World | None = None) -> None:
    """Raise ``PeerFailed`` (naming the failed rank) when another rank of the launch has failed
    since the current boundary began. One store lookup; no-op for one process."""
    w = w or world()
    if w.sharded and _channel().check([_abort_key()]):
        raise PeerFailed(_describe(_failures(w)))


def _wait_count(store, key: str, n: int, abortable: World | None) -> None:
    delay = 0.001
    while store.add(key, 0) < n:
        if abortable is not None:
            check_peers(abortable)
        time.sleep(delay)
        delay = min(2 * delay, POLL_SECONDS)


def _meet(w: World) -> None:
    """Wait until every rank reaches this meeting point (the n-th of the boundary), or raise
    ``PeerFailed`` as soon as another rank reports a failure."""
    store = _channel()
    _STATE["meeting"] += 1
    key = f"meet/{_STATE['generation']}/{_STATE['meeting']}"
    store.add(key, 1)
    _wait_count(store, key, w.size, abortable=w)


def _settle(w: World) -> dict[int, str]:
    """The boundary's last meeting (not abortable: every rank comes here, failed or not) ->
    the failures of this generation; then a new generation starts on every rank."""
    store = _channel()
    key = f"settle/{_STATE['generation']}"
    store.add(key, 1)
    _wait_count(store, key, w.size, abortable=None)
    failures = _failures(w)
    _STATE.update(generation=_STATE["generation"] + 1, meeting=0)
    return failures


def all_or_none(w: World, fn: Callable[[], object]):
    """Run ``fn`` on this rank as one step of the whole launch: it succeeds on every rank or fails
    on every rank. Outermost call (a launched command, a study run): after ``fn`` every rank
    settles; if any rank failed, every rank raises ``RankFailed("rank R failed: ...")``, except that
    the failing rank re-raises its own exception when it is not a user error (its traceback).
    Nested calls only raise the flag and re-raise (the outermost settles). One process: ``fn()``."""
    if not w.sharded:
        return fn()
    outer = _STATE["depth"] == 0
    _STATE["depth"] += 1
    own, result = None, None
    try:
        result = fn()
    except PeerFailed:
        if not outer:
            raise
    except Exception as e:
        raise_flag(w, e)
        if not outer:
            raise
        own = e
    finally:
        _STATE["depth"] -= 1
    failures = _settle(w)
    if not failures:
        return result
    if own is not None and not isinstance(own, VlmprobeError):
        raise own  # its traceback, on the rank where it happened
    raise RankFailed(_describe(failures)) from own


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
    """Every rank waits here for the others (abortable: raises ``PeerFailed`` when one failed)."""
    if w.sharded:
        _meet(w)


def broadcast(w: World, obj):
    """Rank 0's ``obj`` on every rank."""
    if not w.sharded:
        return obj
    box = [obj]
    _meet(w)
    _group().broadcast_object_list(box, src=0)
    return box[0]


def gather(w: World, obj) -> list:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not w.sharded:
        return [obj]
    out = [None] * w.size
    _meet(w)
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


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
