"""One writer per run directory, whatever the operator does (issue #31): a study edited and
re-run while its jobs run, a killed study's workers, SLURM states that are neither running nor
finished, and file systems that cannot lock."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

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


def _wait(cond, timeout: float) -> bool:
    import time

    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_one_table_of_live_slurm_states_for_wait_adopt_and_status(tmp_path, fake_slurm, monkeypatch):
    """A job that sacct reports CONFIGURING (nodes booting), SUSPENDED (``scontrol suspend``),
    RESIZING, UNKNOWN (accounting lag) or REQUEUE_HOLD (``scontrol requeuehold``, which stops the
    running job as SLURM does) will still write its run: ``SlurmPool.wait`` does not report it
    finished, ``adopt`` waits for it (no resubmission) and ``--status`` says running; released, it
    runs again under the same id and, once COMPLETED, ``wait`` returns it done."""
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
    go.write_text("")
    assert _wait(lambda: pool.job_state(jid) == "COMPLETED", 20)
    assert waited() == [(job, 0)] and status_rows(out)[0]["state"] == "done"
