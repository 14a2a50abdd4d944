"""Model zoos in a study file: one ``models:`` entry that expands into one model per match of a
library's own registry (names only; nothing is downloaded).

```yaml
models:
  clip-laion: {zoo: openclip, match: "ViT-*", pretrained: "laion2b*", group: clip-laion}
  imagenet: {zoo: timm, match: "*.in1k", group: imagenet}
  mine: {zoo: dir, path: /ckpts, match: "*", group: ours}       # every model folder under /ckpts
  tiny: {zoo: timm, match: "test_*", pretrained: "*", weights: random, limit: 40}
```
Registries: ``openclip`` = ``open_clip.list_pretrained()`` (pairs ARCH, TAG; ``match`` filters the
architecture, ``pretrained`` the tag); ``timm`` = ``timm.list_models(pretrained=True)`` (names
``ARCH.TAG``; ``match`` filters the full name, ``pretrained`` the tag); ``dir`` = the sub-folders
of ``path`` that hold a saved model (open_clip ``open_clip_config.json``, timm/transformers
``config.json``), ARCH = the folder name, TAG = ``local``. Filters are shell globs
(``fnmatch``, case-sensitive); ``exclude`` drops names matching any of its globs; ``limit`` keeps
the first N in registry order. ``weights: random`` builds the architectures with random weights
(``openclip:ARCH``, ``timm:NAME@random``: for smoke tests of a whole zoo offline); an open_clip
architecture then appears once, named ``ENTRY/ARCH@random`` (its pre-training tags would all be
the same model); a ``dir`` zoo refuses it (saved models are loaded with their weights). In a
``dir`` zoo, a transformers checkpoint that is neither CLIP (``model_type: clip``) nor a VLM (a
``vision_config`` and a ``text_config``, e.g. LLaVA) -- a ViT classifier, a text model -- has no
vlmprobe model kind: it is skipped with a line saying why (``Study.zoo_skips``, printed with the
plan's skips), never labelled a VLM.

Each expanded model is named ``ENTRY/ARCH@TAG`` and records ``ZooModel.meta``: library,
architecture, pre-training data tag, parameter count (the architecture built on PyTorch's
``meta`` device: no memory, no weights), input resolution, and the entry's ``group`` (default:
the entry name), for grouping and colouring one-point-per-model figures and choosing
effective-robustness baselines.
"""
from __future__ import annotations

import fnmatch
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

ZOOS = ("openclip", "timm", "dir")
ZOO_KEYS = ("zoo", "match", "pretrained", "exclude", "limit", "group", "weights", "path")


@dataclass
class ZooModel:
    name: str  # ENTRY/ARCH@TAG
    spec: str
    kind: str  # clip | classifier | vlm
    meta: dict = field(default_factory=dict)


def _globs(v) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


def _matches(name: str, include: list[str], exclude: list[str]) -> bool:
    return (not include or any(fnmatch.fnmatchcase(name, g) for g in include)) \
        and not any(fnmatch.fnmatchcase(name, g) for g in exclude)


def _openclip_entries(match, pretrained) -> list[tuple[str, str]]:
    import open_clip

    return [(a, t) for a, t in open_clip.list_pretrained()
            if _matches(a, _globs(match), []) and _matches(t, _globs(pretrained), [])]


def _timm_entries(match, pretrained) -> list[tuple[str, str]]:
    import timm

    out = []
    for name in timm.list_models(pretrained=True):
        arch, _, tag = name.partition(".")
        if _matches(name, _globs(match), []) and _matches(tag, _globs(pretrained), []):
            out.append((arch, tag))
    return out


def _dir_entries(path: str, match) -> list[tuple[str, str]]:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"zoo path {path!r} is not a directory")
    return [(d.name, "local") for d in sorted(root.iterdir())
            if d.is_dir() and ((d / "open_clip_config.json").is_file() or (d / "config.json").is_file())
            and _matches(d.name, _globs(match), [])]


@functools.lru_cache(maxsize=None)
def _openclip_meta(arch: str) -> dict:
    import open_clip
    import torch

    cfg = open_clip.get_model_config(arch) or {}
    size = (cfg.get("vision_cfg") or {}).get("image_size")
    try:
        with torch.device("meta"):
            model = open_clip.create_model(arch, pretrained=None, device="meta")
        params = sum(p.numel() for p in model.parameters())
    except Exception:  # an architecture that cannot be built on the meta device: unknown size
        params = None
    return {"parameters": params, "resolution": size if isinstance(size, int) else (size or [None])[0],
            "embed_dim": cfg.get("embed_dim")}


@functools.lru_cache(maxsize=None)
def _timm_meta(name: str) -> dict:
    import timm
    import torch

    try:
        cfg = timm.models.get_pretrained_cfg(name)
        size = cfg.input_size[-1] if cfg is not None else None
    except Exception:
        size = None
    try:
        with torch.device("meta"):
            net = timm.create_model(name, pretrained=False)
        params = sum(p.numel() for p in net.parameters())
    except Exception:
        params = None
    return {"parameters": params, "resolution": size}


def _dir_meta(path: Path) -> tuple[str, str, dict]:
    """(spec, kind, meta) of a saved model folder (read from its config; weights are not loaded)."""
    if (path / "open_clip_config.json").is_file():
        cfg = json.loads((path / "open_clip_config.json").read_text()).get("model_cfg", {})
        size = (cfg.get("vision_cfg") or {}).get("image_size")
        return f"openclip:local-dir:{path}", "clip", {"library": "open_clip", "resolution": size,
                                                       "embed_dim": cfg.get("embed_dim")}
    cfg = json.loads((path / "config.json").read_text())
    if "architecture" in cfg and "model_type" not in cfg:  # timm hub layout
        size = (cfg.get("pretrained_cfg") or {}).get("input_size", [None])[-1]
        return f"timm:local-dir:{path}", "classifier", {"library": "timm", "resolution": size,
                                                         "architecture": cfg["architecture"]}
    meta = {"library": "transformers", "model_type": cfg.get("model_type")}
    if cfg.get("model_type") == "clip":
        return f"hfclip:{path}", "clip", meta
    if isinstance(cfg.get("vision_config"), dict) and isinstance(cfg.get("text_config"), dict):
        return f"hf:{path}", "vlm", meta  # a vision tower and a language model: LLaVA and its kin
    arch = ", ".join(cfg.get("architectures") or []) or "no architectures"
    raise _NotAModel(f"{path} is a transformers {cfg.get('model_type')!r} checkpoint ({arch}), neither CLIP nor "
                     "a VLM (no vision_config + text_config): no vlmprobe model kind loads it")


class _NotAModel(Exception):
    """A saved folder of a ``dir`` zoo that no vlmprobe model kind loads (skipped, with the reason)."""


def expand_zoo(entry: str, cfg: dict, skips: list | None = None) -> list[ZooModel]:
    """The models of one zoo entry (``cfg``: its study-file mapping, keys ``ZOO_KEYS``), in the
    registry's order, one per distinct spec. Raises ValueError with a message naming the bad key;
    a ``dir`` folder no model kind loads is left out with a line appended to ``skips``."""
    zoo = cfg.get("zoo")
    if zoo not in ZOOS:
        raise ValueError(f"zoo must be one of {', '.join(ZOOS)}, got {zoo!r}")
    random = cfg.get("weights") == "random"
    if cfg.get("weights") not in (None, "random", "pretrained"):
        raise ValueError(f"weights must be 'pretrained' or 'random', got {cfg.get('weights')!r}")
    if zoo == "dir":
        if not cfg.get("path"):
            raise ValueError("a zoo: dir entry needs 'path' (the folder of saved models)")
        if random:
            raise ValueError("weights: random does not apply to a zoo: dir entry (its saved models are loaded with "
                             "their weights); drop it, or use an openclip/timm zoo for random weights")
        pairs = _dir_entries(cfg["path"], cfg.get("match"))
    elif zoo == "openclip":
        pairs = _openclip_entries(cfg.get("match"), cfg.get("pretrained"))
    else:
        pairs = _timm_entries(cfg.get("match"), cfg.get("pretrained"))
    exclude = _globs(cfg.get("exclude"))
    pairs = [(a, t) for a, t in dict.fromkeys(pairs)
             if _matches(f"{a}@{t}", [], exclude) and _matches(a, [], exclude)
             and _matches(f"{a}.{t}", [], exclude)]
    group = cfg.get("group") or entry
    out, specs = [], set()
    for arch, tag in pairs:
        if cfg.get("limit") is not None and len(out) >= cfg["limit"]:
            break
        base = {"zoo": zoo, "entry": entry, "group": group, "architecture": arch, "pretrained": tag,
                "weights": "random" if random else "pretrained"}
        if zoo == "openclip":
            if random:  # every tag of ARCH is the same random model: once, as ARCH@random
                tag = base["pretrained"] = "random"
            spec, kind, meta = (f"openclip:{arch}" if random else f"openclip:{arch}@{tag}"), "clip", \
                {"library": "open_clip", **_openclip_meta(arch)}
        elif zoo == "timm":
            spec, kind, meta = f"timm:{arch}.{tag}" + ("@random" if random else ""), "classifier", \
                {"library": "timm", **_timm_meta(f"{arch}.{tag}")}
        else:
            try:
                spec, kind, meta = _dir_meta(Path(cfg["path"]).expanduser() / arch)
            except _NotAModel as e:
                if skips is not None:
                    skips.append(f"skip: zoo {entry}: {e}")
                continue
            base["weights"] = "saved"
        if spec in specs:
            continue
        specs.add(spec)
        out.append(ZooModel(f"{entry}/{arch}@{tag}", spec, kind, {**meta, **base}))
    return out
