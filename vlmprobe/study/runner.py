"""Run a study: build the world if asked, execute every planned run in order, reuse what is
done, resume what is partial, continue past failures, then write the report.

Reuse. A run directory holds ``study_run.json`` = {key, status, argv, seconds[, model_spec]}.
``key`` is a content hash of the run's exact command (or fine-tuning recipe), the SHA-256 of
every existing file it names (a corpus, an ImageWikiQA file, a manifest: editing one in place
reruns the runs that read it), the names, sizes and modification times of every file under each
local directory it names (a model directory, an adapter, an image folder or image root: a model
retrained in place or an image replaced reruns the runs that read it), the keys of the runs it depends on and the miniature world's
build key. A run whose stamp says ``done`` with
the same key and whose result file exists is not touched; a directory whose stamp has another
key (the study changed) is moved aside to ``DIR.old-<key>`` (``.2``, ``.3``... when taken: an
earlier one is kept) and the run starts afresh; a directory whose stamp says ``running`` while
its job or process is alive is never moved or resumed: the run is refused in one line naming
that writer (``--cancel-stale``: cancelled first; ``_set_aside``); any other
run is (re)started with the same command, and the commands themselves resume partial run
directories (and refuse a directory made by hand with a different config, reported as that
run's failure).

With ``executor="local"`` or ``"slurm"`` the runs go to worker processes or SLURM jobs instead
(``executors.py``: same commands, same run directories, each run writing its own stamp); what
follows describes the default serial executor. Execution is in-process through ``vlmprobe.cli.main`` (the exact command a user would type is
printed first); fine-tuning calls ``vlmprobe.finetune.finetune`` (what ``recipes/finetune.py``
runs). A failed run is reported, its dependents are skipped, the others still run, and the
study exits non-zero at the end.

Launched with several processes (``accelerate launch [--cpu] --num_processes N -m vlmprobe study``
or ``torchrun -m vlmprobe study``), every process walks the same plan: rank 0 alone decides what
to reuse, moves stale directories aside, builds the world and writes stamps, plan and report;
engine runs (``Measure.shards``) and fine-tuning (DDP) run on every process, each taking its share
exactly as ``vlmprobe eval`` does under the launcher; the other measurements run on rank 0 alone
(``distributed.solo``) while the rest wait. A run counts as failed when any process failed it:
each run is one ``distributed.all_or_none`` step, so a failure on one process reaches the others
within a poll interval, the run fails on every process with ``rank R failed: ...``, and every
process goes on to the next run.
"""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from .. import distributed
from ..cache import atomic_write_json, content_key, file_sha256, path_fingerprint
from ..specs import find_world
from .executors import (NOT_FINISHED, STAMP, Job, cancel_writer, live_writer, make_pool, read_stamp, run_in_process,
                        schedule)
from .measures import MEASURES, Ctx
from .plan import Plan, Run, expand
from .schema import Study

PLAN_FILE = "study.json"


def _scalar(v) -> str:
    return str(v).lower() if isinstance(v, bool) or v is None else str(v)


def shell_line(run: Run, argv: list[str]) -> str:
    """The command as a user would type it."""
    prog = "accelerate launch" if run.measure == "finetune" else "vlmprobe"
    return f"{prog} {' '.join(shlex.quote(a) for a in argv)}"


def local_dirs(value: str) -> list[str]:
    """Local directories a command value names: the value itself, or the path inside a spec
    (``hf:DIR``, ``openclip:local-dir:DIR``, ``...+adapter:DIR``, ``DIR@split``)."""
    out = []
    for part in value.split("+adapter:"):
        part = part.rsplit("@", 1)[0] if "@" in part and not os.path.isdir(part) else part
        candidates = [part] + [part[i + 1:] for i, ch in enumerate(part) if ch == ":"]
        out += [c for c in candidates if c and os.path.isdir(c)][:1]
    return out


def result_file(run: Run) -> str:
    return "summary.json" if run.measure == "finetune" else MEASURES[run.measure].result_file


class StudyRunner:
    def __init__(self, study: Study, out: str | Path, progress: bool = False, cancel_stale: bool = False):
        self.study, self.out, self.progress, self.cancel_stale = study, Path(out), progress, cancel_stale
        self.plan: Plan = expand(study)
        self.world: dict | None = None
        self.keys: dict[str, str] = {}
        self._hashes: dict[tuple, str] = {}
        self._dirs: dict[str, str] = {}
        self.status: dict[str, str] = {}  # run id -> done | reused | failed | blocked
        self.w = distributed.world()

    # ------------------------------------------------------------ per-run pieces
    def run_dir(self, run: Run) -> Path:
        return self.out / run.id

    def model_spec(self, name: str) -> str | None:
        m = self.study.models[name]
        if m.spec is not None:
            return m.spec
        stamp = read_stamp(self.out / name / "finetune")
        return stamp.get("model_spec") if stamp and stamp.get("status") == "done" else None

    def command(self, run: Run) -> list[str]:
        """The run's ``vlmprobe`` argv (fine-tuning: the recipe overrides as ``--field value``)."""
        if run.measure == "finetune":
            base = self.study.models[run.params["from"]]
            return ["recipes/finetune.py", "--model", self.model_spec(base.name) or f"<{base.name}>",
                    *[x for k, v in run.params.items() if k != "from" for x in (f"--{k}", _scalar(v))],
                    "--seed", str(self.study.seed), "--output_dir", str(self.run_dir(run))]
        ds = self.study.datasets.get(run.dataset) if run.dataset else None
        ctx = Ctx(model=self.model_spec(run.model) or f"<fine-tuned {run.model}>",
                  load_args=self.study.models[run.model].load_args(), data_args=ds.args() if ds else [],
                  seed=self.study.seed, out=str(self.run_dir(run)),
                  deps={role: str(self.out / rid) for role, rid in run.deps.items()},
                  datasets={n: d.args() for n, d in self.study.datasets.items()},
                  models={n: m.spec for n, m in self.study.models.items() if m.spec},
                  group_args=ds.group_args() if ds else [])
        return MEASURES[run.measure].argv(ctx, run.params)

    def key(self, run: Run) -> str:
        if run.id not in self.keys:
            world = self.world.get("key") if self.world else None
            if run.measure == "finetune":
                what = {"recipe": run.params, "base": self.study.models[run.params["from"]].spec}
            else:
                what = {"argv": [a for a in self.command(run) if not a.startswith("<")]}
            named = what.get("argv") or list(run.params.values())
            if run.measure == "finetune":
                named = [*named, what["base"]]
            files = {v: self._file_hash(v) for v in named if isinstance(v, str) and os.path.isfile(v)}
            dirs = {d: self._dir_key(d) for v in named if isinstance(v, str) for d in local_dirs(v)
                    if not self._inside_study(d)}  # run directories of this study: covered by the deps' keys
            self.keys[run.id] = content_key({**what, **({"files": files} if files else {}),
                                             **({"dirs": dirs} if dirs else {}),
                                             "deps": sorted(self.key(self.plan.runs[r]) for r in run.deps.values()),
                                             "world": world, "seed": self.study.seed})
        return self.keys[run.id]

    def _dir_key(self, path: str) -> str:
        """Key of (name, size, mtime) of every file under a directory (cached for this runner)."""
        if path not in self._dirs:
            self._dirs[path] = content_key(path_fingerprint(path))
        return self._dirs[path]

    def _inside_study(self, path: str) -> bool:
        try:
            Path(path).resolve().relative_to(self.out.resolve())
            return True
        except ValueError:
            return False

    def _file_hash(self, path: str) -> str:
        """SHA-256 of a file the study names (cached per path, size and mtime for this runner)."""
        st = os.stat(path)
        stamp = (path, st.st_size, st.st_mtime_ns)
        if stamp not in self._hashes:
            self._hashes[stamp] = file_sha256(path)
        return self._hashes[stamp]

    def state(self, run: Run) -> str:
        """done (reusable) | partial (directory exists) | new."""
        d = self.run_dir(run)
        stamp = read_stamp(d)
        if stamp and stamp.get("status") == "done" and stamp.get("key") == self.key(run) \
                and (d / result_file(run)).exists():
            return "done"
        return "partial" if d.exists() else "new"

    # ------------------------------------------------------------ the study
    def prepare_world(self) -> None:
        if self.study.world:
            world = find_world(self.study.world)
            print(f"$ vlmprobe {self.study.world} build", flush=True)
            self.world = distributed.on_main(self.w, lambda: world.build(self.study.seed, self.progress))
            print(f"world: {self.world['dir']} ({'reused' if self.world.get('reused') else 'built'})", flush=True)

    def dry_run(self) -> list[dict]:
        rows = []
        for line in self.plan.skips:
            print(line)
        for run in self.plan.runs.values():
            state = self.state(run)
            rows.append({"id": run.id, "state": state})
            print(f"[{state:>7}] {run.id}\n          {shell_line(run, self.command(run))}")
        return rows

    def execute(self) -> int:
        distributed.on_main(self.w, lambda: self.out.mkdir(parents=True, exist_ok=True))
        for line in self.plan.skips:
            print(line, flush=True)
        total = len(self.plan.runs)
        for i, run in enumerate(self.plan.runs.values(), 1):
            blocked = [r for r in run.deps.values() if self.status.get(r) in NOT_FINISHED]
            head = f"[{i}/{total}] {run.id}"
            if blocked:
                self.status[run.id] = "blocked"
                print(f"{head}: skipped, it needs {', '.join(blocked)} which failed", flush=True)
                continue
            if distributed.on_main(self.w, lambda: self.state(run)) == "done":
                self.status[run.id] = "reused"
                print(f"{head}: reused (finished, same config)", flush=True)
                continue
            self.status[run.id] = self._execute_one(run, head)
        distributed.on_main(self.w, self.write_plan)
        failed = [r for r, s in self.status.items() if s in NOT_FINISHED]
        if failed:
            print(f"study: {len(failed)} of {total} runs did not finish: {', '.join(failed)}", flush=True)
        return 1 if failed else 0

    def _execute_one(self, run: Run, head: str) -> str:
        d = self.run_dir(run)
        refused = distributed.on_main(self.w, lambda: self._set_aside(run, head))
        if refused:
            print(refused, flush=True)
            return "refused"
        argv = self.command(run)
        print(f"\n{head}\n$ {shell_line(run, argv)}", flush=True)
        start, cpu = time.time(), time.process_time()
        extra = {}
        everyone = run.measure == "finetune" or MEASURES[run.measure].shards
        try:  # one step of the launch: a failure on any process reaches every process, which all go on
            code = distributed.all_or_none(self.w, lambda: self._run(run, argv, extra) if everyone or self.w.main
                                           else 0)
        except distributed.RankFailed as e:
            print(f"{head}: FAILED ({e})", flush=True)
            return "failed"
        code = max(distributed.gather(self.w, code))  # failed if any process failed
        if code:
            print(f"{head}: FAILED (exit {code})", flush=True)
            return "failed"

        def stamp():
            d.mkdir(parents=True, exist_ok=True)
            atomic_write_json(d / STAMP, {"key": self.key(run), "status": "done", "measure": run.measure,
                                          "argv": argv, "seconds": round(time.time() - start, 1),
                                          "cpu_seconds": round(time.process_time() - cpu, 1),
                                          "processes": self.w.size if everyone else 1, **extra})
        distributed.on_main(self.w, stamp)
        return "done"

    def _set_aside(self, run: Run, head: str) -> str | None:
        """Make way for a new writer of ``run``'s directory -> None, or the one-line refusal when
        its stamp says ``running`` and that job or process is alive (``live_writer``): the
        directory is never moved or resumed under a live writer, which would go on writing into it
        by path. With ``cancel_stale`` (``--cancel-stale``) that writer is cancelled first
        (``scancel``; a local process: SIGTERM) and waited for. A directory made by this study with
        another config is then kept as ``DIR.old-<key>`` (``DIR.old-<key>.2``... when that name is
        taken: an earlier one is never deleted), its log beside it (``.logs/<run>.log.old-<key>``)."""
        d = self.run_dir(run)
        old = read_stamp(d)
        writer = live_writer(old)
        changed = bool(old) and old.get("key") != self.key(run)
        if writer and not self.cancel_stale:
            jid = old.get("job_id") if old.get("cluster") == "slurm" else None
            how = f"scancel {jid}" if jid else f"kill {old.get('pid')}"
            return (f"{head}: refused: {'its config changed but ' if changed else ''}{writer} still writes {d} "
                    f"(its {STAMP} says running); wait for it to end, or cancel it ({how}) or re-run with "
                    "--cancel-stale")
        if writer:
            print(f"{head}: --cancel-stale: cancelling {writer}", flush=True)
            cancel_writer(old)
        if changed:
            aside, n = d.with_name(f"{d.name}.old-{old.get('key')}"), 1
            while aside.exists() or aside.is_symlink():
                n += 1
                aside = d.with_name(f"{d.name}.old-{old.get('key')}.{n}")
            d.rename(aside)
            log = self.log_path(run)
            if log.exists():
                log.rename(log.with_name(f"{log.name}{aside.name[len(d.name):]}"))
            print(f"{head}: its config changed; the previous run directory was moved to {aside}", flush=True)
        return None

    def _run(self, run: Run, argv: list[str], extra: dict) -> int:
        """Execute one run in this process -> exit status (an exception is reported, never raised)."""
        return run_in_process(run.measure, argv, self.finetune_overrides(run) if run.measure == "finetune" else None,
                              extra, run_id=run.id)

    def finetune_overrides(self, run: Run) -> dict:
        """The fine-tuning config (``load_config`` overrides) of a finetune run."""
        overrides = {k: v for k, v in run.params.items() if k != "from"}
        return {**overrides, "model": self.model_spec(run.params["from"]), "seed": self.study.seed,
                "output_dir": str(self.run_dir(run))}

    def shell(self, run: Run) -> str:
        return shell_line(run, self.command(run))

    def log_path(self, run: Run) -> Path:
        """``OUT/.logs/<run id with / as __>.log``: a worker's or job's output for ``run``."""
        return self.out / ".logs" / (run.id.replace("/", "__") + ".log")

    def job(self, run: Run) -> Job:
        """What a worker process (or a SLURM job) needs to execute ``run``."""
        return Job(run.id, run.measure, self.command(run), str(self.run_dir(run)), self.key(run), str(self.log_path(run)),
                   self.finetune_overrides(run) if run.measure == "finetune" else None,
                   self.study.models[run.model].gpus)

    def write_plan(self) -> None:
        """``OUT/study.json``: the study file, world, and every run with its state (the report's input)."""
        runs = []
        for run in self.plan.runs.values():
            runs.append({**run.to_dict(), "status": self.status.get(run.id, "planned"),
                         "command": self.command(run)})
        atomic_write_json(self.out / PLAN_FILE, {
            "name": self.study.name, "file": self.study.file, "study_text": self.study.text, "seed": self.study.seed,
            "world": None if not self.world else {k: self.world.get(k) for k in
                                                  ("dir", "key", "naming_probability", "naming_frequency", "seconds")},
            "models": {n: {"kind": m.kind, "spec": self.model_spec(n), "finetune": m.finetune,
                           **({"group": m.meta.get("group"), "meta": m.meta} if m.meta else {})}
                       for n, m in self.study.models.items()},
            "zoos": self.study.zoos, "reference": self.study.reference,
            "datasets": {n: vars(d) for n, d in self.study.datasets.items()},
            "skips": self.plan.skips, "runs": runs})


def run_study(study: Study, out: str | Path, dry_run: bool = False, report: bool = True,
              progress: bool = False, executor: str = "serial", jobs: int = 0, partial: bool = True,
              cancel_stale: bool = False) -> int:
    """Run (or with ``dry_run`` list) a study into ``out`` with ``executor`` (serial | local with
    ``jobs`` worker processes | slurm; ``executors.py``). The report is written when every run
    finished, or with ``partial`` from what is done. A run still written by a live job or process
    of an earlier command is waited for (same config, SLURM) or refused; ``cancel_stale`` cancels
    that job instead (``StudyRunner._set_aside``)."""
    runner = StudyRunner(study, out, progress=progress, cancel_stale=cancel_stale)
    if dry_run:
        if study.world:
            world = find_world(study.world)
            runner.world = world.existing(study.seed)
            print(f"world: {world.directory(study.seed)} ({'built' if runner.world else 'not built yet'})")
        for entry, names in study.zoos.items():
            print(f"zoo {entry}: {len(names)} models")
            for n in names:
                meta = study.models[n].meta
                print(f"  {n}  ({study.models[n].spec}; {meta.get('parameters') or '?'} parameters, "
                      f"{meta.get('resolution') or '?'} px)")
        runner.dry_run()
        print(f"{len(runner.plan.runs)} runs")
        return 0
    runner.prepare_world()
    if executor == "serial":
        code = runner.execute()
    else:
        if runner.w.size > 1:
            from ..errors import VlmprobeError

            raise VlmprobeError(f"--executor {executor} starts its own processes: run it without accelerate "
                                "launch/torchrun (or use the serial executor under the launcher)")
        runner.out.mkdir(parents=True, exist_ok=True)
        runner.write_plan()
        for line in runner.plan.skips:
            print(line, flush=True)
        schedule(runner, make_pool(executor, jobs, runner.out, study.executor),
                 log=lambda m: print(m, flush=True))
        runner.write_plan()
        failed = [r for r, s in runner.status.items() if s in NOT_FINISHED]
        if failed:
            print(f"study: {len(failed)} of {len(runner.plan.runs)} runs did not finish: {', '.join(failed)}",
                  flush=True)
        code = 1 if failed else 0
    if report and (partial or code == 0):
        from .report import write_report

        paths = distributed.on_main(runner.w, lambda: write_report(out))
        print(f"\nreport: {paths['html']}  (markdown: {paths['md']}; samples: {paths.get('browser', 'not written')})",
              flush=True)
    elif report:
        print("report: not written, some runs did not finish (re-run the same command to finish them, or add "
              "--partial to write it from what is done)", flush=True)
    return code
