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
