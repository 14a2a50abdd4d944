"""Sanity measurements of a built world, through the public model wrappers (the models are
loaded with ``vlmprobe.models.load_model`` exactly as real checkpoints are).

- CLIP zero-shot: argmax over ``score(images, classnames, templates)`` [N, K].
- VLM direct generation: greedy answer to the open-world question; correct when the true
  class name occurs in the lower-cased answer (the paper's ``label in response`` rule).
Accuracies are reported overall and per class (the frequency analysis uses the latter).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ..progress import bar as tqdm

from ..classify.matching import match_response
from .corpus import CAPTION_TEMPLATES, OPEN_WORLD_QUESTION


def _images(dataset, progress: bool = False) -> list:
    return [dataset.load_image(i) for i in tqdm(range(len(dataset)), desc="images", leave=False, disable=not progress)]


def clip_zeroshot_correct(model, dataset, images=None, templates=CAPTION_TEMPLATES,
                          batch_size: int = 256) -> np.ndarray:
    """[N] bool: zero-shot prediction == label."""
    images = images if images is not None else _images(dataset)
    preds = np.concatenate([model.score(images[i:i + batch_size], dataset.classnames, templates=list(templates))
                            .argmax(1).numpy() for i in range(0, len(images), batch_size)])
    return preds == dataset.labels()


def vlm_generate(model, images, question: str = OPEN_WORLD_QUESTION, batch_size: int = 64,
                 max_new_tokens: int = 32, progress: bool = False) -> list[str]:
    """Greedy answers of the VLM to ``question`` for every image."""
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="generate", leave=False, disable=not progress):
        chunk = images[i:i + batch_size]
        out += model.generate(chunk, [question] * len(chunk), max_new_tokens=max_new_tokens)
    return out


def named_correct(responses: list[str], labels: np.ndarray, classnames: list[str]) -> np.ndarray:
    """[N] bool: the true class is among the classes the response mentions (the generation method's
    ``substring`` rule, ``classify.matching``)."""
    return np.array([y in match_response(r, classnames).matches for r, y in zip(responses, labels.tolist())])


def per_class(correct: np.ndarray, labels: np.ndarray, classnames: list[str]) -> dict[str, float]:
    return {n: float(correct[labels == k].mean()) if np.any(labels == k) else float("nan")
            for k, n in enumerate(classnames)}


def evaluate_world(root, split: str = "test", progress: bool = True) -> dict:
    """Load ``root``'s CLIP and VLM through ``load_model`` and measure both on ``split``."""
    from ..data import load_dataset
    from ..models.registry import load_model

    root = Path(root)
    ds = load_dataset(str(root / "manifest.jsonl"), split=split, classes=str(root / "classes.json"))
    images = _images(ds, progress)
    labels = ds.labels()
    clip_ok = clip_zeroshot_correct(load_model(f"hfclip:{root / 'clip'}"), ds, images)
    vlm = load_model(f"hf:{root / 'vlm'}")
    responses = vlm_generate(vlm, images, progress=progress)
    gen_ok = named_correct(responses, labels, ds.classnames)
    answers, counts = np.unique(responses, return_counts=True)
    return {"split": split, "num_images": len(ds),
            "clip_zeroshot_accuracy": float(clip_ok.mean()),
            "clip_zeroshot_per_class": per_class(clip_ok, labels, ds.classnames),
            "vlm_generation_accuracy": float(gen_ok.mean()),
            "vlm_generation_per_class": per_class(gen_ok, labels, ds.classnames),
            "vlm_top_answers": {a: int(c) for c, a in sorted(zip(counts, answers), reverse=True)[:5]}}
