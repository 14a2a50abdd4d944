"""Where vlmprobe keeps things between runs (``VLMPROBE_HOME``, default: the user cache dir),
and content keys for cached artefacts: a key is the SHA-256 of a canonical JSON of everything
that determines the artefact, so a cache entry is reused only when all of it matches."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path


def home_dir() -> Path:
    """``$VLMPROBE_HOME`` or ``<user cache dir>/vlmprobe``."""
    env = os.environ.get("VLMPROBE_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vlmprobe"))


def content_key(obj) -> str:
    """SHA-256 (hex, first 20 chars) of ``json.dumps(obj, sort_keys=True)``."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def path_fingerprint(path: str | os.PathLike) -> list:
    """(name, size, mtime_ns) of every file under a local model directory: changes whenever
    the weights on disk change, without reading gigabytes to hash them."""
    p = Path(path)
    if not p.exists():
        return []
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    return [[str(f.relative_to(p) if p.is_dir() else f.name), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def temporary_path(path: str | os.PathLike) -> Path:
    """A sibling name no other writer uses (``NAME.<pid>.<random>.tmp``): processes writing the
    same cache entry at once never write into each other's temporary file."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str | os.PathLike, write) -> None:
    """``write(tmp)`` fills a private temporary file (``temporary_path``), which is fsynced and
    renamed over ``path``: readers see the old file or the whole new one, never half of it."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a private temporary file + rename so a killed process never leaves half a file."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# errno values of a file system that has no flock (Lustre mounted without -o flock, NFS without
# its lock manager, some FUSE file systems): the lock cannot be taken at all, not "busy"
NO_LOCK_ERRNOS = frozenset(e for e in (getattr(errno, n, None) for n in ("ENOLCK", "ENOSYS", "EOPNOTSUPP", "ENOTSUP"))
                           if e is not None)


def mount_of(path: str | os.PathLike, mounts: str = "/proc/self/mounts") -> tuple[str, str, str]:
    """(mount point, file system type, mount options) of the mount holding ``path``, from
    ``mounts`` (the longest mount point above it); ("?", "?", "") where unknown."""
    target = os.path.realpath(path)
    best = ("?", "?", "")
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 4:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and (best[0] == "?" or len(point) >= len(best[0])):
                    best = (point, parts[2], parts[3])
    except OSError:
        pass
    return best


def node_local_locks(path: str | os.PathLike, mounts: str = "/proc/self/mounts") -> str | None:
    """``"MOUNT (TYPE, OPTION)"`` when ``path``'s file system is mounted so that ``flock`` locks
    are coherent on one node only (they do not exclude a process on another node): Lustre
    ``localflock`` (mount.lustre(8); ``flock`` is cluster-wide, ``noflock`` fails), NFS
    ``local_lock=flock``, ``local_lock=all`` or ``nolock`` (nfs(5); the default emulates flock
    with NLM/NFSv4 byte-range locks, cluster-wide), AFS ``flock=local``; else None."""
    point, fstype, options = mount_of(path, mounts)
    local = {"lustre": ("localflock",), "nfs": ("nolock", "local_lock=flock", "local_lock=all"),
             "nfs4": ("nolock", "local_lock=flock", "local_lock=all"), "afs": ("flock=local",)}
    hits = [o for o in options.split(",") if o in local.get(fstype, ())]
    return f"{point} ({fstype}, {hits[0]})" if hits else None


def no_lock_message(path: str | os.PathLike, err: OSError) -> str:
    """One line: ``path``'s file system cannot lock (``err``), its mount, and what to do."""
    point, fstype, options = mount_of(Path(path).parent)
    name = "EOPNOTSUPP" if err.errno == errno.EOPNOTSUPP else errno.errorcode.get(err.errno, str(err.errno))
    return (f"cannot lock {path}: the file system mounted at {point} (type {fstype}, options {options or '?'}) "
            f"does not support flock ({name}); vlmprobe needs it for one writer per run directory and cache entry: mount it "
            "with cluster-wide flock (Lustre: -o flock; NFS: a running lock manager, not nolock) or put --out "
            "and VLMPROBE_HOME on a file system that has it")


def try_lock(fd: int, path: str | os.PathLike, wait: bool = False) -> bool:
    """THE lock of vlmprobe: an exclusive ``flock`` on the open descriptor ``fd`` (of file
    ``path``) -> True; False when another process holds it (``wait``: block until it is free
    instead). Released by the kernel when the descriptor is closed or the process dies. A file
    system without flock raises ``LockError`` with one line naming the mount (``no_lock_message``)."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in NO_LOCK_ERRNOS:
            from .errors import LockError

            raise LockError(no_lock_message(path, e)) from None
        raise


@contextmanager
def file_lock(path: str | os.PathLike, waiting: str | None = None):
    """Hold an exclusive lock (``try_lock``) on ``path`` (created) inside the block; other
    processes (any launch, same machine or a shared file system with flock) wait. ``waiting``:
    printed once to stderr when the lock is busy. Released by the kernel if the process dies."""
    import sys

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not try_lock(fd, path):
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            try_lock(fd, path, wait=True)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def complete_lines(path: str | os.PathLike, cut: bool = True) -> bytes:
    """The bytes of ``path`` up to its last newline (b"" when absent): the lines an append-only
    JSONL writer finished. With ``cut``, a partial last line (a writer killed mid-write) is
    truncated away on disk, so the next append starts on a line of its own."""
    path = Path(path)
    if not path.exists():
        return b""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if cut and end != len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return data[:end]


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False, default=str) + "\n")


def build_dir_once(out: str | os.PathLike, marker: str, write, current=None, force: bool = False) -> Path:
    """The one way vlmprobe builds a cached directory: built once and published whole.

    When ``out/marker`` holds JSON for which ``current(meta)`` is true (default: any readable
    marker) and ``force`` is false, ``out`` is reused. Else ``write(tmp)`` fills a fresh sibling
    directory and returns the marker's JSON; the marker is written last and ``tmp`` is renamed to
    ``out`` (an outdated ``out`` is removed first; a process that loses the race to a current
    build drops its copy). A failed ``write`` leaves no directory behind."""
    import shutil
    import tempfile

    out = Path(out)
    if not force and marker_current(out / marker, current):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        meta = write(tmp)
        tmp.chmod(0o755)
        atomic_write_json(tmp / marker, meta)
        if out.exists():
            if not force and marker_current(out / marker, current):  # another process finished first
                return out
            shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(tmp, out)
        except OSError:  # another process published between our check and our rename
            if not marker_current(out / marker, current):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def marker_current(path: Path, current=None) -> bool:
    """Whether marker file ``path`` holds JSON that ``current(meta)`` accepts (default: any)."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return current is None or bool(current(meta))
