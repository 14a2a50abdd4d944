"""Session-scoped fixtures: tiny models and the miniature world are built once per test session."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread per process: tiny models gain nothing from more, and the suite runs the
# toy world's build (one thread) beside the tests and 2-process launches on 2 cores, where
# oversubscribed OpenMP threads wait on each other (several times slower). Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


BUILD_STARTED = "toy-build.started"  # in the session's home: the pid of the background world build


def _process_running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, finished but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: signal 0 only tells that the pid exists
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def _wait_for_background_build(home: str, timeout: float = 3600.0) -> None:
    """Wait while the session's background world build (``_isolated_home``) runs, so no test
    process races it for the world's lock and builds the world a second time at lower priority
    (an xdist worker that reaches ``toy_world`` first would otherwise take the lock)."""
    import time

    from vlmprobe.toy.build import existing_world

    path, end = os.path.join(home, BUILD_STARTED), time.time() + timeout
    while existing_world() is None and time.time() < end:
        try:
            with open(path) as f:
                pid = int(f.read() or 0)
        except (FileNotFoundError, ValueError):
            return
        if pid and not _process_running(pid):
            return  # it ended without a world: the caller builds it (and reports the error)
        time.sleep(1.0)


def _claim(path: str) -> bool:
    """True for the one process that creates ``path`` first (O_EXCL)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory, request):
    """Caches (text classifiers, features, the toy world) go to a per-session directory,
    unless VLMPROBE_TEST_HOME points at a persistent one (to reuse a toy build across runs).
    Under pytest-xdist (``python3 tasks.py test`` runs ``-n auto --dist loadfile``) the workers
    of one run share that directory, so the world is built once for all of them.

    When a selected test uses ``toy_world``, the default toy world (one thread, minutes) and its
    side artefacts (``vlmprobe.toy.side``: the spurious CLIP and CNN, the extra sets) start
    building at once in the background (started by the first worker to claim it) while the first
    tests run; ``toy_world`` and every ``toy:`` spec then wait on the build's file locks and reuse
    the finished build (the same deterministic files an in-process build writes). xdist workers
    lower their own priority (nice 5) so the build, which the world modules wait for, goes first."""
    import subprocess
    import sys

    xdist = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    home = os.environ.get("VLMPROBE_TEST_HOME")
    if not home and xdist:  # one home per run, shared by its workers (basetemp: .../pytest-N/popen-gwK)
        home = str(tmp_path_factory.getbasetemp().parent / "vlmprobe_home")
        os.makedirs(home, exist_ok=True)
    home = home or str(tmp_path_factory.mktemp("vlmprobe_home"))
    old = os.environ.get("VLMPROBE_HOME")
    os.environ["VLMPROBE_HOME"] = home
    from vlmprobe.toy.build import existing_world

    build = None
    needs_world = any("toy_world" in getattr(item, "fixturenames", ()) for item in request.session.items)
    started = os.path.join(home, BUILD_STARTED)
    if needs_world and existing_world() is None and _claim(started):
        with open(os.path.join(home, "toy-build.log"), "w") as log:  # the child keeps its own handle
            build = subprocess.Popen([sys.executable, "-c", "from vlmprobe.toy.side import build_world_and_side; "
                                      "build_world_and_side(progress=False)"], stdout=log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                     start_new_session=True)  # its side process too is in its group
        with open(started, "w") as f:
            f.write(str(build.pid))
    if xdist:  # the world build (and its side artefacts) first: the world modules wait on it
        os.nice(5)
    yield home
    if build is not None:
        if build.poll() is None and not xdist:  # the selected tests finished without it (other
            os.killpg(build.pid, 15)  # xdist workers may still need it: wait for it there)
        build.wait()  # reaped either way
    if old is None:
        os.environ.pop("VLMPROBE_HOME", None)
    else:
        os.environ["VLMPROBE_HOME"] = old


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{"openclip", "hfclip", "llava", "llava-next"} -> directories of tiny random-weight models
    written by ``python -m vlmprobe.testing`` (loaded back through the public specs); under
    xdist built once per run (under a file lock) and shared by the workers."""
    import fcntl

    from vlmprobe.testing import build_tiny_models

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))
    root = tmp_path_factory.getbasetemp().parent / "tiny_models"
    with open(root.parent / "tiny_models.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker builds, the others wait and reuse
        return build_tiny_models(root)


@pytest.fixture(scope="session")
def reference_dir():
    """../shared/reference beside the checkout (real files from the paper's repository)."""
    from pathlib import Path

    ref = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
    if not ref.is_dir():
        pytest.skip("../shared/reference is not present")
    return ref


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory):
    """An ImageFolder of 40 real scikit-learn digits (32x32 PNGs, DIR/<name>/<i>.png), saved in
    mixed PIL modes (RGB, L, RGBA, P) so every loader path meets non-RGB images."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    d = load_digits()
    modes = ["RGB", "L", "RGBA", "P"]
    for i in range(40):
        name = DIGIT_NAMES[d.target[i]]
        (root / name).mkdir(exist_ok=True)
        arr = (d.images[i] / 16 * 255).astype(np.uint8)
        img = Image.fromarray(arr).resize((32, 32), Image.NEAREST).convert(modes[i % 4])
        img.save(root / name / f"{i:04d}.png")
    return root


# ---- helper TOY: the miniature world, built ONCE per test session -------------------------
# Other test files may use it too (e.g. to run a command on toy:digits / toy:vlm). It lives in
# $VLMPROBE_HOME/toy/seed0, i.e. exactly where the specs toy:clip, toy:vlm and toy:digits
# resolve, so loading through load_model("toy:vlm") reuses it instead of building again.
# Set VLMPROBE_TEST_HOME to a persistent directory to reuse one build across sessions.
@pytest.fixture(scope="session")
def toy_world(_isolated_home):
    """world.json metadata of the default toy world (+ "dir"): naming frequencies, sizes,
    training stats and the build's own sanity accuracies."""
    from vlmprobe.toy import build_world

    _wait_for_background_build(_isolated_home)
    return build_world(progress=False)


@pytest.fixture(scope="session")
def real_models(tmp_path_factory):
    """The real LLaMA-2 / Qwen2 tokenizers and the tiny VLMs built around them
    (``vlmprobe.testing.real``): {"tokenizers/llama", "tokenizers/qwen2", "llava-real",
    "qwen2-vl-real"} -> directory. Vocabularies come from ../shared/reference/tokenizers or
    ``pip download`` of llama-cpp-python's sdist; skipped (with the reason) when neither works.
    VLMPROBE_TEST_REAL=DIR keeps the build across sessions."""
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.testing.real import build_real_models

    root = os.environ.get("VLMPROBE_TEST_REAL") or str(tmp_path_factory.mktemp("real_models"))
    try:
        return build_real_models(root)
    except VlmprobeError as e:
        pytest.skip(f"real tokenizer vocabularies unavailable: {e}")


@pytest.fixture
def python3_kernel(tmp_path, monkeypatch):
    """A Jupyter kernelspec named python3 that runs this very interpreter (the venv's, with
    vlmprobe), for executing the notebooks."""
    import json
    import sys

    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"], "display_name": "python3",
                                                  "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """A fake SLURM (``vlmprobe.testing.fakeslurm``: sbatch, srun, sacct, scancel, scontrol) first
    on ``PATH`` for this test and the processes it starts -> its directory (``submissions(DIR)``,
    ``jobs(DIR)``). submitit's shared sacct watcher is cleared (another test's fake reused the job
    ids); the fake's jobs still running at the end are cancelled."""
    from submitit.slurm.slurm import SlurmJob

    from vlmprobe.testing import fakeslurm

    directory = tmp_path / "fakeslurm"
    for key, value in fakeslurm.install(directory).items():
        monkeypatch.setenv(key, value)
    SlurmJob.watcher.clear()
    yield directory
    fakeslurm.shutdown(directory)
    SlurmJob.watcher.clear()


def pytest_collection_modifyitems(session, config, items):
    """Module order (each module kept whole, so its module-scoped fixtures are built once): the
    modules that do not use the toy world, then those that do; serially that gives the background
    world build started by ``_isolated_home`` the other modules' minutes. Under xdist (``--dist
    loadfile --no-loadscope-reorder``, as ``tasks.py`` runs it) the demo (the longest module, ~5
    min) comes first: one worker waits for the world build while the others run the world-free
    modules, and the demo runs beside them instead of alone at the end. (Measured on 2 cores:
    14.9 min this way; 16.3 min with three launch-heavy modules before the demo, which slowed the
    world build; 16.7 min with the demo last.)"""
    world_modules = {item.module.__name__ for item in items
                     if hasattr(item, "module") and "toy_world" in getattr(item, "fixturenames", ())}
    xdist = bool(os.environ.get("PYTEST_XDIST_WORKER"))

    def order(item):
        module = getattr(getattr(item, "module", None), "__name__", "")
        if xdist and module.rsplit(".", 1)[-1] == "test_demo":
            return 0
        return 2 if module in world_modules else 1

    items.sort(key=order)
