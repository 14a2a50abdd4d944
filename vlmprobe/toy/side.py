"""The world's side artefacts, built in a second process while the main world trains.

The spurious-background CLIP and CNN (``toy:clip-spurious``, ``toy:cnn``), the CounterAnimal-style
split and the cue-conflict, photo-crop and distribution-shifted sets are each built on first use
(under their own file locks) and do not depend on the main build (data, the toy CLIP on one thread,
then the toy VLM that reuses its vision tower on the caller's threads). A study that needs the world
builds them beside it, on the core the toy CLIP's training leaves idle, so its runs find them ready. They are the same
files a build on first use writes (same configs, same seeds, one thread each).
"""
from __future__ import annotations


def build_side() -> None:
    """Build (or reuse) every side artefact, one after another, in this process."""
    from ..progress import progress_bars
    from .cueconflict import build_cue_conflict
    from .photos import build_photos
    from .shifted import build_shifted
    from .spurious import ensure_clip, ensure_cnn, ensure_split

    with progress_bars(False):
        for step in (ensure_clip, ensure_cnn, ensure_split, build_shifted, build_cue_conflict, build_photos):
            step()


def build_world_and_side(seed: int = 0, progress: bool = True) -> dict:
    """``build_world(seed=seed)``; when the world is not built yet and the machine has a second
    core, the side artefacts are built at the same time in a spawned process (waited for before
    returning; if it fails, each artefact is built again on first use and reports its own error;
    if the main build fails, it is stopped)."""
    import multiprocessing

    from ..distributed import usable_cores
    from .build import build_world, existing_world

    side = None
    if existing_world(seed) is None and usable_cores() > 1:
        side = multiprocessing.get_context("spawn").Process(target=build_side, name="vlmprobe-toy-side")
        side.start()
    try:
        meta = build_world(seed=seed, progress=progress)
    except BaseException:
        if side is not None:  # a half-built side artefact is rebuilt on first use (stage markers)
            side.terminate()
            side.join()
        raise
    if side is not None:
        side.join()
        if side.exitcode:
            print(f"vlmprobe toy: building the side artefacts failed (exit {side.exitcode}); "
                  "each is built again on first use", flush=True)
    return meta
