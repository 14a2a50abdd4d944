"""The one sample loop with several processes: 2 CPU processes (gloo) through the real
`accelerate launch --cpu --num_processes 2 -m vlmprobe ...` (and `torch.distributed.run` directly,
which skips accelerate's ~7 s of launcher start-up) give the files of 1 process (zero-shot here;
likelihood, generation, probe, ImageWikiQA and frequency in one study launch,
tests/test_study.py::test_study_under_accelerate_launch_shards_each_run_like_one_process); SIGKILL
of a 2-process run resumes with 1 process; a 1-process run resumes with 2; an unrelated second
process into a run directory is refused (one writer)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from vlmprobe.cli import main as cli_main
from vlmprobe.distributed import free_port
from vlmprobe.runs import strip_volatile

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _launch(*args, n=2, via="torchrun", env=None, **kw):
    """N processes running `vlmprobe ARGS` (n=1: plain `python -m vlmprobe`).

    ``via="accelerate"``: the real `accelerate launch --cpu --num_processes n -m vlmprobe ARGS`
    users type (accelerate's launcher, then vlmprobe's re-exec under torch.distributed.run: ~7 s
    more start-up on 2 cores); ``via="torchrun"``: `python -m torch.distributed.run` directly,
    the same worker processes, for the tests that are not about accelerate's launcher."""
    if n == 1:
        head = [sys.executable, "-m", "vlmprobe"]
    elif via == "accelerate":
        head = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", str(n), "-m", "vlmprobe"]
    else:
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr",
                "127.0.0.1", "--master_port", str(free_port()), "-m", "vlmprobe"]
    cpu = {"ACCELERATE_USE_CPU": "true"} if n > 1 and via == "torchrun" else {}  # as --cpu: gloo, even with GPUs
    return subprocess.Popen([*head, *map(str, args)], env={**ENV, **cpu, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _finish(proc, timeout=900):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _records(run):
    with open(run / "samples.jsonl") as f:
        return [json.loads(line) for line in f]


def assert_same_run(a, b):
    """Same records (volatile fields aside), scores within 1e-5, same results (run facts aside)."""
    ra, rb = _records(a), _records(b)
    assert [strip_volatile(r) for r in ra] == [strip_volatile(r) for r in rb]
    if (a / "scores.npy").exists() or (b / "scores.npy").exists():
        np.testing.assert_allclose(np.load(a / "scores.npy"), np.load(b / "scores.npy"), atol=1e-5, rtol=0)
    assert not (b / "shards").exists() and not (b / "scores.partial").exists()
    ca, cb = (json.loads((d / "config.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ca.items() if k not in ("runtime", "environment")} == \
        {k: v for k, v in cb.items() if k not in ("runtime", "environment")}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """24 noisy colour squares in 3 class folders, one of them unreadable (a counted skip)."""
    root = tmp_path_factory.mktemp("engine_images")
    rng = np.random.default_rng(0)
    for c, rgb in enumerate([(220, 30, 30), (30, 200, 30), (30, 30, 220)]):
        (root / f"class{c}").mkdir()
        for i in range(8):
            arr = np.clip(np.array(rgb) + rng.normal(0, 60, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / f"class{c}" / f"{i}.png")
    (root / "class1" / "7.png").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def clip_spec(tiny_models):
    return f"openclip:local-dir:{tiny_models['openclip']}"


@pytest.fixture(scope="module")
def llava_spec(tiny_models):
    return f"hf:{tiny_models['llava']}"


def _eval_args(spec, images, method, out, *extra):
    return ["eval", "--model", spec, "--data", images, "--method", method, "--out", out, "--workers", 0,
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def zeroshot_one(clip_spec, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("zs1") / "run"
    assert cli_main(list(map(str, _eval_args(clip_spec, images, "zeroshot", out, "--batch-size", 4)))) == 0
    return out


def test_two_processes_zeroshot_equal_one(zeroshot_one, clip_spec, images, tmp_path):
    out = tmp_path / "two"
    stdout, err = _finish(_launch(*_eval_args(clip_spec, images, "zeroshot", out, "--batch-size", 4), via="accelerate"))
    assert "starting 2 CPU processes" in err  # accelerate's --cpu launch, re-run under torch.distributed.run
    assert sum("top-1" in line for line in stdout.splitlines()) == 1  # one report per launch
    assert_same_run(zeroshot_one, out)
    records = _records(out)
    assert {r["rank"] for r in records} == {0, 1}  # both processes computed a share
    assert sum(bool(r.get("skipped")) for r in records) == 1
    assert json.loads((out / "config.json").read_text())["runtime"]["world_size"] == 2
    assert json.loads((out / "timing.json").read_text())["samples_computed"] == 24
    assert json.loads((out / "results.json").read_text())["top1"] == \
        json.loads((zeroshot_one / "results.json").read_text())["top1"]


def _wait_for(cond, proc, timeout=600):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < timeout
        time.sleep(0.01)


def _kill_tree(proc):
    """SIGKILL the launcher and every process below it (torchrun starts its workers in their own
    sessions, so a process-group kill would miss them)."""
    import psutil

    procs = [psutil.Process(proc.pid)]
    procs += procs[0].children(recursive=True)
    for p in procs:
        p.send_signal(signal.SIGSTOP)  # freeze the tree first, so no process starts or moves on
    for p in procs:
        p.kill()
    psutil.wait_procs(procs, timeout=30)


def _shard_lines(run):
    return sum(f.read_bytes().count(b"\n") for f in (run / "shards").glob("*.jsonl")) if (run / "shards").is_dir() else 0


def test_sigkill_two_processes_then_resume_with_one(zeroshot_one, clip_spec, images, tmp_path):
    out = tmp_path / "killed"
    proc = _launch(*_eval_args(clip_spec, images, "zeroshot", out, "--batch-size", 1))
    _wait_for(lambda: _shard_lines(out) >= 2, proc)
    _kill_tree(proc)  # every process of the launch, mid-way
    proc.wait()
    done = _shard_lines(out)
    assert 2 <= done < 24 and not (out / "results.json").exists()
    assert cli_main(list(map(str, _eval_args(clip_spec, images, "zeroshot", out, "--batch-size", 4)))) == 0
    assert_same_run(zeroshot_one, out)
    assert json.loads((out / "timing.json").read_text())["samples_computed"] <= 24 - done + 2  # cut tails only


def test_one_process_run_resumed_with_two(zeroshot_one, clip_spec, images, tmp_path, monkeypatch):
    from vlmprobe.classify.zeroshot import Method

    out = tmp_path / "resumed"
    real, calls = Method.run_batch, []

    def dies_on_third_batch(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Method, "run_batch", dies_on_third_batch)
    assert cli_main(list(map(str, _eval_args(clip_spec, images, "zeroshot", out, "--batch-size", 4)))) == 130
    assert len(_records(out)) == 8
    _finish(_launch(*_eval_args(clip_spec, images, "zeroshot", out, "--batch-size", 4)))
    assert_same_run(zeroshot_one, out)
    assert json.loads((out / "timing.json").read_text())["samples_computed"] == 16


def test_unrelated_second_process_is_refused(zeroshot_one, clip_spec, images, tmp_path):
    out = tmp_path / "shared"
    first = _launch(*_eval_args(clip_spec, images, "zeroshot", out, "--batch-size", 1), n=1)
    _wait_for(lambda: (out / "samples.jsonl").exists() and (out / "samples.jsonl").stat().st_size > 0, first)
    os.kill(first.pid, signal.SIGSTOP)  # hold the first one mid-run (its lock stays held)
    try:
        second = _launch(*_eval_args(clip_spec, images, "zeroshot", out, "--batch-size", 1), n=1)
        _, err = second.communicate(timeout=600)
        assert second.returncode == 2
        assert err.strip().splitlines()[-1].startswith("vlmprobe eval: error:") and "in use by another" in err
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _finish(first)
    assert_same_run(zeroshot_one, out)
    assert len(_records(out)) == 24


# ---------------------------------------------------------------- units (no model)
def test_share_splits_the_unfinished_indices_at_batch_multiples():
    from vlmprobe.distributed import World
    from vlmprobe.engine import share

    todo = [0, 1, 2, 5, 6, 7, 8, 9, 12]  # unfinished, not a stride of anything
    parts = [share(todo, World(rank=r, size=2), batch_size=2) for r in range(2)]
    assert parts == [[0, 1, 2, 5], [6, 7, 8, 9, 12]]
    parts = [share(todo, World(rank=r, size=4), batch_size=1) for r in range(4)]
    assert sorted(sum(parts, [])) == todo and all(parts)


def test_merge_verifies_and_a_killed_merge_is_repaired(tmp_path):
    from vlmprobe.errors import RunDirError
    from vlmprobe.runs import RunDir

    ids = [f"s{i}" for i in range(5)]
    run = RunDir(tmp_path, {"method": "m"}, num_scores=2)
    run.lock("L")
    assert run.open() == 0
    run.append([{"id": "s0"}], np.zeros((1, 2)))
    a, b = run.shard("L", 0), run.shard("L", 1)
    a.append([{"index": 1, "record": {"id": "s1", "rank": 0}}], np.ones((1, 2)))
    b.append([{"index": 3, "record": {"id": "s3", "rank": 1}}, {"index": 4, "record": {"id": "s4", "rank": 1}}],
             np.full((2, 2), 3.0))
    a.release(), b.release()
    with pytest.raises(RunDirError, match="1 samples not computed"):
        run.merge(ids)
    assert run.finished() == {0, 1, 3, 4}
    c = run.shard("M", 0)
    c.append([{"index": 2, "record": {"id": "s2"}}], np.full((1, 2), 2.0))
    c.release()
    run.merge(ids)
    assert [r["id"] for r in run.records()] == ids and not (tmp_path / "shards").exists()
    np.testing.assert_array_equal(run.scores()[:, 0], [0, 1, 2, 3, 3])
    # a merge killed after writing samples.jsonl but before removing the shards: the leftover is dropped
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "X-r0.jsonl").write_text(json.dumps({"index": 2, "record": {"id": "s2"}}) + "\n")
    np.full((1, 2), 2.0, np.float32).tofile(tmp_path / "shards" / "X-r0.scores")
    assert run.open() == 5 and run.shards() == [] and run.finished() == set(range(5))
    run.unlock()


def test_second_writer_is_refused_in_one_line(tmp_path):
    from vlmprobe.errors import RunDirError
    from vlmprobe.runs import RunDir

    first = RunDir(tmp_path, {})
    first.lock()
    with pytest.raises(RunDirError, match=f"in use by another vlmprobe process \\(pid {os.getpid()} on "):
        RunDir(tmp_path, {}).lock()
    first.unlock()
    RunDir(tmp_path, {}).lock()  # released: the next writer gets it


ON_MAIN_SCRIPT = """
import sys
from vlmprobe import distributed
from vlmprobe.errors import VlmprobeError
w = distributed.world()
assert distributed.on_main(w, lambda: w.rank + 41) == 41  # rank 0's value on every rank
try:
    distributed.on_main(w, lambda: {}["missing"])
except KeyError:
    print(f"rank {w.rank}: own KeyError")
except VlmprobeError as e:
    print(f"rank {w.rank}: {e}")
with distributed.solo():
    assert not distributed.world().sharded
assert distributed.world().size == 2
"""


def test_on_main_failure_reaches_every_rank(tmp_path):
    """A non-user exception on rank 0 inside ``on_main`` is re-raised there and reaches the
    other rank as a one-line VlmprobeError (no rank left waiting at a collective)."""
    script = tmp_path / "on_main.py"
    script.write_text(ON_MAIN_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(free_port()), str(script)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0: own KeyError" in proc.stdout
    assert "rank 1: rank 0 failed: KeyError: 'missing'" in proc.stdout
