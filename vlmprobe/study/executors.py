"""Where a study's runs execute: one scheduler, three executors.

- ``serial`` (default): every run in this process, one after another (``StudyRunner.execute``;
  also the path under ``accelerate launch``/``torchrun``).
- ``local --jobs N``: N worker processes on this machine (``multiprocessing`` spawn; each imports
  torch once and then takes run after run). Worker ``i`` sees GPU ``i mod G`` through
  ``CUDA_VISIBLE_DEVICES`` (G = the visible GPUs; none: CPU); a model entry with ``gpus: k``
  (k > 1) gets k GPUs (at most G) in a worker of its own. GPUs held by running workers are not
  handed out again while others are free (``LocalPool.pick``); a worker is restarted when its run
  needs other GPUs, and an idle worker on GPUs given to another is stopped (its CUDA memory).
  The stamp records the ``CUDA_VISIBLE_DEVICES`` a run saw.
- ``slurm``: each run is a ``submitit`` job (``AutoExecutor``; ready runs are submitted together as
  one job array, ``array_parallelism`` at a time) with the study file's resources
  ``executor: {slurm: {partition, gpus_per_node, cpus_per_task, mem_gb, timeout_min,
  array_parallelism}}``; a model entry with ``gpus: k`` (k > 1) asks ``gpus_per_node: k`` for its
  runs (an array of their own). ``cluster: local`` = submitit's ``LocalExecutor``, real
  subprocesses on this machine; ``poll_s``: seconds between state checks. The tests drive the real
  SLURM path (sbatch scripts, arrays, sacct states) against ``vlmprobe.testing.fakeslurm``. A job
  is a ``submitit.helpers.Checkpointable``: preempted or timed out, it is requeued and its run
  directory resumes exactly. A run whose stamp says ``running`` with a job id (a study command
  that ended before its jobs did) is not resubmitted while submitit reports the job queued or
  running (``SlurmPool.adopt``: sacct's state; the local cluster: the job's process): the
  scheduler waits for that job instead; a job that is gone or failed is resubmitted. Whether a job
  is alive is decided by one table of SLURM states (``SLURM_LIVE_STATES``), for ``wait``,
  ``adopt`` and ``--status`` alike. A run whose writer is alive but cannot be waited for (another
  config, or a local process) is refused in one line (``StudyRunner._set_aside``; ``--cancel-stale``
  cancels that writer), and a job that finds its run taken over exits without writing.
- ``local`` workers end with the study: SIGTERM/SIGHUP of the study ends them and their process
  groups (``end_with_signals``), and the kernel's parent-death signal ends them when the study is
  killed outright (``_die_with_parent``).

The scheduler (``schedule``) submits a run once every run it depends on is done (a fine-tune before
the evaluations of its adapter), never two writers on one run directory, and continues past
failures (dependents are ``blocked``). Every run writes its own stamp ``RUN/study_run.json``:
``running`` (pid, host, job id) when it starts, ``done`` (key, argv, seconds) or ``failed`` at the
end, so re-running the study command collects what finished and submits what is missing or
failed, and ``vlmprobe study --status DIR`` reads the states. Each run's output goes to
``DIR/.logs/<run id>.log`` (the run directories stay exactly what a serial run makes).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import traceback
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path

EXECUTORS = ("serial", "local", "slurm")
NOT_FINISHED = ("failed", "blocked", "refused")  # run states that block their dependents and fail the study
SLURM_KEYS = {"partition": str, "account": str, "qos": str, "constraint": str, "gpus_per_node": int,
              "cpus_per_task": int, "mem_gb": (int, float), "timeout_min": int, "array_parallelism": int,
              "cluster": str, "poll_s": (int, float)}
_SUBMITIT_NAMES = {k: f"slurm_{k}" for k in ("partition", "account", "qos", "constraint", "array_parallelism")}
LOCAL_KEYS = {"jobs": int}
STAMP = "study_run.json"
_PREEMPTED: list = []  # signals of a submitit requeue received by this job process


@dataclass
class Job:
    """One run as a worker executes it (picklable: it crosses a process or a SLURM submission)."""

    run_id: str
    measure: str
    argv: list  # the vlmprobe argv (fine-tuning: the recipe line, shown only)
    run_dir: str
    key: str
    log: str
    finetune: dict | None = None  # fine-tuning: load_config overrides
    gpus: int = 1


# ------------------------------------------------------------------ the worker side
def run_in_process(measure: str, argv: list, finetune: dict | None, extra: dict, run_id: str = "") -> int:
    """Execute one run in this process -> exit status. An exception is printed and returned as
    status 1, never raised (a failed run never stops the study); under a launch it is also
    flagged to the other processes (``distributed.raise_flag``), which stop this run too. A
    command that exits through its argument parser (``SystemExit``) is this run's failure."""
    from .. import distributed
    from ..cli import main
    from .measures import MEASURES

    head = f"{run_id}: " if run_id else ""
    try:
        if measure == "finetune":
            from ..finetune.config import load_config
            from ..finetune.train import finetune as train

            extra["model_spec"] = train(load_config(None, finetune))["model_spec"]
            return 0
        if MEASURES[measure].shards:
            return main(argv)
        with distributed.solo():
            return main(argv)
    except distributed.RankFailed:
        raise  # another process failed: every process reports the run as failed (the runner's step)
    except SystemExit as e:  # the command's own argument check: this run's failure, not the study's
        if _PREEMPTED:  # submitit requeued this job and exits: the run stays "running" and resumes
            raise
        code = e.code if isinstance(e.code, int) else 2
        print(f"{head}FAILED (its command exited with status {code})", flush=True)
        if code:
            distributed.raise_flag(distributed.world(), e)
        return code
    except Exception as e:
        traceback.print_exc()
        print(f"{head}FAILED ({type(e).__name__}: {e})", flush=True)
        distributed.raise_flag(distributed.world(), e)
        return 1


def write_stamp(run_dir: str | Path, stamp: dict, create: bool = True) -> None:
    """Write ``RUN/study_run.json``; ``create=False``: only into an existing run directory (a
    scheduler noting a dead worker never recreates a directory that was set aside meanwhile)."""
    from ..cache import atomic_write_json

    if not create and not Path(run_dir).is_dir():
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(run_dir) / STAMP, stamp)


def execute_job(job: Job, job_id: str | None = None, cluster: str | None = None) -> int:
    """Run ``job`` here, its output appended to ``job.log``, with stamps ``running`` then ``done``
    (key, argv, seconds, CPU seconds) or ``failed`` -> exit status. ``job_id``, ``cluster``: the
    submitit job this process is (``StudyJob``; SLURM: ``ARRAY_TASK`` or the job id; ``slurm`` or
    ``local``), None for a local worker,
    even inside a SLURM allocation, whose ``SLURM_JOB_ID`` is not this run's job (a later study
    command would otherwise wait for that allocation as the run's writer, ``SlurmPool.adopt``)."""
    base = {"key": job.key, "measure": job.measure, "argv": job.argv}
    where = {"pid": os.getpid(), "host": socket.gethostname(), "job_id": job_id, "cluster": cluster,
             "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}
    prev = read_stamp(job.run_dir) or {}
    requeued = prev.get("status") == "running" and prev.get("key") == job.key and where["job_id"] \
        and prev.get("job_id") == where["job_id"]
    other = None if requeued or prev.get("pid") == where["pid"] and prev.get("host") == where["host"] \
        else live_writer(prev, unsure=False)
    if prev and (prev.get("key") != job.key or other):
        # a later study command took the run over (another key), or a live writer has it: this job
        # writes nothing (never a second writer; e.g. a job queued before the study was edited)
        why = f"is still written by {other}" if other else \
            f"now belongs to another config (key {prev.get('key')}, not {job.key}): this job is stale"
        print(f"{job.run_id}: not started: {job.run_dir} {why}", file=sys.stderr, flush=True)
        return 3
    where["attempt"] = prev.get("attempt", 1) + 1 if requeued else 1  # a requeued job runs again
    started = time.time()
    write_stamp(job.run_dir, {**base, "status": "running", **where, "started": started})
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    start, cpu, extra = time.time(), time.process_time(), {}
    with open(job.log, "a", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
        print(f"$ {' '.join(job.argv)}", flush=True)
        code = run_in_process(job.measure, job.argv, job.finetune, extra, run_id=job.run_id)
        if code and _PREEMPTED:  # requeued: SLURM's SIGTERM to the job's processes (e.g. its data loaders)
            print(f"{job.run_id}: requeued (its stamp stays running; the next attempt resumes)", flush=True)
            return code  # broke the run on its way out: not a failure of the run
    write_stamp(job.run_dir, {**base, "status": "done" if code == 0 else "failed", **where,
                              **({"exit": code} if code else {}), "started": started, "finished": time.time(),
                              "seconds": round(time.time() - start, 1),
                              "cpu_seconds": round(time.process_time() - cpu, 1), "processes": 1, **extra})
    return code


def _worker_main(conn, gpus: str | None, threads: int | None) -> None:
    """A local worker: take jobs from ``conn`` until told to stop (None)."""
    import multiprocessing

    # a spawned process inherits "spawn" as its start method; the runs' data loaders use the
    # platform default, as they do in a serial study
    multiprocessing.set_start_method(None if sys.platform == "win32" else "fork", force=True)
    os.setpgrp()  # its own process group: the study ends the worker and its children together
    parent = os.getppid()
    _die_with_parent(parent)
    if threads:  # N workers share the cores instead of each starting one thread per core
        import torch

        torch.set_num_threads(threads)
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    while True:
        while not conn.poll(5.0):
            if os.getppid() != parent:  # the study process is gone
                return
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(execute_job(Job(**job)))


def _die_with_parent(parent: int) -> None:
    """Make this worker (and every process of its group: its data loaders) end with the study
    process ``parent``: SIGTERM or SIGHUP ends the group at once (its run stays ``running`` in its
    stamp with a dead pid: stale, resumed by the next study command), and on Linux the kernel
    sends SIGTERM when the parent dies, even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``)."""
    import signal

    def end(signum=None, frame=None):
        os.killpg(os.getpgrp(), signal.SIGKILL)  # the worker leads its group (setpgrp)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, end)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1  # <linux/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the study died before the death signal was armed
        end()


@contextmanager
def end_with_signals():
    """Inside the block (the study process of ``--executor local``): SIGTERM and SIGHUP end the
    study as Ctrl-C does, through ``schedule``'s ``finally`` (``LocalPool.close`` ends every worker
    and its group), exit status 128 + the signal. The former handlers are restored after."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------ executors
class LocalPool:
    """N spawned worker processes; a dead worker (killed) fails its run and is replaced."""

    def __init__(self, jobs: int):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.jobs = max(1, jobs)
        self.gpus = _visible_gpus()
        self.slots: list = [None] * self.jobs  # (process, conn) per slot
        self.slot_gpus: list = [None] * self.jobs  # the CUDA_VISIBLE_DEVICES of each slot's worker
        self.busy: dict = {}  # slot -> Job
        self.capacity = self.jobs
        from ..distributed import usable_cores

        self.threads = None if os.environ.get("OMP_NUM_THREADS") else max(1, usable_cores() // self.jobs)

    def _start(self, slot: int, gpus: str | None):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_main, args=(child, gpus, self.threads), name=f"vlmprobe-worker-{slot}")
        p.start()
        child.close()
        self.slot_gpus[slot] = gpus
        return p, parent

    def pick(self, slot: int, k: int) -> str | None:
        """The ``CUDA_VISIBLE_DEVICES`` of a run needing ``k`` GPUs in worker ``slot``: min(k, G)
        distinct GPUs in round-robin order from GPU ``slot mod G``, those of the other running
        workers last (shared only when no other is free); None without GPUs."""
        if not self.gpus:
            return None
        g = len(self.gpus)
        taken = {x for s in self.busy if s != slot for x in (self.slot_gpus[s] or "").split(",") if x}
        order = [self.gpus[(slot + i) % g] for i in range(g)]
        return ",".join(([x for x in order if x not in taken] + [x for x in order if x in taken])[:max(1, min(k, g))])

    def submit(self, job: Job) -> None:
        slot = next(i for i in range(self.jobs) if i not in self.busy)
        gpus = self.pick(slot, job.gpus)
        if gpus is not None:  # idle workers on these GPUs (another slot's) give them back
            want = set(gpus.split(","))
            for other, s in enumerate(self.slots):
                if other != slot and other not in self.busy and s is not None \
                        and want & set((self.slot_gpus[other] or "").split(",")):
                    self._stop(other)
        if self.slots[slot] is not None and (not self.slots[slot][0].is_alive() or self.slot_gpus[slot] != gpus):
            self._stop(slot)  # a dead worker, or one on other GPUs
        if self.slots[slot] is None:
            self.slots[slot] = self._start(slot, gpus)
        self.slots[slot][1].send(asdict(job))
        self.busy[slot] = job

    def wait(self, timeout: float | None = None) -> list[tuple[Job, int]]:
        """Block until some run finished -> [(job, exit status)] (a killed worker: its exit code)."""
        from multiprocessing.connection import wait

        if not self.busy:
            return []
        objs = {}
        for slot in self.busy:
            p, conn = self.slots[slot]
            objs[conn] = slot
            objs[p.sentinel] = slot
        done = []
        while not done:
            wait(list(objs), 1.0)  # a finished run answers on its pipe; a dead worker is seen by its exit code
            for slot in list(self.busy):
                p, conn = self.slots[slot]
                code = None
                try:
                    if conn.poll():
                        code = conn.recv()
                except (EOFError, OSError):
                    pass
                if code is None:
                    if p.exitcode is None:
                        continue
                    code = p.exitcode or 1  # the worker died mid-run (killed): its run failed
                    self._reap(slot)
                done.append((self.busy.pop(slot), code))
        return done

    def _stop(self, slot: int) -> None:
        p, conn = self.slots[slot]
        try:
            conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        p.join(timeout=10)
        self._reap(slot)

    def _reap(self, slot: int) -> None:
        """End the worker and every process it started (its data-loader workers: they share its
        process group and would otherwise keep its run directory's lock)."""
        import signal

        p, _ = self.slots[slot]
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        p.join(timeout=10)
        self.slots[slot] = self.slot_gpus[slot] = None

    def close(self) -> None:
        for slot, s in enumerate(self.slots):
            if s is not None:
                if slot in self.busy:
                    self._reap(slot)
                else:
                    self._stop(slot)


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


class StudyJob:
    """The callable submitit pickles for one run; ``checkpoint`` makes a preempted or timed-out
    job requeue itself (the run directory resumes)."""

    def __init__(self, job: dict):
        self.job = job

    def __call__(self) -> int:
        import signal

        import submitit

        sig = submitit.JobEnvironment._usr_sig()  # preemption / time limit: requeue, then sys.exit
        handler = signal.getsignal(sig)
        if callable(handler):
            def preempted(signum, frame):
                _PREEMPTED.append(signum)  # run_in_process lets the SystemExit that follows through
                handler(signum, frame)

            signal.signal(sig, preempted)
        env = submitit.JobEnvironment()
        return execute_job(Job(**self.job), job_id=env.job_id, cluster=env.cluster)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(StudyJob(self.job))


class SlurmPool:
    """Runs as ``submitit`` jobs; ready runs go out together as one array per GPU count (a model
    entry's ``gpus: k``, k > 1, is its jobs' ``gpus_per_node``; other runs get the study file's)."""

    def __init__(self, folder: Path, cfg: dict):
        cfg = dict(cfg)
        self.cluster = cfg.pop("cluster", None)
        self.poll_s = float(cfg.pop("poll_s", 1.0 if self.cluster == "local" else 30.0))
        self.folder = str(folder / "%j")
        self.params = {"timeout_min": cfg.get("timeout_min", 60)}
        for k, v in cfg.items():
            self.params[_SUBMITIT_NAMES.get(k, k)] = v
        self.executors: dict = {}  # GPUs per node (None: the study file's) -> submitit.AutoExecutor
        self.executor = self._executor(None)
        self.capacity = 10 ** 9  # SLURM queues everything; array_parallelism limits the running share
        self.active: dict = {}  # job id -> (Job, submitit job)
        from ..cache import node_local_locks

        local = node_local_locks(folder.parent)
        if local:  # a requeued job may restart on another node while a straggler still runs here
            print(f"warning: {folder.parent} is on {local}: its file locks hold on one node only, so a run "
                  "directory's lock does not stop a writer on another node (a requeued SLURM job); vlmprobe's "
                  "stamps still refuse a second writer, but mount it with cluster-wide locks (Lustre -o flock; NFS "
                  "without nolock/local_lock) to be safe", file=sys.stderr, flush=True)

    def _executor(self, gpus: int | None):
        """The executor of jobs needing ``gpus`` GPUs per node (None: the study file's resources)."""
        if gpus not in self.executors:
            import submitit

            executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
            params = {**self.params, **({"gpus_per_node": gpus} if gpus is not None else {})}
            if executor.cluster != "slurm":
                params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
            executor.update_parameters(**params)
            self.executors[gpus] = executor
        return self.executors[gpus]

    def submit_many(self, jobs: list[Job]) -> list:
        """Submit ``jobs`` -> their submitit jobs, in order (one array per GPU count)."""
        groups: dict = {}
        for i, j in enumerate(jobs):
            groups.setdefault(j.gpus if j.gpus > 1 else None, []).append(i)
        handles: list = [None] * len(jobs)
        for gpus, index in groups.items():
            executor = self._executor(gpus)
            with executor.batch():
                submitted = [executor.submit(StudyJob(asdict(jobs[i]))) for i in index]
            for i, h in zip(index, submitted):
                handles[i] = h
                self.active[h.job_id] = (jobs[i], h)
        return handles

    def submit(self, job: Job) -> None:
        self.submit_many([job])

    def job_state(self, job_id: str) -> str:
        """submitit's state of job ``job_id`` (SLURM: sacct's, e.g. PENDING, RUNNING, FAILED,
        UNKNOWN; the local cluster: RUNNING while its process lives, else GONE)."""
        return self.job_states([job_id])[job_id]

    def job_states(self, job_ids: list[str]) -> dict:
        """``job_state`` of several jobs (SLURM: one sacct call)."""
        if self.executor.cluster == "local":
            return {j: "RUNNING" if _alive(j) else "GONE" for j in job_ids}
        return slurm_states(job_ids)

    def adopt(self, job: Job) -> bool:
        """True (and ``job`` is waited for like a submitted one) when the run's stamp says
        ``running`` under a job id, for this run (same key), whose job is still queued or running."""
        stamp = read_stamp(job.run_dir) or {}
        jid = stamp.get("job_id")
        if stamp.get("status") != "running" or not jid or stamp.get("key") != job.key:
            return False
        if not slurm_live(self.job_state(str(jid))):
            return False
        if self.executor.cluster == "local":
            handle = _LocalProcess(str(jid))
        else:
            from submitit.slurm.slurm import SlurmJob

            handle = SlurmJob(self.folder, str(jid))
        self.active[str(jid)] = (job, handle)
        return True

    def wait(self, timeout: float | None = None) -> list[tuple[Job, int]]:
        """Block until some job has ended (its state is not live: ``slurm_live``) -> [(job, 0 if
        its stamp says done for its key, else 1)]; [] after ``timeout`` seconds."""
        end = None if timeout is None else time.time() + timeout
        while True:
            done = []
            states = self.job_states(list(self.active))
            for jid, (job, h) in list(self.active.items()):
                if not slurm_live(states[jid]):
                    del self.active[jid]
                    stamp = read_stamp(job.run_dir)
                    ok = stamp is not None and stamp.get("status") == "done" and stamp.get("key") == job.key
                    done.append((job, 0 if ok else 1))
            if done or not self.active or (end is not None and time.time() >= end):
                return done
            time.sleep(self.poll_s)

    def close(self) -> None:
        pass


# THE table of SLURM job states (sacct's State, first word) under which a job will still write
# its run: queued, starting, running, paused, being requeued or resized. ``SlurmPool.wait`` (is a
# job finished?), ``SlurmPool.adopt`` / ``live_writer`` (may its run be resubmitted or set aside?)
# and ``--status`` (running or stale?) all ask ``slurm_live``. UNKNOWN (sacct does not list the
# job: just submitted, accounting lagging or purged) counts as live: a run never gets a second
# writer on a guess (``--cancel-stale`` is the user's way past a job that is really gone).
# States not listed have ended: COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL,
# BOOT_FAIL, DEADLINE, REVOKED. Source: the JOB STATE CODES of sacct(1)/squeue(1), SLURM 23.x.
SLURM_LIVE_STATES = frozenset((
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "REQUEUED",
    "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT", "SIGNALING", "STAGE_OUT", "PREEMPTED",
    "READY", "UNKNOWN"))
ALIVE_STATES = tuple(sorted(SLURM_LIVE_STATES))  # the former name


def slurm_live(state: str | None) -> bool:
    """Whether a job in sacct state ``state`` (e.g. ``RUNNING``, ``CANCELLED by 1000``) will still
    write its run (``SLURM_LIVE_STATES``)."""
    return (str(state or "UNKNOWN").split() or ["UNKNOWN"])[0].upper() in SLURM_LIVE_STATES


def live_writer(stamp: dict | None, unsure: bool = True) -> str | None:
    """Who still writes the run whose stamp is ``stamp`` -> a phrase naming that SLURM job or
    process (``SLURM job 1000_1 (SUSPENDED)``, ``pid 123 on node7``), or None when the stamp does
    not say ``running`` or its job/process is gone. A process on another host without a SLURM
    job cannot be checked from here: alive when ``unsure``, else None."""
    stamp = stamp or {}
    if stamp.get("status") != "running":
        return None
    jid, cluster, pid, host = stamp.get("job_id"), stamp.get("cluster"), stamp.get("pid"), stamp.get("host")
    if jid and cluster == "slurm":
        state = slurm_states([str(jid)])[str(jid)]
        return f"SLURM job {jid} ({state.split()[0]})" if slurm_live(state) else None
    if host and host != socket.gethostname():
        return f"pid {pid} on {host} (another host: whether it still runs cannot be checked from here)" \
            if unsure else None
    if jid and cluster == "local":  # submitit's local cluster: the job id is the job's process id
        return f"local job {jid} (pid {jid})" if _alive(jid) else None
    return f"pid {pid} on {host}" if _alive(pid) else None


def cancel_writer(stamp: dict, timeout: float = 60.0) -> None:
    """End the job or process that still writes the run of ``stamp`` (``scancel JOB``; a local
    process: SIGTERM, SIGKILL after 10 s) and wait until it is gone (``--cancel-stale``). A process
    on another host cannot be reached: the user's ``--cancel-stale`` says it is gone."""
    import signal
    import subprocess

    jid, cluster, pid = stamp.get("job_id"), stamp.get("cluster"), stamp.get("pid")
    if stamp.get("host") and stamp.get("host") != socket.gethostname() and cluster != "slurm":
        return
    if jid and cluster == "slurm":
        subprocess.run(["scancel", str(jid)], check=False, capture_output=True)
    else:
        target = int(jid if jid and cluster == "local" else pid)
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, timeout)):
            try:
                os.kill(target, sig)
            except OSError:
                return
            end = time.time() + wait
            while time.time() < end and _alive(target):
                time.sleep(0.1)
            if not _alive(target):
                return
    end = time.time() + timeout
    while time.time() < end and live_writer(stamp):
        time.sleep(0.5)
    if live_writer(stamp):
        from ..errors import VlmprobeError

        raise VlmprobeError(f"{live_writer(stamp)} did not end within {timeout:.0f} s of being cancelled")


class _LocalProcess:
    """An adopted job of submitit's local cluster (its job id is its process id): done when the
    process is gone."""

    def __init__(self, job_id: str):
        self.job_id = job_id

    def done(self) -> bool:
        return not _alive(self.job_id)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_stamp(run_dir: str | Path) -> dict | None:
    """The stamp ``RUN/study_run.json`` of a run directory (None: absent or unreadable)."""
    return _read(Path(run_dir) / STAMP)


# ------------------------------------------------------------------ the scheduler
def schedule(runner, pool, log=print) -> None:
    """Execute ``runner.plan`` through ``pool`` in dependency order; fills ``runner.status``
    (done | reused | failed | blocked | refused). With a ``LocalPool``, SIGTERM/SIGHUP of this
    process end its workers too (``end_with_signals``)."""
    with end_with_signals() if isinstance(pool, LocalPool) else nullcontext():
        _schedule(runner, pool, log)


def _schedule(runner, pool, log) -> None:
    runs = list(runner.plan.runs.values())
    total, index = len(runs), {r.id: i for i, r in enumerate(runs, 1)}
    pending = list(runs)
    running: dict = {}  # run id -> start time
    try:
        while pending or running:
            submitted = []
            for run in list(pending):
                if any(d not in runner.status for d in run.deps.values()):
                    continue  # a dependency is still pending or running
                head = f"[{index[run.id]}/{total}] {run.id}"
                blocked = [r for r in run.deps.values() if runner.status.get(r) in NOT_FINISHED]
                if blocked:
                    pending.remove(run)
                    runner.status[run.id] = "blocked"
                    log(f"{head}: skipped, it needs {', '.join(blocked)} which failed")
                    continue
                if runner.state(run) == "done":
                    pending.remove(run)
                    runner.status[run.id] = "reused"
                    log(f"{head}: reused (finished, same config)")
                    continue
                if len(submitted) + len(running) >= pool.capacity:
                    continue
                pending.remove(run)
                job = runner.job(run)
                running[run.id] = time.time()
                if hasattr(pool, "adopt") and pool.adopt(job):  # still queued/running from an earlier command
                    stamp = read_stamp(job.run_dir) or {}
                    log(f"{head}: still queued or running as job {stamp.get('job_id')}: waiting for it, not resubmitted")
                    continue
                refused = runner._set_aside(run, head)  # never under a live writer (refused, or --cancel-stale)
                if refused:
                    running.pop(run.id)
                    runner.status[run.id] = "refused"
                    log(refused)
                    continue
                submitted.append(job)
                log(f"{head}: started\n  $ {runner.shell(run)}")
            if submitted:
                if hasattr(pool, "submit_many"):
                    pool.submit_many(submitted)
                else:
                    for job in submitted:
                        pool.submit(job)
                continue  # more may be ready (capacity permitting)
            if not running:
                if pending:  # nothing runnable and nothing running: a dependency outside the plan
                    for run in pending:
                        runner.status[run.id] = "blocked"
                    pending.clear()
                break
            for job, code in pool.wait():
                secs = time.time() - running.pop(job.run_id)
                head = f"[{index[job.run_id]}/{total}] {job.run_id}"
                if code == 0:
                    runner.status[job.run_id] = "done"
                    log(f"{head}: done ({secs:.1f} s)")
                else:
                    runner.status[job.run_id] = "failed"
                    stamp = read_stamp(job.run_dir) or {}
                    if stamp.get("status") == "running" and stamp.get("key") == job.key and not live_writer(stamp):
                        write_stamp(job.run_dir, {**stamp, "status": "failed", "exit": code}, create=False)  # died
                    log(f"{head}: FAILED (exit {code}; log: {job.log})\n{_tail(job.log)}")
    finally:
        pool.close()


def _tail(path: str, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + x for x in text[-lines:])


def make_pool(name: str, jobs: int, out: Path, study_cfg: dict):
    if name == "local":
        jobs = jobs or (study_cfg.get("local") or {}).get("jobs") or 1
        return LocalPool(jobs)
    if name == "slurm":
        return SlurmPool(out / ".submitit", study_cfg.get("slurm") or {})
    raise ValueError(f"unknown executor {name!r} (choose {', '.join(EXECUTORS)})")


def slurm_states(job_ids: list[str]) -> dict:
    """sacct's state of each SLURM job id (``BASE`` or an array task ``BASE_i``; one ``sacct``
    call, read by submitit's parser) -> {id: STATE} (e.g. PENDING, RUNNING, COMPLETED, FAILED,
    ``CANCELLED by UID``); UNKNOWN where sacct does not say (not installed, accounting off, purged)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    watcher = SlurmInfoWatcher()  # a fresh one: the shared watcher caches finished states
    for j in job_ids:
        watcher.register_job(str(j))
    if job_ids and shutil.which("sacct"):
        watcher.update()
    return {j: str(watcher.get_state(str(j), mode="cache")).upper() for j in job_ids}


def status_rows(out: str | Path) -> list[dict]:
    """Every planned run of the study directory ``out`` with its state: done | failed | running
    (pid alive on this host; a SLURM job that sacct reports queued or running, or cannot tell) |
    stale (a run whose stamp says running but whose process or SLURM job is gone) | planned, plus
    job id and seconds."""
    out = Path(out)
    plan = _read(out / "study.json")
    if plan is None:
        from ..errors import VlmprobeError

        raise VlmprobeError(f"{out / 'study.json'} is missing: not a study directory (or no run started yet)")
    rows = []
    for run in plan["runs"]:
        stamp = read_stamp(out / run["id"]) or {}
        state = stamp.get("status") or ("blocked" if run.get("status") == "blocked" else
                                        "partial" if (out / run["id"]).exists() else "planned")
        slurm = stamp.get("cluster") == "slurm" and stamp.get("job_id")
        if state == "running" and not slurm and stamp.get("host") == socket.gethostname() \
                and not _alive(stamp.get("pid")):
            state = "stale"
        rows.append({"id": run["id"], "state": state, "job_id": stamp.get("job_id"),
                     "seconds": stamp.get("seconds"), "pid": stamp.get("pid"), "slurm": bool(slurm)})
    asked = [r for r in rows if r.pop("slurm") and r["state"] == "running"]
    states = slurm_states([r["job_id"] for r in asked])
    for r in asked:
        if not slurm_live(states[r["job_id"]]):  # ended, its run unfinished
            r["state"] = "stale"
    return rows


def _alive(pid) -> bool:
    """The process ``pid`` exists on this host and has not exited (a zombie, exited but not yet
    reaped by its parent, counts as gone)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal check is all there is
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def print_status(out: str | Path) -> int:
    rows = status_rows(out)
    counts: dict = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
        extra = "  ".join(x for x in (f"job {r['job_id']}" if r["job_id"] else "",
                                       f"{r['seconds']} s" if r["seconds"] is not None else "") if x)
        print(f"{r['state']:>8}  {r['id']}" + (f"  {extra}" if extra else ""))
    print(f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0


__all__ = ["EXECUTORS", "Job", "execute_job", "schedule", "make_pool", "status_rows", "print_status"]
