"""A global/local cue-conflict set for the miniature world (``toy:cue-conflict``).

Each stimulus is a large digit (the *shape*) drawn out of small copies of another digit (the
*texture*), in the spirit of Navon figures and of Geirhos et al.'s cue-conflict images::

    mask  = upsample(A / 16, 32 x 32, bicubic) > threshold       global shape: test digit A
    tile  = B / 16 (8 x 8), repeated 4 x 4 times                   local texture: test digit B
    alpha = mask * tile ;  rgb = (1 - alpha) * paper + alpha * ink

Only test-split digits are used (the toy models never trained on them). For every ordered pair
of classes (shape, texture) ``per_pair`` stimuli are drawn (seeded), including shape == texture
pairs, which the shape bias leaves out. Files follow the real set's layout
(``ROOT/<shape>/<shape><n>-<texture><m>.png``, n/m the sklearn indices of A/B), so the set is
read by the same ``cue-conflict:ROOT`` loader. Built once under ``$VLMPROBE_HOME/toy/`` in a
directory named by a content key of everything below (a changed recipe never reuses a stale set).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..cache import build_dir_once, content_key, home_dir
from .digits import CLASSNAMES, DigitsConfig, ink_on_paper, test_split

VERSION = 1
MARKER = "cueconflict.json"


@dataclass(frozen=True)
class CueConflictConfig:
    seed: int = 0  # the world's seed (its test split) and the draw of stimuli
    per_pair: int = 2  # stimuli per ordered (shape, texture) pair
    size: int = 32  # canvas side (the toy models' input)
    threshold: float = 0.35  # shape mask: upsampled intensity above this
    tile: int = 8  # side of one texture copy (the digits' native 8 x 8)

    def key(self) -> str:
        return content_key({"version": VERSION, **asdict(self), "digits": asdict(DigitsConfig())})


def stimulus(shape8: np.ndarray, texture8: np.ndarray, rng: np.random.Generator, cfg: CueConflictConfig):
    """Two 8x8 intensity arrays (0..16) -> RGB PIL image (see module doc)."""
    from PIL import Image

    big = Image.fromarray((np.clip(shape8 / 16.0, 0, 1) * 255).astype(np.uint8), mode="L")
    mask = np.asarray(big.resize((cfg.size, cfg.size), Image.BICUBIC), dtype=np.float32) / 255.0 > cfg.threshold
    small = np.asarray(Image.fromarray((np.clip(texture8 / 16.0, 0, 1) * 255).astype(np.uint8), mode="L")
                       .resize((cfg.tile, cfg.tile), Image.BICUBIC), dtype=np.float32) / 255.0
    reps = -(-cfg.size // cfg.tile)
    tile = np.tile(small, (reps, reps))[:cfg.size, :cfg.size]
    alpha = (mask * tile)[..., None]
    return ink_on_paper(alpha, rng)


def build_cue_conflict(cfg: CueConflictConfig = CueConflictConfig(), root: str | os.PathLike | None = None) -> Path:
    """Write (or reuse) the set; returns its directory (``cue-conflict:DIR`` loads it)."""
    out = Path(root) if root else home_dir() / "toy" / f"cue-conflict-{cfg.key()}"
    return build_dir_once(out, MARKER, lambda tmp: _write_stimuli(tmp, cfg))


def _write_stimuli(tmp: Path, cfg: CueConflictConfig) -> dict:
    digits, labels, test = test_split(cfg.seed)
    by_class = [test[labels[test] == c] for c in range(len(CLASSNAMES))]
    rows = 0
    for s, shape in enumerate(CLASSNAMES):
        (tmp / shape).mkdir(parents=True)
        for t, texture in enumerate(CLASSNAMES):
            rng = np.random.default_rng([cfg.seed, 7, s, t])
            a = rng.choice(by_class[s], size=cfg.per_pair, replace=False)
            b = rng.choice(by_class[t], size=cfg.per_pair, replace=False)
            for i, j in zip(a.tolist(), b.tolist()):
                img = stimulus(digits.images[i], digits.images[j], rng, cfg)
                img.save(tmp / shape / f"{shape}{i}-{texture}{j}.png")
                rows += 1
    return {"key": cfg.key(), "config": asdict(cfg), "images": rows}


def load_toy_cue_conflict(spec: str = "toy:cue-conflict"):
    """``toy:cue-conflict`` -> ImageDataset (classes: the ten digit names; label: shape)."""
    from ..data.cueconflict import PREFIX, load_cue_conflict

    root = build_cue_conflict()
    ds = load_cue_conflict(PREFIX + str(root))
    ds.name = spec
    ds.info.update({"format": "toy-cue-conflict", "toy_dir": str(root)})
    return ds
