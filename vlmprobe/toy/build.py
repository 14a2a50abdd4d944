"""Building, caching and locating the miniature world.

A world directory (default ``$VLMPROBE_HOME/toy/seed<S>``, or ``--out``) holds::

    .vlmprobe-toy            sentinel: this directory belongs to a toy build (safe to rebuild)
    images/<split>/<class>/digits-NNNN.png     the rendered digits (an ImageFolder per split)
    manifest.jsonl           {"id", "image", "label", "split"} per image (paths relative to it)
    classes.json             class names in label order ("zero" .. "nine")
    templates.json           the CLIP caption templates (zero-shot prompts)
    wikiqa.jsonl             toy ImageWikiQA (test-split images)
    finetune/train.json      classification instruction data (LLaVA format, train split)
    corpus/conversations.json   the VLM's image conversations (LLaVA format)
    corpus/knowledge.json       the VLM's text-only conversations
    corpus/instruct.json        general instruction data for fine-tuning mixes: the image question
                                answering practice (paths relative to the world) + knowledge.json
    data.json                marker of the data stage (written last)
    clip/                    toy CLIP (``hfclip:`` loadable)
    vlm/                     toy VLM (``hf:`` loadable)
    world.json               marker of the whole build (written last): config key, naming
                             frequencies, training stats, sanity accuracies, file sizes

Each stage's marker records the content key of the build config (SHA-256 of every setting
plus ``VERSION``) and the size of every file it wrote. A stage is reused only when its marker
exists, the key matches and every listed file has its recorded size; otherwise (a killed
build, a changed config, a deleted file) the stage is rebuilt from scratch. Builds take a
file lock (``<dir>.lock``) so two processes never build the same directory at once.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..cache import atomic_write_json, content_key, file_lock, home_dir
from ..errors import VlmprobeError
from ..progress import progress_bars
from .clip import ClipConfig
from .corpus import CAPTION_TEMPLATES, EXTRA_WORDS, CorpusConfig
from .digits import CLASSNAMES, SPLITS, DigitsConfig
from .wikiqa import text_constants
from .vlm import VlmConfig

VERSION = 4  # bump when the code changes what a build produces
SENTINEL = ".vlmprobe-toy"
DATA_MARKER = "data.json"
VLM_MAX_THREADS = 4  # more threads than this only add barrier waits at the toy VLM's sizes
WORLD_MARKER = "world.json"


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    digits: DigitsConfig = field(default_factory=DigitsConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    vlm: VlmConfig = field(default_factory=VlmConfig)
    wikiqa_questions: int = 300
    # Threads of the toy CLIP's training, fixed because its bits depend on the thread count (one
    # thread: on a shared/oversubscribed machine two were 4x slower, on an idle one no faster).
    # The toy VLM trains with the caller's torch threads (at most ``VLM_MAX_THREADS``; 1.76x faster
    # on 2 idle cores) only where that gives the bits of one thread: ``vlm_threads`` checks it on
    # this machine first (on some CPUs, e.g. one AVX-512 Xeon, several threads change the bits).
    torch_threads: int = 1
    sanity_eval: bool = True  # measure CLIP zero-shot / VLM generation on the test split into world.json

    def data_key(self) -> str:
        return content_key({"version": VERSION, "seed": self.seed, "digits": asdict(self.digits),
                            "corpus": asdict(self.corpus), "wikiqa": self.wikiqa_questions,
                            "text": text_constants()})

    def key(self) -> str:
        from .vlm import CHAT_TEMPLATE

        return content_key({"version": VERSION, **asdict(self), "text": text_constants(), "chat": CHAT_TEMPLATE})


def default_dir(seed: int = 0) -> Path:
    return home_dir() / "toy" / f"seed{seed}"


# ---------------------------------------------------------------- cache bookkeeping

def _files(root: Path, sub: list[str]) -> dict[str, int]:
    out = {}
    for s in sub:
        p = root / s
        items = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        out.update({str(f.relative_to(root)): f.stat().st_size for f in items})
    return out


def _marker_ok(root: Path, marker: str, key: str) -> dict | None:
    """The marker's content when it is valid (key matches, every listed file present with its size)."""
    try:
        meta = json.loads((root / marker).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("key") != key:
        return None
    for rel, size in meta.get("files", {}).items():
        f = root / rel
        if not f.is_file() or f.stat().st_size != size:
            return None
    return meta


def _claim(root: Path) -> None:
    """Make ``root`` an empty toy directory; refuse to delete anything that is not one."""
    if root.exists():
        if not root.is_dir():
            raise VlmprobeError(f"{root} exists and is not a directory")
        if any(root.iterdir()) and not (root / SENTINEL).exists():
            raise VlmprobeError(f"{root} exists and is not a vlmprobe toy build (no {SENTINEL}); "
                                "choose another --out")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / SENTINEL).write_text("vlmprobe toy world (safe to delete)\n")


def _locked(root: Path):
    return file_lock(root.parent / (root.name + ".lock"))


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- stages

def _build_data(root: Path, cfg: WorldConfig, digits) -> dict:
    """Images, manifest, corpora, toy WikiQA, fine-tuning data; returns the data-stage facts."""
    import numpy as np

    from . import corpus
    from .wikiqa import build_questions, image_practice, text_practice

    rel = [f"images/{s}/{CLASSNAMES[c]}/{i}.png" for s, c, i in zip(digits.splits, digits.labels.tolist(), digits.ids)]
    for path, img in zip(rel, digits.images):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / path)
    rows = zip(digits.ids, rel, digits.labels.tolist(), digits.splits)
    _write_jsonl(root / "manifest.jsonl", ({"id": i, "image": p, "label": CLASSNAMES[c], "split": s}
                                           for i, p, c, s in rows))
    _write_json(root / "classes.json", CLASSNAMES)
    _write_json(root / "templates.json", list(CAPTION_TEMPLATES))
    tr, te = digits.indices("train"), digits.indices("test")
    freq = corpus.naming_frequencies(cfg.seed)
    convs = corpus.image_conversations([digits.ids[i] for i in tr], [rel[i] for i in tr], digits.labels[tr], freq,
                                       cfg.seed, cfg.corpus)
    practice = image_practice([digits.ids[i] for i in tr], [rel[i] for i in tr], digits.labels[tr], freq, cfg.seed,
                              cfg.corpus.qa_per_image)
    _write_json(root / "corpus" / "conversations.json", convs + practice)
    knowledge = corpus.knowledge_conversations(cfg.seed) + text_practice(cfg.seed, cfg.corpus.qa_text_repeats)
    _write_json(root / "corpus" / "knowledge.json", knowledge)
    _write_json(root / "corpus" / "instruct.json", practice + knowledge)
    _write_json(root / "finetune" / "train.json",
                corpus.finetune_records([digits.ids[i] for i in tr], [rel[i] for i in tr], digits.labels[tr]))
    _write_jsonl(root / "wikiqa.jsonl", build_questions([rel[i] for i in te], digits.labels[te], cfg.seed,
                                                        cfg.wikiqa_questions))
    counts = corpus.naming_counts(convs)
    return {"naming_probability": freq,
            "naming_counts": counts,
            "naming_frequency": {n: round(v["named"] / max(v["asked"], 1), 4) for n, v in counts.items()},
            "split_sizes": {s: int(np.sum(np.array(digits.splits) == s)) for s in SPLITS}}


def _load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def ensure_data(out: str | os.PathLike | None = None, seed: int = 0, cfg: WorldConfig | None = None,
                progress: bool = True) -> Path:
    """The data stage of a world (no model training): build unless valid; returns its directory."""
    cfg = cfg or WorldConfig(seed=seed)
    root = Path(out).expanduser() if out else default_dir(cfg.seed)
    if _marker_ok(root, DATA_MARKER, cfg.data_key()):
        return root
    with _locked(root):
        if not _marker_ok(root, DATA_MARKER, cfg.data_key()):
            _data_stage(root, cfg, progress)
    return root


def _data_stage(root: Path, cfg: WorldConfig, progress: bool) -> dict:
    from .digits import render_digits

    start = time.time()
    _claim(root)
    if progress:
        print(f"vlmprobe toy: rendering the digits into {root}", flush=True)
    digits = render_digits(cfg.seed, cfg.digits)
    facts = _build_data(root, cfg, digits)
    meta = {"key": cfg.data_key(), "seed": cfg.seed, **facts, "seconds": round(time.time() - start, 1),
            "files": _files(root, ["images", "manifest.jsonl", "classes.json", "templates.json", "wikiqa.jsonl",
                                   "finetune", "corpus"])}
    atomic_write_json(root / DATA_MARKER, meta)
    return meta


def build_world(out: str | os.PathLike | None = None, seed: int = 0, cfg: WorldConfig | None = None,
                force: bool = False, progress: bool = True) -> dict:
    """Build (or reuse) the whole world; returns the ``world.json`` metadata plus ``"dir"`` and
    ``"reused"`` (True when a valid build was found)."""
    cfg = cfg or WorldConfig(seed=seed)
    root = Path(out).expanduser() if out else default_dir(cfg.seed)
    meta = None if force else _marker_ok(root, WORLD_MARKER, cfg.key())
    reused = meta is not None
    if meta is None:
        with _locked(root):
            meta = None if force else _marker_ok(root, WORLD_MARKER, cfg.key())
            reused = meta is not None
            if meta is None:
                with progress_bars(progress):  # the training loops' bars follow the caller's choice
                    meta = _world_stage(root, cfg, force, progress)
    return {**meta, "dir": str(root), "reused": reused}


def vlm_threads(wanted: int, clip_dir, images, rel, convs, knowledge, extra, cfg, seed: int,
                steps: int = 3) -> int:
    """``wanted`` if training the toy VLM with that many torch threads gives the same bits as one
    thread on this machine, else 1: a few steps at the real shapes (the first 400 conversations,
    100 facts), once with each count, weights compared byte for byte. The world's key names no
    thread count, so its weights must not depend on one."""
    import dataclasses
    import tempfile

    import torch
    from safetensors.torch import load_file

    from .vlm import train_vlm

    if wanted <= 1:
        return 1
    short = dataclasses.replace(cfg, steps=steps, warmup=1)
    old, weights = torch.get_num_threads(), []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in (1, wanted):
                torch.set_num_threads(n)
                train_vlm(clip_dir, images, rel, convs[:400], knowledge[:100], extra, Path(tmp) / str(n), short, seed)
                weights.append(load_file(str(Path(tmp) / str(n) / "model.safetensors")))
    finally:
        torch.set_num_threads(old)
    same = weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    return wanted if same else 1


def _world_stage(root: Path, cfg: WorldConfig, force: bool, progress: bool) -> dict:
    import numpy as np
    import torch

    from ..data import read_image
    from .clip import train_clip
    from .evaluate import evaluate_world
    from .vlm import train_vlm

    start, cpu_start = time.time(), time.process_time()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    try:
        data = None if force else _marker_ok(root, DATA_MARKER, cfg.data_key())
        if data is None:
            data = _data_stage(root, cfg, progress)
        else:
            (root / WORLD_MARKER).unlink(missing_ok=True)
            for sub in ("clip", "vlm"):
                shutil.rmtree(root / sub, ignore_errors=True)
        # train on exactly the exported (lossless PNG) training images
        rows = [r for r in _read_jsonl(root / "manifest.jsonl") if r["split"] == "train"]
        rel = [r["image"] for r in rows]
        images = [read_image(str(root / p)) for p in rel]
        labels = np.array([CLASSNAMES.index(r["label"]) for r in rows], dtype=np.int64)
        if progress:
            print("vlmprobe toy: training the toy CLIP", flush=True)
        clip_stats = train_clip(images, labels, root / "clip", cfg.clip, cfg.seed)
        if progress:
            print("vlmprobe toy: training the toy VLM", flush=True)
        extra = [r["text"] for r in _read_jsonl(root / "wikiqa.jsonl")]
        extra += [t["value"] for r in _load_json(root / "finetune" / "train.json")[:1] for t in r["conversations"]]
        extra += [EXTRA_WORDS] + list(CAPTION_TEMPLATES)
        convs, knowledge = _load_json(root / "corpus" / "conversations.json"), _load_json(root / "corpus" / "knowledge.json")
        torch.set_num_threads(vlm_threads(min(threads, VLM_MAX_THREADS), root / "clip", images, rel, convs, knowledge,
                                          extra, cfg.vlm, cfg.seed))
        vlm_stats = train_vlm(root / "clip", images, rel, convs, knowledge, extra, root / "vlm", cfg.vlm, cfg.seed)
        vlm_stats["threads"] = torch.get_num_threads()
        train_seconds = round(time.time() - start, 1)
        if progress:
            print("vlmprobe toy: measuring the world (CLIP zero-shot, VLM generation on the test split)", flush=True)
        metrics = evaluate_world(root, progress=progress) if cfg.sanity_eval else {}
    finally:
        torch.set_num_threads(threads)
    meta = {"key": cfg.key(), "version": VERSION, "seed": cfg.seed, "config": asdict(cfg), "classnames": CLASSNAMES,
            "naming_probability": data["naming_probability"], "naming_frequency": data["naming_frequency"],
            "naming_counts": data["naming_counts"], "split_sizes": data["split_sizes"],
            "clip": clip_stats, "vlm": vlm_stats, "metrics": metrics,
            "seconds": {"train": train_seconds, "total": round(time.time() - start, 1),
                        "cpu": round(time.process_time() - cpu_start, 1)},  # CPU of this process (above wall time while the VLM trains on several threads)
            "sizes_bytes": {sub: sum(f.stat().st_size for f in (root / sub).rglob("*") if f.is_file())
                            for sub in ("clip", "vlm", "images")},
            "files": {**data["files"], **_files(root, ["clip", "vlm", DATA_MARKER])}}
    atomic_write_json(root / WORLD_MARKER, meta)
    return meta


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- public entry points

def existing_world(seed: int = 0, out: str | os.PathLike | None = None) -> dict | None:
    """The ``world.json`` metadata of a valid finished build (default config), else None; builds nothing."""
    cfg = WorldConfig(seed=seed)
    root = Path(out).expanduser() if out else default_dir(seed)
    meta = _marker_ok(root, WORLD_MARKER, cfg.key())
    return None if meta is None else {**meta, "dir": str(root)}


def resolve_world_model(spec: str) -> str:
    """``toy:clip`` -> ``hfclip:<world>/clip``, ``toy:vlm`` -> ``hf:<world>/vlm`` (builds the
    default world on first use)."""
    kinds = {"toy:clip": ("hfclip", "clip"), "toy:vlm": ("hf", "vlm")}
    prefix, sub = kinds[spec]
    return f"{prefix}:{Path(build_world()['dir']) / sub}"


WORLD_MODELS = ("toy:clip", "toy:vlm")


def load_digits_dataset(spec: str, split: str | None = None, limit: int | None = None, seed: int = 0):
    """``toy:digits`` / ``toy:digits:<split>`` -> ImageDataset (class names in digit order),
    read from the exported manifest of the default world (data stage only; no training)."""
    from ..data import load_dataset
    from ..errors import DataError

    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[:2] != ["toy", "digits"]:
        raise DataError(f"unknown toy dataset {spec!r}: use toy:digits, toy:digits:train|val|test or toy:cue-conflict")
    if len(parts) == 3:
        if split is not None and split != parts[2]:
            raise DataError(f"dataset {spec!r} names split {parts[2]!r} but --split {split!r} was given")
        split = parts[2]
    if split is not None and split not in SPLITS:
        raise DataError(f"toy:digits has splits {list(SPLITS)}, not {split!r}")
    root = ensure_data()
    ds = load_dataset(str(root / "manifest.jsonl"), split=split, limit=limit, seed=seed,
                      classes=str(root / "classes.json"))
    ds.name = spec
    ds.info.update({"format": "toy", "toy_dir": str(root)})
    return ds
