"""A fake SLURM for tests: ``sbatch``, ``srun``, ``sacct``, ``scancel`` and ``scontrol`` as real
executables on ``PATH``, so submitit's ``SlurmExecutor`` and the study's ``SlurmPool`` run their
real SLURM code path (sbatch scripts, job arrays, sacct polling) on one machine.

``install(DIR)`` writes the executables to ``DIR/bin`` (each ``python -S`` on this file; standard
library only) and returns the environment to use: ``PATH`` with ``DIR/bin`` first and
``FAKESLURM_DIR`` = ``DIR/state``, where ``jobs.json`` (under an ``flock``) holds every job, and
every submission's ``#SBATCH`` options (``submissions(DIR)``, what the tests read).

What it imitates:

- ``sbatch SCRIPT``: reads the ``#SBATCH`` lines up to the first command (command-line options
  before ``SCRIPT`` win), rejects an option real sbatch does not know or a malformed ``--time``,
  ``--mem``, ``--signal``, ``--array`` or ``--open-mode`` (one line on stderr, exit 1), allocates
  job ids from 1000 (an array ``--array=0-N%P`` takes N+1 ids; its tasks are ``BASE_i``), prints
  ``Submitted batch job BASE`` and starts a detached supervisor that runs the script with ``bash``
  in the submission directory as real processes, at most ``P`` tasks of an array at once, with
  the caller's environment (``--export=ALL``) plus ``SLURM_JOB_ID`` (the task's own id),
  ``SLURM_ARRAY_JOB_ID``/``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` (arrays),
  ``SLURM_JOB_NAME``, ``SLURM_JOB_PARTITION``, ``SLURM_JOB_NUM_NODES``/``SLURM_NNODES`` (1),
  ``SLURM_JOB_NODELIST`` (this host), ``SLURM_NTASKS``, ``SLURM_CPUS_PER_TASK``,
  ``SLURM_GPUS_PER_NODE``, ``SLURM_MEM_PER_NODE`` (MB), ``SLURM_SUBMIT_DIR`` and
  ``SLURM_RESTART_COUNT``; the script's stdout/stderr go to ``--output``/``--error`` with ``%j``,
  ``%A``, ``%a``, ``%N``, ``%%`` expanded (``--open-mode``). ``--hold`` (or ``SBATCH_HOLD`` set)
  submits it held (PENDING).
- ``srun [options] CMD``: one task: ``SLURM_PROCID``/``SLURM_LOCALID``/``SLURM_NODEID`` = 0,
  output to its ``--output``/``--error`` (``%t`` = 0), then ``exec``s ``CMD`` (its pid is the job
  step's, which ``scancel --signal`` signals).
- ``sacct -j ID [-j ID] -o FIELDS --parsable2``: ``JobID|State|NodeList`` (any of those fields),
  one line per task (``BASE_i``, plus the ``.batch``/``.0`` step lines real sacct prints) and one
  ``BASE_[a-b%P]`` line for an array's tasks that have not started yet; states PENDING, RUNNING,
  REQUEUED, COMPLETED, FAILED (non-zero exit) and ``CANCELLED by UID``.
- ``scancel ID`` (a task, or every task of ``BASE``): CANCELLED, its processes killed (SIGTERM,
  SIGKILL one second later); ``scancel ID --signal SIG`` (``-s``): the signal to its job step only.
- ``scontrol hold|release|requeue|requeuehold|suspend|resume ID``: hold/release a pending job;
  requeue a running one as SLURM does: its processes are stopped (SIGTERM, SIGKILL one second
  later; sacct: REQUEUED), then it is PENDING again and runs again (same id,
  ``SLURM_RESTART_COUNT`` + 1); ``requeuehold``: the same, then held (sacct: REQUEUE_HOLD until
  released); ``suspend``: SIGSTOP to its processes (SUSPENDED), ``resume``: SIGCONT (RUNNING).
- ``FAKESLURM_CONFIGURING_S`` (set for ``sbatch``): a task shows CONFIGURING for that many
  seconds after it is allocated before its script starts (nodes booting);
  ``show(DIR, TASK, STATE)``: sacct prints ``STATE`` for that task (e.g. RESIZING, or UNKNOWN
  as when accounting lags) until ``show(DIR, TASK, None)``; the job itself is unchanged.

What it does not: no scheduling or queueing beyond ``--hold`` and ``%P``, no resource limits
(``--mem``, ``--time``, ``--cpus-per-task`` and GPUs are recorded and exported, not enforced: no
time-out signal, no OOM kill), one node and one task per job (``srun`` with more tasks is an
error), no ``--dependency``, no accounting beyond the current state, and a job does not see the submitting process's ``SLURM_*`` variables (real SLURM passes some through, e.g.
an enclosing allocation's ``SLURM_MEM_PER_CPU``, which can conflict with the job's own).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

COMMANDS = ("sbatch", "srun", "sacct", "scancel", "scontrol")
# sbatch's long options this fake accepts (flags take no value); anything else is "unrecognized"
SBATCH_FLAGS = {"hold", "requeue", "no-requeue", "exclusive", "parsable"}
SBATCH_OPTIONS = {"job-name", "partition", "time", "nodes", "ntasks-per-node", "ntasks", "cpus-per-task",
                  "cpus-per-gpu", "gpus-per-node", "gpus-per-task", "gpus", "qos", "mem", "mem-per-gpu",
                  "mem-per-cpu", "signal", "comment", "constraint", "exclude", "account", "gres", "mail-type",
                  "mail-user", "nodelist", "dependency", "array", "wckey", "output", "error", "open-mode",
                  "exclusive", "chdir", "export"}
SHORT = {"p": "partition", "t": "time", "N": "nodes", "n": "ntasks", "c": "cpus-per-task", "J": "job-name",
         "o": "output", "e": "error", "a": "array", "H": "hold", "G": "gpus", "A": "account", "q": "qos"}
FINAL = ("COMPLETED", "FAILED", "CANCELLED")
KILL_WAIT_S = 1.0  # SIGTERM, then SIGKILL this much later (SLURM's KillWait)
POLL_S = 0.05


def install(directory: str | Path) -> dict:
    """Write the fake's executables to ``directory/bin`` -> the environment variables to set
    (``PATH`` with that folder first, ``FAKESLURM_DIR``)."""
    directory = Path(directory).resolve()
    (directory / "bin").mkdir(parents=True, exist_ok=True)
    (directory / "state").mkdir(exist_ok=True)
    for cmd in COMMANDS:
        exe = directory / "bin" / cmd
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{Path(__file__).resolve()}" {cmd} "$@"\n')
        exe.chmod(0o755)
    return {"PATH": f"{directory / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "FAKESLURM_DIR": str(directory / "state")}


def submissions(directory: str | Path) -> list[dict]:
    """Every ``sbatch`` call so far: ``{"job_id", "script", "options", "tasks", "time"}``."""
    return _load(Path(directory) / "state").get("submissions", [])


def jobs(directory: str | Path) -> dict:
    """Every task by id (``BASE`` or ``BASE_i``): state, exit code, restarts, started/ended times."""
    return _load(Path(directory) / "state").get("jobs", {})


def shutdown(directory: str | Path, timeout: float = 5.0) -> None:
    """Cancel every job that is not final (``scancel`` of each) and wait up to ``timeout`` s for
    its processes to end (a test's teardown)."""
    state = Path(directory) / "state"
    with _locked(state) as data:
        for task in data["jobs"].values():
            if task["state"] not in FINAL:
                task.update(cancelled=True, held=False)
    end = time.time() + timeout
    while time.time() < end and any(t["state"] not in FINAL for t in _load(state)["jobs"].values()):
        time.sleep(POLL_S)


def show(directory: str | Path, task: str, state: str | None) -> None:
    """Make ``sacct`` print ``state`` for ``task`` (None: its real state again); the job runs on
    unchanged (states the fake does not reach by itself: RESIZING, UNKNOWN...)."""
    with _locked(Path(directory) / "state") as data:
        data["jobs"][task]["shown"] = state


# ------------------------------------------------------------------ state
def _state_dir() -> Path:
    d = os.environ.get("FAKESLURM_DIR")
    if not d:
        _die("FAKESLURM_DIR is not set (use vlmprobe.testing.fakeslurm.install)")
    return Path(d)


def _load(state: Path) -> dict:
    try:
        return json.loads((state / "jobs.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {"next_id": 1000, "jobs": {}, "submissions": []}


@contextmanager
def _locked(state: Path | None = None):
    """The fake's state, read and written back under an exclusive lock."""
    state = state or _state_dir()
    with open(state / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _load(state)
        yield data
        tmp = state / "jobs.json.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, state / "jobs.json")


def _die(msg: str, code: int = 1):
    print(msg, file=sys.stderr)
    sys.exit(code)


def _targets(data: dict, jid: str) -> list[str]:
    """Task ids of ``jid`` (a task id, or an array's base id = all its tasks)."""
    if jid in data["jobs"] and data["jobs"][jid]["array"] is None:
        return [jid]
    found = [k for k, t in data["jobs"].items() if k == jid or t["base"] == jid]
    if not found:
        _die(f"error: Invalid job id specified: {jid}")
    return found


# ------------------------------------------------------------------ sbatch
def _parse_options(args: list[str], where: str) -> dict:
    opts: dict = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            key, eq, value = a[2:].partition("=")
        elif a.startswith("-") and len(a) >= 2 and a[1] in SHORT:
            key, value, eq = SHORT[a[1]], a[2:], bool(a[2:])
        else:
            _die(f"sbatch: error: {where}: cannot parse option {a!r}")
        if key in SBATCH_FLAGS and not eq:
            opts[key] = True
        elif key in SBATCH_OPTIONS:
            if not eq:
                i += 1
                if i == len(args):
                    _die(f"sbatch: option '--{key}' requires an argument")
                value = args[i]
            opts[key] = value
        else:
            _die(f"sbatch: unrecognized option '{a}' ({where})")
        i += 1
    return opts


def _check(opts: dict) -> None:
    checks = {"time": r"(\d+|\d+:\d\d(:\d\d)?|\d+-\d+(:\d\d(:\d\d)?)?)", "mem": r"\d+[KMGT]?B?",
              "signal": r"(B:)?[A-Z0-9]+(@\d+)?", "array": r"\d+(-\d+)?(%\d+)?", "open-mode": r"append|truncate",
              "cpus-per-task": r"\d+", "gpus-per-node": r"(\w+:)?\d+", "nodes": r"\d+", "ntasks-per-node": r"\d+"}
    for key, pattern in checks.items():
        if key in opts and not re.fullmatch(pattern, str(opts[key])):
            _die(f"sbatch: error: invalid --{key} specification: {opts[key]!r}")


def sbatch(args: list[str]) -> None:
    if not args:
        _die("sbatch: error: no batch script given (this fake does not read one from stdin)")
    script, cli = Path(args[-1]).resolve(), _parse_options(args[:-1], "command line")
    lines = []
    for line in script.read_text().splitlines()[1:]:  # directives stop at the first command
        if line.startswith("#SBATCH"):
            lines.append(line[len("#SBATCH"):].strip())
        elif line.strip() and not line.startswith("#"):
            break
    env = {"hold": True} if os.environ.get("SBATCH_HOLD") else {}  # sbatch's input variable for --hold
    opts = {**_parse_options([w for line in lines for w in shlex.split(line)], str(script)), **env, **cli}
    _check(opts)
    first, last, parallel = 0, None, None
    if "array" in opts:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?(?:%(\d+))?", opts["array"])
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        parallel = int(m.group(3)) if m.group(3) else None
    with _locked() as data:
        base = data["next_id"]
        indices = list(range(first, last + 1)) if last is not None else [None]
        data["next_id"] = base + len(indices)
        for n, i in enumerate(indices):
            tid = str(base) if i is None else f"{base}_{i}"
            data["jobs"][tid] = {"base": str(base), "array": i, "own_id": str(base + n), "state": "PENDING",
                                 "held": bool(opts.get("hold")), "parallel": parallel, "exit": None, "pid": None,
                                 "step_pid": None, "restarts": 0, "requeue": False, "cancelled": False,
                                 "submitted": time.time(), "started": None, "ended": None}
        data["submissions"].append({"job_id": str(base), "script": str(script), "options": opts,
                                    "tasks": [t for t in data["jobs"] if data["jobs"][t]["base"] == str(base)],
                                    "time": time.time()})
        copy = _state_dir() / f"{base}.sh"  # sbatch keeps the script as it was at submission
        copy.write_text(script.read_text())
        sub = {"base": str(base), "script": str(copy), "name": script.name, "opts": opts, "cwd": os.getcwd(),
               "count": len(indices), "min": first, "max": last,
               "configuring_s": float(os.environ.get("FAKESLURM_CONFIGURING_S") or 0)}  # no environment: it may hold secrets
        (_state_dir() / f"{base}.submit.json").write_text(json.dumps(sub))
    subprocess.Popen([sys.executable, "-S", str(Path(__file__).resolve()), "_supervise", str(base)],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, close_fds=True)
    print(f"{base}" if opts.get("parsable") else f"Submitted batch job {base}", flush=True)


def _expand(pattern: str, task: dict) -> str:
    array = task["array"] if task["array"] is not None else 4294967294  # what SLURM puts for a plain job
    subs = {"j": task["own_id"], "A": task["base"], "a": str(array), "N": socket.gethostname(), "t": "0", "%": "%"}
    return re.sub(r"%([jAaNt%])", lambda m: subs[m.group(1)], pattern)


def _start(sub: dict, tid: str, task: dict) -> subprocess.Popen:
    opts = sub["opts"]
    env = dict(os.environ)  # the supervisor inherited sbatch's environment (--export=ALL)
    for k in [k for k in env if k.startswith("SLURM_")]:
        del env[k]  # a job sees its own SLURM variables, not those of the submitting process's job
    env.update({"SLURM_JOB_ID": task["own_id"], "SLURM_JOBID": task["own_id"],
                "SLURM_JOB_NAME": opts.get("job-name", sub["name"]),
                "SLURM_JOB_NUM_NODES": "1", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": socket.gethostname(),
                "SLURM_NTASKS": str(int(opts.get("nodes", 1)) * int(opts.get("ntasks-per-node", 1))),
                "SLURM_SUBMIT_DIR": sub["cwd"], "SLURM_RESTART_COUNT": str(task["restarts"]),
                "SLURM_OPEN_MODE": "a" if opts.get("open-mode", "append") == "append" else "t",
                "FAKESLURM_TASK": tid})
    if "partition" in opts:
        env["SLURM_JOB_PARTITION"] = opts["partition"]
    if "cpus-per-task" in opts:
        env["SLURM_CPUS_PER_TASK"] = str(opts["cpus-per-task"])
    if "gpus-per-node" in opts:
        env["SLURM_GPUS_PER_NODE"] = str(opts["gpus-per-node"])
    if "mem" in opts:
        m = re.fullmatch(r"(\d+)([KMGT]?)B?", opts["mem"])
        env["SLURM_MEM_PER_NODE"] = str(int(m.group(1)) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024,
                                                           "T": 1024 ** 2}[m.group(2)])
    if task["array"] is not None:
        env.update({"SLURM_ARRAY_JOB_ID": task["base"], "SLURM_ARRAY_TASK_ID": str(task["array"]),
                    "SLURM_ARRAY_TASK_COUNT": str(sub["count"]), "SLURM_ARRAY_TASK_MIN": str(sub["min"]),
                    "SLURM_ARRAY_TASK_MAX": str(sub["max"])})
    mode = "a" if env["SLURM_OPEN_MODE"] == "a" else "w"
    out = _expand(opts.get("output", f"slurm-{'%A_%a' if task['array'] is not None else '%j'}.out"), task)
    err = _expand(opts["error"], task) if "error" in opts else None
    for path in (out, err):
        if path:
            Path(sub["cwd"], path).parent.mkdir(parents=True, exist_ok=True)
    stdout = open(Path(sub["cwd"], out), mode)
    stderr = open(Path(sub["cwd"], err), mode) if err and err != out else subprocess.STDOUT
    proc = subprocess.Popen(["bash", sub["script"]], cwd=sub["cwd"], env=env, stdin=subprocess.DEVNULL,
                            stdout=stdout, stderr=stderr, start_new_session=True)
    for f in (stdout, stderr):
        if f is not subprocess.STDOUT:
            f.close()
    return proc


def supervise(base: str) -> None:
    """Run the tasks of submission ``base`` (the detached process sbatch starts) until each is final."""
    state = _state_dir()
    sub = json.loads((state / f"{base}.submit.json").read_text())
    procs: dict = {}  # task id -> Popen
    killed: dict = {}  # task id -> time SIGTERM was sent
    while True:
        with _locked(state) as data:
            mine = {k: t for k, t in data["jobs"].items() if t["base"] == base}
            for tid, proc in list(procs.items()):
                task = mine[tid]
                if (task["cancelled"] or task["requeue"]) and tid not in killed:  # scancel, scontrol requeue
                    _signal_group(proc.pid, signal.SIGTERM)
                    _signal_group(proc.pid, signal.SIGCONT)  # a suspended job gets it too
                    killed[tid] = time.time()
                    if task["requeue"] and not task["cancelled"]:
                        task["state"] = "REQUEUE_HOLD" if task["requeue"] == "hold" else "REQUEUED"
                elif tid in killed and time.time() - killed[tid] > KILL_WAIT_S:
                    _signal_group(proc.pid, signal.SIGKILL)
                code = proc.poll()
                if code is None:
                    continue
                del procs[tid]
                killed.pop(tid, None)
                task.update(pid=None, step_pid=None, exit=code, ended=time.time())
                if task["cancelled"]:
                    task["state"] = "CANCELLED"
                elif task["requeue"]:  # runs again, same id (REQUEUED, then PENDING; requeuehold: held)
                    held = task["requeue"] == "hold"
                    task.update(state="REQUEUE_HOLD" if held else "PENDING", held=held, requeue=False,
                                restarts=task["restarts"] + 1)
                else:
                    task["state"] = "COMPLETED" if code == 0 else "FAILED"
            running = sum(t["state"] in ("RUNNING", "CONFIGURING", "SUSPENDED") for t in mine.values())
            for tid, task in sorted(mine.items(), key=lambda kv: kv[1]["array"] or 0):
                if task["state"] in ("PENDING", "REQUEUE_HOLD", "CONFIGURING") and task["cancelled"]:
                    task.update(state="CANCELLED", ended=time.time())
                elif task["state"] in ("PENDING", "REQUEUE_HOLD") and not task["held"] and \
                        (task["parallel"] is None or running < task["parallel"]):
                    task.update(state="CONFIGURING", started=time.time())  # allocated; nodes boot
                    running += 1
                if task["state"] == "CONFIGURING" and time.time() - task["started"] >= sub.get("configuring_s", 0):
                    procs[tid] = _start(sub, tid, task)
                    task.update(state="RUNNING", pid=procs[tid].pid)
            if all(t["state"] in FINAL for t in mine.values()):
                return
        time.sleep(POLL_S)


def _signal_group(pid, sig) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError, TypeError):
        pass


# ------------------------------------------------------------------ srun, sacct, scancel, scontrol
def srun(args: list[str]) -> None:
    with_value = {"--output", "-o", "--error", "-e", "--ntasks", "-n", "--nodes", "-N", "--cpus-per-task", "-c",
                  "--job-name", "-J", "--gpus-per-task", "--mem"}
    opts, i = {}, 0
    while i < len(args) and args[i].startswith("-"):
        key, eq, value = args[i].partition("=")
        if key in with_value and not eq:
            i += 1
            value = args[i]
        opts[key.lstrip("-")] = value if (eq or key in with_value) else True
        i += 1
    if not args[i:]:
        _die("srun: fatal: No command given to execute.")
    if int(opts.get("ntasks", opts.get("n", 1))) != 1 or int(os.environ.get("SLURM_NTASKS", 1)) != 1:
        _die("srun: this fake SLURM runs one task per job")
    tid = os.environ.get("FAKESLURM_TASK")
    if tid is None:
        _die("srun: error: not inside a (fake) SLURM job")
    with _locked() as data:
        task = data["jobs"][tid]
        task["step_pid"] = os.getpid()
    mode = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if os.environ.get("SLURM_OPEN_MODE") == "a" else os.O_TRUNC)
    for fd, key in ((1, "output"), (2, "error")):
        path = opts.get(key) or opts.get(key[0])
        if path:
            target = os.open(_expand(path, task), mode, 0o644)
            os.dup2(target, fd)
            os.close(target)
    os.environ.update({"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_STEP_ID": "0",
                       "SLURM_STEPID": "0"})
    os.execvp(args[i], args[i:])


def sacct(args: list[str]) -> None:
    ids, fields, i = [], ["JobID", "State", "NodeList"], 0
    while i < len(args):
        a = args[i]
        if a in ("-j", "--jobs"):
            ids += args[i + 1].split(",")
            i += 1
        elif a.startswith("--jobs="):
            ids += a.split("=", 1)[1].split(",")
        elif a in ("-o", "--format"):
            fields = args[i + 1].split(",")
            i += 1
        elif a.startswith("--format="):
            fields = a.split("=", 1)[1].split(",")
        elif a not in ("--parsable2", "-P", "-X", "--allocations", "-n", "--noheader"):
            _die(f"sacct: unrecognized option '{a}'")
        i += 1
    with _locked() as data:
        rows = []
        for jid in ids:
            mine = {k: t for k, t in data["jobs"].items() if k == jid or t["base"] == jid}
            waiting = [t["array"] for t in mine.values() if t["array"] is not None and t["state"] == "PENDING"
                       and t["started"] is None]
            if waiting:  # an array's tasks that never started: one line, as sacct prints them
                par = next(iter(mine.values()))["parallel"]
                span = f"{min(waiting)}-{max(waiting)}" if len(waiting) > 1 else str(waiting[0])
                rows.append({"JobID": f"{jid}_[{span}{f'%{par}' if par else ''}]", "State": "PENDING",
                             "NodeList": "None assigned"})
            for tid, t in sorted(mine.items(), key=lambda kv: kv[1]["array"] or 0):
                if t["array"] is not None and t["array"] in waiting:
                    continue
                state = t["state"] if not (t["state"] == "PENDING" and t["restarts"]) else "REQUEUED"
                state = f"CANCELLED by {os.getuid()}" if state == "CANCELLED" else state
                state = t.get("shown") or state
                node = "None assigned" if t["started"] is None else socket.gethostname()
                rows.append({"JobID": tid, "State": state, "NodeList": node})
                if t["started"] is not None:  # the job steps real sacct lists under each job
                    for step in ("batch", "0"):
                        rows.append({"JobID": f"{tid}.{step}", "State": state, "NodeList": node})
    if "-n" not in args and "--noheader" not in args:
        print("|".join(fields))
    for r in rows:
        print("|".join(r.get(f, "") for f in fields))


def scancel(args: list[str]) -> None:
    sig, ids, i = None, [], 0
    while i < len(args):
        if args[i] in ("--signal", "-s"):
            sig, i = args[i + 1], i + 1
        elif args[i].startswith("--signal="):
            sig = args[i].split("=", 1)[1]
        else:
            ids.append(args[i])
        i += 1
    with _locked() as data:
        for jid in ids:
            for tid in _targets(data, jid):
                task = data["jobs"][tid]
                if task["state"] in FINAL:
                    continue
                if sig is None:
                    task["cancelled"] = True
                elif task["step_pid"]:
                    name = sig.upper() if sig.upper().startswith("SIG") else "SIG" + sig.upper()
                    os.kill(task["step_pid"], getattr(signal, name))


def scontrol(args: list[str]) -> None:
    verbs = ("hold", "release", "requeue", "requeuehold", "suspend", "resume")
    if len(args) < 2 or args[0] not in verbs:
        _die(f"scontrol: this fake knows {'|'.join(verbs)} JOBID, not {' '.join(args)!r}")
    with _locked() as data:
        for jid in args[1].split(","):
            for tid in _targets(data, jid):
                task = data["jobs"][tid]
                if args[0] in ("requeue", "requeuehold"):
                    if task["state"] in ("RUNNING", "SUSPENDED"):
                        task["requeue"] = "hold" if args[0] == "requeuehold" else True
                    elif task["state"] == "PENDING" and args[0] == "requeuehold":
                        task["held"] = True
                elif args[0] in ("suspend", "resume"):
                    want = "RUNNING" if args[0] == "suspend" else "SUSPENDED"
                    if task["state"] != want:
                        _die(f"scontrol: error: Job is {'not running' if args[0] == 'suspend' else 'not suspended'}")
                    _signal_group(task["pid"], signal.SIGSTOP if args[0] == "suspend" else signal.SIGCONT)
                    task["state"] = "SUSPENDED" if args[0] == "suspend" else "RUNNING"
                else:
                    task["held"] = args[0] == "hold"


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "_supervise":
        supervise(args[0])
        return
    {"sbatch": sbatch, "srun": srun, "sacct": sacct, "scancel": scancel, "scontrol": scontrol}[cmd](args)


if __name__ == "__main__":
    main(sys.argv[1:])
