"""Prompt-ensemble classifiers for CLIP and the ensemble directory that stores one.

Per pool member t (a ``{}`` template or per-class prompts, ``data.templates.PoolMember``) and
class c, with ``e(p)`` the L2-normalised text embedding of prompt p (``ClipModel.encode_texts``):

    E_t[c] = normalize( mean_{p in prompts_t(c)} e(p) )                 [T, K, D]
    W[c]   = normalize( sum_t w_t E_t[c] + x_c )                        [K, D]

With uniform ``w_t = 1/T`` and ``{}`` templates this is exactly Radford et al.'s ensemble
(``ClipModel.text_classifier``; tests compare both). ``x_c`` is an optional extra term
(CPE: the weighted description embedding of a worst class; zero otherwise).

An ensemble directory (written by ``vlmprobe cpe``) holds ``ensemble.json`` (everything needed
to rebuild the classifier: model, classes, pool, weights, extra prompts) and
``classifier.pt`` ([K, D] float32, rows in class order). ``vlmprobe eval --method zeroshot
--ensemble DIR`` loads it; the run config records the SHA-256 of both files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..cache import file_sha256
from ..errors import DataError, VlmprobeError

ENSEMBLE_FILE = "ensemble.json"
CLASSIFIER_FILE = "classifier.pt"


def pool_embeddings(model, classnames: Sequence[str], pool) -> torch.Tensor:
    """[T, K, D] float32 (CPU): E_t[c] for every pool member t and class c; one text batch."""
    prompts, owner = [], []  # owner[i] = (t, c) of prompts[i]
    for t, member in enumerate(pool):
        for c, name in enumerate(classnames):
            for p in member.prompts(name):
                prompts.append(p)
                owner.append(t * len(classnames) + c)
    emb = model.encode_texts(prompts).cpu()  # [P, D], normalised
    return group_mean(emb, owner, len(pool) * len(classnames)).view(len(pool), len(classnames), -1)


def group_mean(emb: torch.Tensor, owner: Sequence[int], groups: int) -> torch.Tensor:
    """[G, D]: normalize(mean of the rows of ``emb`` [P, D] owned by each group); every group
    must own at least one row."""
    idx = torch.as_tensor(list(owner), dtype=torch.long)
    sums = torch.zeros(groups, emb.shape[1], dtype=emb.dtype).index_add_(0, idx, emb)
    counts = torch.bincount(idx, minlength=groups).clamp(min=1).to(emb.dtype)
    return F.normalize(sums / counts[:, None], dim=-1)


def combine(member_emb: torch.Tensor, weights, extra: torch.Tensor | None = None) -> torch.Tensor:
    """[K, D]: normalize(sum_t w_t E_t + extra). ``member_emb`` [T, K, D], ``weights`` [T],
    ``extra`` [K, D] (zero rows for classes without extra prompts) or None."""
    w = torch.as_tensor(weights, dtype=member_emb.dtype)
    mixed = torch.einsum("t,tkd->kd", w, member_emb)
    if extra is not None:
        mixed = mixed + extra
    return F.normalize(mixed, dim=-1)


def save_ensemble(out: str | Path, ensemble: dict, classifier: torch.Tensor) -> Path:
    """Write ``ensemble.json`` and ``classifier.pt`` (byte-deterministic for equal inputs)."""
    from ..cache import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / ENSEMBLE_FILE, json.dumps(ensemble, indent=1, ensure_ascii=False) + "\n")
    tmp = out / (CLASSIFIER_FILE + ".tmp")
    torch.save(classifier.detach().to(torch.float32).contiguous().clone(), tmp)
    tmp.replace(out / CLASSIFIER_FILE)
    return out


def load_ensemble(path: str | Path) -> tuple[torch.Tensor, dict]:
    """-> (classifier [K, D], ensemble.json's dict plus ``"sha256"`` of both files)."""
    path = Path(path).expanduser()
    files = [path / ENSEMBLE_FILE, path / CLASSIFIER_FILE]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"--ensemble {path}: {missing[0].name} is missing (write it with `vlmprobe cpe --out {path}`)")
    try:
        info = json.loads(files[0].read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{files[0]}: not valid JSON ({e.msg})") from None
    classifier = torch.load(files[1], map_location="cpu", weights_only=True)
    k = len(info.get("classnames", []))
    if classifier.ndim != 2 or classifier.shape[0] != k:
        raise DataError(f"{files[1]}: shape {tuple(classifier.shape)} does not match the {k} classes of {files[0]}")
    info["sha256"] = {f.name: file_sha256(f) for f in files}
    return classifier, info


def check_ensemble_fits(info: dict, model, classnames: Sequence[str], where: str) -> None:
    """One line when an ensemble was built for another model or class list."""
    if list(info["classnames"]) != list(classnames):
        raise VlmprobeError(f"{where}: built for classes {info['classnames'][:3]}... ({len(info['classnames'])}), "
                            f"the dataset has {list(classnames)[:3]}... ({len(classnames)})")
    fingerprint = json.loads(json.dumps(getattr(model, "fingerprint", None), default=str))
    if info.get("model", {}).get("fingerprint") != fingerprint:
        raise VlmprobeError(f"{where}: built with model {info.get('model', {}).get('spec')!r}, "
                            f"not {model.spec!r} (class embeddings live in one CLIP's text space)")
