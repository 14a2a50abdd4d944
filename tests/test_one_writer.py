"""One writer per run directory, whatever the operator does (issue #31): a study edited and
re-run while its jobs run, a killed study's workers, SLURM states that are neither running nor
finished, and file systems that cannot lock."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from test_study_exec import _lines
from test_study_scale import _wait
from vlmprobe.cli import main


@pytest.mark.parametrize("name", ["ENOLCK", "ENOSYS", "EOPNOTSUPP"])
def test_a_file_system_without_flock_is_one_line_naming_the_mount(name, tiny_models, digits_folder, tmp_path,
                                                                  monkeypatch, capsys):
    """``flock`` failing with ENOLCK / ENOSYS / EOPNOTSUPP (Lustre without ``-o flock``, NFS
    without its lock manager) is one line naming the mount point, its type and what to do, exit 2,
    no traceback, for the run directory's lock (``vlmprobe eval``) and the cache's (``file_lock``)."""
    import fcntl

    def no_flock(fd, op):
        raise OSError(getattr(errno, name), os.strerror(getattr(errno, name)))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    out = tmp_path / "run"
    code = main(["eval", "--model", f"hfclip:{tiny_models['hfclip']}", "--data", str(digits_folder), "--method", "zeroshot",
                 "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err  # main's code: OSError raised out of main (a traceback)
    from vlmprobe.cache import file_lock, mount_of
    from vlmprobe.errors import LockError

    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    locked = err.split("cannot lock ", 1)[1].split(": the file system", 1)[0]  # a cache entry's or the run's
    point, fstype, _ = mount_of(Path(locked).parent)
    assert f": the file system mounted at {point} (type {fstype}" in err, err
    assert f"does not support flock ({name})" in err and "Lustre: -o flock" in err, err
    assert not (out / "samples.jsonl").exists()
    point = mount_of(tmp_path)[0]
    with pytest.raises(LockError, match=f"mounted at {point} .*flock \\({name}\\)"):
        with file_lock(tmp_path / "cache" / "x.lock"):
            pass


def test_one_table_of_live_slurm_states_for_wait_adopt_and_status(tmp_path, fake_slurm, monkeypatch):
    """A job that sacct reports CONFIGURING (nodes booting), SUSPENDED (``scontrol suspend``),
    RESIZING, UNKNOWN (accounting lag) or REQUEUE_HOLD (``scontrol requeuehold``, which stops the
    running job as SLURM does) will still write its run: ``SlurmPool.wait`` does not report it
    finished, ``adopt`` waits for it (no resubmission) and ``--status`` says running; released, it
    runs again under the same id; ``scontrol requeue`` stops it and it runs a third time; once
    COMPLETED, ``wait`` returns it done."""
    import functools
    import json
    import subprocess
    import threading

    from vlmprobe.study.executors import STAMP, Job, SlurmPool, _alive, status_rows
    from vlmprobe.testing import fakeslurm

    out = tmp_path / "out"
    run_dir = out / "m" / "d" / "zeroshot"
    run_dir.mkdir(parents=True)
    (out / "study.json").write_text(json.dumps({"runs": [{"id": "m/d/zeroshot"}]}))
    stamp, go, pids = run_dir / STAMP, tmp_path / "go", tmp_path / "pids"
    done = json.dumps({"status": "done", "key": "k"})
    script = f"echo $$ >> {pids}; while [ ! -e {go} ]; do sleep 0.05; done; echo '{done}' > {stamp}"
    monkeypatch.setenv("FAKESLURM_CONFIGURING_S", "1.5")  # each start: CONFIGURING first
    pool = SlurmPool(out / ".submitit", {"poll_s": 0.1, "timeout_min": 5})
    handle = pool.executor.submit(functools.partial(subprocess.run, ["sh", "-c", script]))
    jid = handle.job_id
    job = Job("m/d/zeroshot", "zeroshot", ["eval"], str(run_dir), "k", str(tmp_path / "x.log"))

    def waited() -> list | None:  # pool.wait with a deadline: None when it did not return
        result = []
        t = threading.Thread(target=lambda: result.append(pool.wait(timeout=0.5)), daemon=True)
        t.start()
        t.join(5)
        return result[0] if result else None

    def check(state):
        assert _wait(lambda: pool.job_state(jid).split()[0] == state, 20), (state, pool.job_state(jid))
        stamp.write_text(json.dumps({"status": "running", "key": "k", "job_id": jid, "cluster": "slurm"}))
        assert status_rows(out)[0]["state"] == "running", state
        pool.active.clear()
        assert pool.adopt(job), state  # waited for, not resubmitted
        assert waited() == [], state  # not finished

    check("CONFIGURING")
    check("RUNNING")
    first = int(pids.read_text().split()[0])
    subprocess.run(["scontrol", "suspend", jid], check=True)
    check("SUSPENDED")
    subprocess.run(["scontrol", "resume", jid], check=True)
    check("RUNNING")
    for shown in ("RESIZING", "UNKNOWN"):
        fakeslurm.show(fake_slurm, jid, shown)
        check(shown)
    fakeslurm.show(fake_slurm, jid, None)
    subprocess.run(["scontrol", "requeuehold", jid], check=True)
    check("REQUEUE_HOLD")
    assert _wait(lambda: not _alive(first), 10)  # the requeue stopped the running job
    subprocess.run(["scontrol", "release", jid], check=True)
    check("RUNNING")
    assert len(pids.read_text().split()) == 2 and fakeslurm.jobs(fake_slurm)[jid]["restarts"] == 1
    second = int(pids.read_text().split()[1])
    subprocess.run(["scontrol", "requeue", jid], check=True)  # stops the running job, which runs again
    assert _wait(lambda: not _alive(second), 10)
    check("RUNNING")
    assert len(pids.read_text().split()) == 3 and fakeslurm.jobs(fake_slurm)[jid]["restarts"] == 2
    go.write_text("")
    assert _wait(lambda: pool.job_state(jid) == "COMPLETED", 20)
    assert waited() == [(job, 0)] and status_rows(out)[0]["state"] == "done"


# ------------------------------------------------------------------ studies that run while the operator acts
ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _env() -> dict:
    root = Path(__file__).resolve().parents[1]
    return {**os.environ, **ENV, "PYTHONPATH": str(root)}


def _stamp(out: Path, rid: str) -> dict:
    import json

    try:
        return json.loads((out / rid / "study_run.json").read_text())
    except (OSError, ValueError):
        return {}


def _study_file(path: Path, tiny_models, digits_folder, seed: int = 0, executor: str = "") -> Path:
    path.write_text(f"""\
seed: {seed}
{executor}
models:
  vlm: {{spec: "hf:{tiny_models['llava']}"}}
datasets:
  digits: {{data: "{digits_folder}"}}
measurements:
  - {{measure: generate, models: [vlm]}}
""")
    return path


def _start(cli: list, out: Path, rid: str):
    """A study command in its own process, returned once ``rid`` is running with a sample written."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "vlmprobe", "study", *cli, "--out", str(out)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ok = _wait(lambda: proc.poll() is not None or (_stamp(out, rid).get("status") == "running"
                                                    and _lines(out / rid / "samples.jsonl") > 0), 300)
    assert ok and proc.poll() is None, proc.communicate()[0][-3000:]
    return proc


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), multiprocessing's resource tracker left out."""
    children: dict = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmd:
                children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_workers_die_with_a_killed_local_study(sig, tiny_models, digits_folder, tmp_path):
    """``kill -TERM`` (the study ends its workers and their process groups) or ``kill -KILL`` (the
    kernel's parent-death signal ends them) of a running ``--executor local`` study: no worker is
    left; the next study command resumes the run (its stamp said running under a dead pid) and
    finishes it."""
    import signal

    from vlmprobe.study.executors import _alive

    path = _study_file(tmp_path / "s.yaml", tiny_models, digits_folder)
    out, rid = tmp_path / "out", "vlm/digits/generate"
    proc = _start([str(path), "--executor", "local", "--jobs", "2"], out, rid)
    workers = _descendants(proc.pid)
    assert _stamp(out, rid)["pid"] in workers
    os.kill(proc.pid, getattr(signal, sig))
    proc.communicate(timeout=60)
    assert _wait(lambda: not [p for p in workers if _alive(p)], 5), [p for p in workers if _alive(p)]
    written = _lines(out / rid / "samples.jsonl")
    # main: the orphaned worker went on writing and finished the run after the study was killed
    assert _stamp(out, rid)["status"] == "running" and 0 < written < 40
    if sig == "SIGKILL":
        return
    assert main(["study", str(path), "--out", str(out), "--executor", "local", "--no-report"]) == 0
    assert _stamp(out, rid)["status"] == "done" and _lines(out / rid / "samples.jsonl") == 40


def _study_log(out: Path, rid: str) -> Path:
    return out / ".logs" / (rid.replace("/", "__") + ".log")


def test_a_study_edited_while_its_local_worker_runs(tiny_models, digits_folder, tmp_path, capsys):
    """Edit a study (its seed: every run's key changes) while a ``--executor local`` worker writes
    a run, and run it again (local and serial executors): refused in one line naming the pid and
    the directory, nothing moved or written; the old run finishes untouched (all 40 samples, its
    own key). Run again once it has ended: the finished directory is set aside as
    ``.old-<key>.2`` (an earlier ``.old-<key>`` is kept), its log beside it, and the new run's
    files hold no record of the old job."""
    import json
    import signal
    import socket

    a = _study_file(tmp_path / "a.yaml", tiny_models, digits_folder, seed=0)
    out, rid = tmp_path / "out", "vlm/digits/generate"
    proc = _start([str(a), "--executor", "local"], out, rid)
    writer = _stamp(out, rid)
    pid, old_key = writer["pid"], writer["key"]
    os.kill(pid, signal.SIGSTOP)  # alive, writing nothing while the edited study is run
    b = _study_file(tmp_path / "b.yaml", tiny_models, digits_folder, seed=1)
    try:
        for executor in (["--executor", "local"], []):
            code = main(["study", str(b), "--out", str(out), *executor, "--no-report"])
            printed = capsys.readouterr().out
            assert code == 1, printed
            assert f"{rid}: refused: its config changed but pid {pid} on {socket.gethostname()} still writes " \
                   f"{out / rid} (its study_run.json says running); wait for it to end, or cancel it (kill {pid}) " \
                   "or re-run with --cancel-stale" in printed, printed
            assert not list((out / "vlm" / "digits").glob("generate.old-*")) and _stamp(out, rid) == writer
    finally:
        os.kill(pid, signal.SIGCONT)
    printed = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, printed[-3000:]
    finished = _stamp(out, rid)
    assert finished["status"] == "done" and finished["key"] == old_key and finished["pid"] == pid
    assert _lines(out / rid / "samples.jsonl") == 40
    old_files = {f.name: f.read_bytes() for f in (out / rid).iterdir() if f.is_file()}
    earlier = out / "vlm" / "digits" / f"generate.old-{old_key}"  # set aside by an earlier edit
    earlier.mkdir()
    (earlier / "keep").write_text("earlier")
    assert main(["study", str(b), "--out", str(out), "--executor", "local", "--no-report"]) == 0
    aside = out / "vlm" / "digits" / f"generate.old-{old_key}.2"
    assert f"moved to {aside}" in capsys.readouterr().out
    assert (earlier / "keep").read_text() == "earlier"
    assert {f.name: f.read_bytes() for f in aside.iterdir() if f.is_file()} == old_files  # untouched
    new = _stamp(out, rid)
    assert new["status"] == "done" and new["key"] != old_key and new["pid"] != pid
    assert json.loads((out / rid / "config.json").read_text())["seed"] == 1
    assert _lines(out / rid / "samples.jsonl") == 40
    log = _study_log(out, rid)
    assert log.read_text().count("$ vlmprobe") + log.read_text().count("$ eval") == 1  # the new job's only
    assert log.with_name(log.name + f".old-{old_key}.2").exists()


def test_a_study_edited_while_its_slurm_job_runs(tiny_models, digits_folder, tmp_path, capsys, fake_slurm,
                                                monkeypatch):
    """Edit a study while its SLURM job (the fake's sbatch/sacct/scancel) writes a run, the job
    suspended (``scontrol suspend``: alive, not writing): the re-run is refused in one line naming
    the job, nothing is moved or submitted; with ``--cancel-stale`` the job is cancelled
    (``scancel``) and waited for, its directory set aside untouched, and the new job's run holds
    no record of the old one (its key, job id, seed; the log's one command)."""
    import json
    import subprocess

    from vlmprobe.testing.fakeslurm import jobs, submissions

    for k, v in {**ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}.items():
        monkeypatch.setenv(k, v)  # the jobs this process submits
    slurm = "executor: {slurm: {timeout_min: 5, poll_s: 0.2}}"
    a = _study_file(tmp_path / "a.yaml", tiny_models, digits_folder, seed=0, executor=slurm)
    out, rid = tmp_path / "out", "vlm/digits/generate"
    proc = _start([str(a), "--executor", "slurm"], out, rid)
    writer = _stamp(out, rid)
    jid, old_key = writer["job_id"], writer["key"]
    subprocess.run(["scontrol", "suspend", jid], check=True)
    b = _study_file(tmp_path / "b.yaml", tiny_models, digits_folder, seed=1, executor=slurm)
    code = main(["study", str(b), "--out", str(out), "--executor", "slurm", "--no-report"])
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert f"{rid}: refused: its config changed but SLURM job {jid} (SUSPENDED) still writes {out / rid} (its " \
           f"study_run.json says running); wait for it to end, or cancel it (scancel {jid}) or re-run with " \
           "--cancel-stale" in printed, printed
    assert len(submissions(fake_slurm)) == 1 and _stamp(out, rid) == writer
    assert not list((out / "vlm" / "digits").glob("generate.old-*"))
    written = (out / rid / "samples.jsonl").read_bytes()
    code = main(["study", str(b), "--out", str(out), "--executor", "slurm", "--no-report", "--cancel-stale"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"{rid}: --cancel-stale: cancelling SLURM job {jid} (SUSPENDED)" in printed
    assert jobs(fake_slurm)[jid]["state"] == "CANCELLED"
    old = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1, old[-3000:]  # the earlier command saw its job cancelled
    aside = out / "vlm" / "digits" / f"generate.old-{old_key}"
    # the set-aside directory is the old job's alone: what it had written when refused, plus at most what it
    # finished writing when scancel's SIGCONT let it handle its SIGTERM (a batch stopped mid-write)
    kept = (aside / "samples.jsonl").read_bytes()
    assert kept.startswith(written) and _stamp(aside.parent, aside.name)["key"] == old_key
    assert all(json.loads(line)["id"] for line in kept.decode().splitlines())
    new = _stamp(out, rid)
    assert new["status"] == "done" and new["key"] != old_key and new["job_id"] not in (None, jid)
    assert new["job_id"] == submissions(fake_slurm)[1]["job_id"]
    assert json.loads((out / rid / "config.json").read_text())["seed"] == 1
    assert _lines(out / rid / "samples.jsonl") == 40
    assert _study_log(out, rid).read_text().count("$ eval") == 1


# ------------------------------------------------------------------ smaller defects of the same review
def test_random_weight_openclip_zoo_has_one_model_per_architecture(tmp_path):
    """``weights: random`` gives every pre-training tag of an architecture the same spec
    (``openclip:ARCH``): the zoo holds it once, named ``ENTRY/ARCH@random`` (main: one identical
    model per tag)."""
    import open_clip

    from vlmprobe.study import load_study

    tags = [t for a, t in open_clip.list_pretrained() if a == "ViT-B-32"]
    assert len(tags) > 3
    path = tmp_path / "z.yaml"
    path.write_text("""\
models:
  rnd: {zoo: openclip, match: ["ViT-B-32", "RN50"], weights: random}
datasets: {d: {data: toy:digits}}
measurements: [{measure: zeroshot}]
""")
    study = load_study(path)
    assert study.zoos == {"rnd": ["rnd/RN50@random", "rnd/ViT-B-32@random"]}
    assert [study.models[n].spec for n in study.zoos["rnd"]] == ["openclip:RN50", "openclip:ViT-B-32"]
    assert study.models["rnd/RN50@random"].meta["pretrained"] == "random"


def test_dir_zoo_labels_only_clip_and_vlm_checkpoints_and_refuses_random_weights(tiny_models, tmp_path, capsys):
    """A ``dir`` zoo over a tiny CLIP, a tiny LLaVA and a tiny transformers ViT classifier: CLIP
    -> ``hfclip:``, LLaVA -> ``hf:`` (VLM), the ViT classifier is skipped with a line naming it
    (main: labelled a VLM, ``hf:``); ``weights: random`` on a ``dir`` zoo is refused naming the
    file, line and key (main: ignored)."""
    from transformers import ViTConfig, ViTForImageClassification

    from vlmprobe.study import load_study
    from vlmprobe.study.schema import StudyFileError

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "clip").symlink_to(tiny_models["hfclip"])
    (zoo / "llava").symlink_to(tiny_models["llava"])
    cfg = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, image_size=16,
                    patch_size=8, num_labels=3)
    ViTForImageClassification(cfg).save_pretrained(zoo / "vit")
    path = tmp_path / "z.yaml"
    path.write_text(f"""\
models:
  mine: {{zoo: dir, path: "{zoo}"}}
datasets: {{d: {{data: toy:digits}}}}
measurements: [{{measure: zeroshot}}]
""")
    study = load_study(path)
    assert study.zoos == {"mine": ["mine/clip@local", "mine/llava@local"]}
    assert study.models["mine/clip@local"].kind == "clip" and study.models["mine/llava@local"].kind == "vlm"
    assert study.models["mine/llava@local"].spec == f"hf:{zoo / 'llava'}"
    assert study.zoo_skips == [f"skip: zoo mine: {zoo / 'vit'} is a transformers 'vit' checkpoint "
                               "(ViTForImageClassification), neither CLIP nor a VLM (no vision_config + text_config): "
                               "no vlmprobe model kind loads it"]
    assert main(["study", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert study.zoo_skips[0] in capsys.readouterr().out
    path.write_text(path.read_text().replace('"}', '", weights: random}', 1))
    with pytest.raises(StudyFileError, match=r"z.yaml:2.*weights: random does not apply to a zoo: dir entry"):
        load_study(path)


def test_the_test_fault_hook_is_not_armed_in_the_production_loader(tiny_models, digits_folder, tmp_path,
                                                                   monkeypatch, capsys):
    """``VLMPROBE_TEST_FAULT`` set in a user's environment does nothing to ``vlmprobe`` (main: the
    loader armed it, and the run failed with the injected fault); the tests' entry point
    ``python -m vlmprobe.testing.fault`` still injects it."""
    import subprocess
    import sys

    monkeypatch.setenv("VLMPROBE_TEST_FAULT", "0")
    args = ["eval", "--model", f"hf:{tiny_models['llava']}", "--data", str(digits_folder), "--method",
            "likelihood", "--limit", "2", "--no-progress"]
    code = main([*args, "--out", str(tmp_path / "plain")])
    assert code == 0, capsys.readouterr().err[-2000:]
    proc = subprocess.run([sys.executable, "-m", "vlmprobe.testing.fault", *args, "--out", str(tmp_path / "faulty")],
                          env={**_env(), "VLMPROBE_TEST_FAULT": "0"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "injected fault (VLMPROBE_TEST_FAULT)" in proc.stderr + proc.stdout, proc.stderr


def test_pyproject_license_is_an_spdx_expression_and_setuptools_is_quiet():
    """``project.license`` is the SPDX string of PEP 639: setuptools reads the project table
    without a warning (main: "`project.license` as a TOML table is deprecated", printed by every
    install; refused by setuptools from 2027-02-18) and records ``License-Expression: MIT``."""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    root = Path(__file__).resolve().parents[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), root / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []
    assert dist.metadata.license_expression == "MIT"


def test_a_job_never_starts_as_a_second_writer(tmp_path, capsys):
    """A job (e.g. queued before the study was edited, starting after the new command took the
    run over) whose run directory's stamp has another key, or says running under a live process
    that is not this job, exits 3 without writing anything (main: it wrote its stamp and ran)."""
    import json
    import socket
    import subprocess

    from vlmprobe.study.executors import STAMP, Job, execute_job

    run_dir = tmp_path / "m" / "d" / "zeroshot"
    run_dir.mkdir(parents=True)
    job = Job("m/d/zeroshot", "zeroshot", ["eval", "--no-such-flag"], str(run_dir), "k", str(tmp_path / "x.log"))
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        for stamp, why in (({"status": "done", "key": "new"}, "now belongs to another config (key new, not k)"),
                           ({"status": "running", "key": "k", "pid": sleeper.pid, "host": socket.gethostname()},
                            f"is still written by pid {sleeper.pid} on {socket.gethostname()}")):
            (run_dir / STAMP).write_text(json.dumps(stamp))
            assert execute_job(job) == 3
            assert f"m/d/zeroshot: not started: {run_dir} {why}" in capsys.readouterr().err
            assert json.loads((run_dir / STAMP).read_text()) == stamp and not (tmp_path / "x.log").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert execute_job(job) == 2  # the writer is gone: the job runs (its bad flag fails it)


def test_mounts_whose_locks_are_node_local_are_named(tmp_path, capsys, monkeypatch):
    """``node_local_locks`` reads the mount table: Lustre ``localflock``, NFS ``nolock`` /
    ``local_lock=flock|all`` and AFS ``flock=local`` give node-local flock (named, and a SLURM
    study on such a mount prints one warning); Lustre ``flock`` and plain NFS do not."""
    from vlmprobe import cache

    table = tmp_path / "mounts"
    table.write_text("""\
/dev/sda1 / ext4 rw,relatime 0 0
mgs@tcp:/lus /lus lustre rw,localflock 0 0
mgs@tcp:/lus2 /lus2 lustre rw,flock 0 0
srv:/home /nfs/home nfs rw,vers=3,nolock 0 0
srv:/data /nfs/data nfs4 rw,vers=4.2,local_lock=none 0 0
srv:/scr /nfs/scr nfs rw,vers=3,local_lock=flock 0 0
AFS /afs afs rw,flock=local 0 0
""")
    got = {p: cache.node_local_locks(p, str(table)) for p in
           ("/lus/x", "/lus2/x", "/nfs/home/u", "/nfs/data/u", "/nfs/scr/u", "/afs/c", "/tmp")}
    assert got == {"/lus/x": "/lus (lustre, localflock)", "/lus2/x": None, "/nfs/home/u": "/nfs/home (nfs, nolock)",
                   "/nfs/data/u": None, "/nfs/scr/u": "/nfs/scr (nfs, local_lock=flock)",
                   "/afs/c": "/afs (afs, flock=local)", "/tmp": None}
    from vlmprobe.study.executors import SlurmPool

    real = cache.mount_of
    monkeypatch.setattr(cache, "mount_of", lambda path, mounts=None: real("/lus/study", str(table)))
    SlurmPool(tmp_path / "out" / ".submitit", {"cluster": "local"})
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"warning: {tmp_path / 'out'} is on /lus (lustre, localflock): its file locks " \
        "hold on one node only" in err
