"""The miniature world's spurious-background split (a toy CounterAnimal) and its two models.

Images: each rendered digit (``digits.render_digits``) is recoloured onto a background colour:
with ``a = clip((255 - gray) / 200, 0, 1)`` the ink coverage of the rendered digit,
``rgb = (1 - a) * (bg + noise) + a * ink`` with ``bg = tint * colour + (1 - tint) * 220``.
Class ``c``'s **common** background is ``BACKGROUNDS[c]``; its **counter** background is
``BACKGROUNDS[(c + SHIFT) % 10]`` (another class's common background).

- Training images (the digits' train split): with probability ``plain`` (0.2) the digit as
  rendered (plain paper, as in ``toy:digits``); otherwise recoloured, onto the class's common
  background with probability ``correlation`` (0.6), else onto a uniformly random other one.
  Without plain images the models never see the world's ordinary digits and sit at chance on
  ``toy:digits`` and its shifted sets (no usable point in the effective-robustness figure).
- Evaluation split (the digits' test split): every test digit on its common and on its counter
  background, written in CounterAnimal's layout
  ``counteranimal/<index> <name>/{common,counter}-<background>/<id>.png`` with ``classes.json``
  (the world's own label space), so ``counteranimal:DIR`` reads it (``toy:spurious``).

Models, trained on the correlated training images:

- ``toy:clip-spurious``: the toy CLIP recipe (``toy.clip.train_clip``: class captions, class-aware
  contrastive loss) on these images; loaded as ``hfclip:``.
- ``toy:cnn``: a timm ResNet shrunk to one block per stage and widths 16..128 (random init,
  10 outputs, 32x32 input, its data config set to this world; ~0.3M parameters) trained with cross-entropy: the world's "ImageNet model", saved in timm's hub
  layout with its ``label_names`` (``save_for_hf``) and loaded as ``timm:local-dir:``.

Each artefact is cached under ``$VLMPROBE_HOME/toy/spurious-seed<S>/<stage>`` with its own
content key (the marker records the key and file sizes, as ``toy.build`` does).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..cache import atomic_write_json, content_key, home_dir
from .clip import ClipConfig
from .digits import CLASSNAMES, DigitsConfig

VERSION = 1  # bump when the code changes what a stage produces
BACKGROUNDS = {"red": (200, 40, 40), "orange": (230, 140, 30), "yellow": (220, 210, 40), "green": (50, 160, 60),
               "teal": (30, 150, 150), "blue": (40, 70, 200), "purple": (130, 50, 170), "pink": (230, 120, 180),
               "brown": (120, 80, 40), "gray": (128, 128, 128)}
BACKGROUND_NAMES = list(BACKGROUNDS)
SHIFT = 5  # counter background of class c: the common background of class c + 5 (mod 10)


@dataclass(frozen=True)
class CnnConfig:
    model: str = "resnet18"  # a timm architecture, shrunk by the three fields below
    layers: tuple = (1, 1, 1, 1)  # blocks per stage
    channels: tuple = (16, 32, 64, 128)  # stage widths
    stem_width: int = 16
    steps: int = 200
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 30


@dataclass(frozen=True)
class SpuriousConfig:
    seed: int = 0
    plain: float = 0.2  # P(a training image keeps its plain paper background)
    correlation: float = 0.6  # P(common background) for a recoloured training image (others: uniform over the rest)
    tint: float = 0.6  # background = tint * colour + (1 - tint) * light gray (muted colours)
    noise: float = 20.0  # std of per-pixel background noise (0..255 scale)
    digits: DigitsConfig = field(default_factory=DigitsConfig)
    clip: ClipConfig = field(default_factory=lambda: ClipConfig(steps=300))
    cnn: CnnConfig = field(default_factory=CnnConfig)

    def key(self, stage: str) -> str:
        parts = {"version": VERSION, "seed": self.seed, "plain": self.plain, "correlation": self.correlation,
                 "noise": self.noise,
                 "tint": self.tint,
                 "digits": asdict(self.digits), "backgrounds": BACKGROUNDS, "shift": SHIFT}
        if stage == "clip":
            parts["clip"] = asdict(self.clip)
        if stage == "cnn":
            parts["cnn"] = asdict(self.cnn)
        return content_key({"stage": stage, **parts})


def default_dir(seed: int = 0) -> Path:
    return home_dir() / "toy" / f"spurious-seed{seed}"


def common_background(c: int) -> str:
    return BACKGROUND_NAMES[c]


def counter_background(c: int) -> str:
    return BACKGROUND_NAMES[(c + SHIFT) % len(BACKGROUND_NAMES)]


def recolor(img, background: str, rng: np.random.Generator, noise: float, tint: float):
    """A rendered digit (dark ink on light paper) -> the same digit on a coloured background."""
    from PIL import Image

    arr = np.asarray(img, dtype=np.float32)
    a = np.clip((255.0 - arr.mean(-1, keepdims=True)) / 200.0, 0, 1)  # ink coverage [H, W, 1]
    colour = tint * np.array(BACKGROUNDS[background], dtype=np.float32) + (1 - tint) * 220.0
    bg = colour + rng.normal(0, noise, size=arr.shape)
    ink = rng.uniform(0, 40, size=3)
    return Image.fromarray(np.clip((1 - a) * bg + a * ink, 0, 255).astype(np.uint8), mode="RGB")


def training_images(cfg: SpuriousConfig, digits) -> tuple[list, np.ndarray, list[str]]:
    """Train-split digits, plain or on correlated backgrounds -> (images, labels, background
    names; "plain" for the digits kept as rendered)."""
    idx = digits.indices("train")
    rng = np.random.default_rng([cfg.seed, 31])
    images, backgrounds = [], []
    for i in idx:
        c = int(digits.labels[i])
        if rng.random() < cfg.plain:
            images.append(digits.images[i])
            backgrounds.append("plain")
            continue
        if rng.random() < cfg.correlation:
            bg = common_background(c)
        else:
            bg = BACKGROUND_NAMES[int(rng.choice([j for j in range(len(BACKGROUND_NAMES)) if j != c]))]
        images.append(recolor(digits.images[i], bg, rng, cfg.noise, cfg.tint))
        backgrounds.append(bg)
    return images, digits.labels[idx].copy(), backgrounds


# ---------------------------------------------------------------- cache bookkeeping

def _stage(root: Path, name: str, key: str, build) -> Path:
    """Run ``build(dir) -> facts`` unless ``root/name`` holds a valid marker for ``key``."""
    from .build import SENTINEL, _claim, _files, _locked, _marker_ok

    out = root / name
    marker = f"{name}.json"
    if _marker_ok(root, marker, key):
        return out
    with _locked(out):
        if not _marker_ok(root, marker, key):
            if not (root / SENTINEL).exists():
                root.mkdir(parents=True, exist_ok=True)
                (root / SENTINEL).write_text("vlmprobe toy world (safe to delete)\n")
            _claim(out)
            start, cpu = time.time(), time.process_time()
            facts = build(out)
            atomic_write_json(root / marker, {"key": key, **facts, "seconds": round(time.time() - start, 1),
                                              "cpu_seconds": round(time.process_time() - cpu, 1),
                                              "files": _files(root, [name])})
    return out


def _digits(cfg: SpuriousConfig):
    from .digits import render_digits

    return render_digits(cfg.seed, cfg.digits)


def ensure_split(cfg: SpuriousConfig = SpuriousConfig(), root: Path | None = None) -> Path:
    """The evaluation split in CounterAnimal's layout (built on first use); returns its root."""
    root = root or default_dir(cfg.seed)

    def build(out: Path) -> dict:
        digits = _digits(cfg)
        rng = np.random.default_rng([cfg.seed, 32])
        for i in digits.indices("test"):
            c = int(digits.labels[i])
            for group, bg in (("common", common_background(c)), ("counter", counter_background(c))):
                d = out / f"{c} {CLASSNAMES[c]}" / f"{group}-{bg}"
                d.mkdir(parents=True, exist_ok=True)
                recolor(digits.images[i], bg, rng, cfg.noise, cfg.tint).save(d / f"{digits.ids[i]}.png")
        (out / "classes.json").write_text(__import__("json").dumps(CLASSNAMES) + "\n")
        return {"images": sum(1 for _ in out.rglob("*.png"))}

    return _stage(root, "counteranimal", cfg.key("split"), build)


def ensure_clip(cfg: SpuriousConfig = SpuriousConfig(), root: Path | None = None) -> Path:
    """``toy:clip-spurious``: the toy CLIP recipe on the correlated training images."""
    from .clip import train_clip

    def build(out: Path) -> dict:
        images, labels, _ = training_images(cfg, _digits(cfg))
        return _single_thread(lambda: train_clip(images, labels, out, cfg.clip, cfg.seed))

    return _stage(root or default_dir(cfg.seed), "clip", cfg.key("clip"), build)


def ensure_cnn(cfg: SpuriousConfig = SpuriousConfig(), root: Path | None = None) -> Path:
    """``toy:cnn``: a supervised timm CNN trained with cross-entropy on the correlated images."""

    def build(out: Path) -> dict:
        images, labels, _ = training_images(cfg, _digits(cfg))
        return _single_thread(lambda: train_cnn(images, labels, out, cfg.cnn, cfg.seed, cfg.digits.size))

    return _stage(root or default_dir(cfg.seed), "cnn", cfg.key("cnn"), build)


def _single_thread(fn):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def train_cnn(images: list, labels: np.ndarray, out_dir: Path, cfg: CnnConfig, seed: int, size: int) -> dict:
    """Cross-entropy training of a timm classifier; saved with ``timm.models.save_for_hf``
    (config.json with label_names and this world's data config + weights)."""
    import timm
    import torch
    import torch.nn.functional as F
    from timm.data import create_transform, resolve_data_config
    from timm.models import save_for_hf
    from ..progress import bar as tqdm

    from .clip import shift_batch
    from .training import optimizer_step, warmup_cosine

    torch.manual_seed(seed)
    data_cfg = dict(input_size=(3, size, size), crop_pct=1.0, interpolation="bicubic",
                    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    model_args = dict(num_classes=len(CLASSNAMES), layers=list(cfg.layers), channels=list(cfg.channels),
                      stem_width=cfg.stem_width)
    net = timm.create_model(cfg.model, pretrained=False, pretrained_cfg_overlay=data_cfg, **model_args)
    transform = create_transform(**resolve_data_config({}, model=net), is_training=False)
    pixels = torch.stack([transform(im) for im in images])  # [N, 3, size, size]
    y = torch.as_tensor(labels)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    net.train()
    losses = []
    for _ in tqdm(range(cfg.steps), desc="toy CNN", leave=False):
        idx = torch.randint(len(y), (cfg.batch_size,), generator=gen)
        loss = F.cross_entropy(net(shift_batch(pixels[idx], 2, gen)), y[idx])  # same augmentation as toy CLIP
        losses.append(optimizer_step(opt, sched, loss))
    net.eval()
    save_for_hf(net, out_dir, model_config={"label_names": list(CLASSNAMES)}, model_args=model_args)
    with torch.no_grad():
        train_acc = float((net(pixels).argmax(1) == y).float().mean())
    return {"config": asdict(cfg), "final_loss": float(np.mean(losses[-30:])), "train_accuracy": train_acc,
            "parameters": sum(p.numel() for p in net.parameters())}


# ---------------------------------------------------------------- spec entry points

SPURIOUS_MODELS = ("toy:clip-spurious", "toy:cnn")


def resolve_spurious_model(spec: str) -> str:
    """``toy:clip-spurious`` -> ``hfclip:<dir>/clip``; ``toy:cnn`` -> ``timm:local-dir:<dir>/cnn``."""
    if spec == "toy:clip-spurious":
        return f"hfclip:{ensure_clip()}"
    return f"timm:local-dir:{ensure_cnn()}"


def load_spurious_dataset(spec: str, split: str | None = None):
    """``toy:spurious`` (all), ``toy:spurious:common`` / ``:counter`` (one group) -> ImageDataset."""
    from ..data.counteranimal import load_counteranimal
    from ..errors import DataError

    parts = spec.split(":")
    group = parts[2] if len(parts) == 3 else split
    if len(parts) > 3 or group not in (None, "common", "counter"):
        raise DataError(f"unknown toy dataset {spec!r}: use toy:spurious[:common|counter]")
    ds = load_counteranimal(f"counteranimal:{ensure_split()}")
    if group is not None:
        ds = ds.subset([i for i, s in enumerate(ds.samples) if s.meta["group"] == group])
    ds.name = spec
    ds.info.update({"format": "counteranimal", "toy": True, "group": group})
    return ds
