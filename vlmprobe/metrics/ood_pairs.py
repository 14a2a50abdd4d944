"""Which ID and OOD runs ``vlmprobe metrics ID_RUN --ood OOD_RUN`` may compare, and on which
scores.

An OOD AUROC compares one detector's confidences on two image sets, so both runs must come from
the same model (``config.json`` ``model.spec``), the same method with the same options
(``method``, every key but ``label_space`` and the per-dataset cache key ``image_embeddings``), the
same class list (``data.classnames``) and the
same label space (``method.label_space``; absent = all classes). A mismatch is refused with one
line naming the field and both values (``check_pair``).

One protocol changes the label space on purpose: **ImageNet-O** (Hendrycks et al. 2021, "Natural
Adversarial Examples"; their code hendrycks/natural-adv-examples ``eval_many_models.py`` and
``calibration_tools.py``): logits restricted to ImageNet-O's 200 classes, in-distribution = the
ImageNet val images of those classes, anomaly score = -MSP over the 200 logits, ImageNet-O the
positive class, AUPR the headline number (with AUROC and FPR). When the OOD run scored that subset
(an ``imagenet-o:`` run without ``--label-space all``), the ID run (all classes, or the same
subset) is restricted to the images of those classes and its scores to those columns
(``pair_scores``), and each score's summary adds ``aupr_ood`` = average precision with ImageNet-O
positive and -confidence as the score (``sklearn.metrics.average_precision_score``, as their
``get_measures``). An ``imagenet-o:`` run with ``--label-space all`` is compared 1000-way and
labelled as not that protocol.
"""
from __future__ import annotations

import numpy as np

from vlmprobe.errors import VlmprobeError

PER_DATASET = ("label_space", "image_embeddings")  # method config keys compared apart, or naming the images
IMAGENET_O_SOURCE = ("Hendrycks et al. 2021, Natural Adversarial Examples (hendrycks/natural-adv-examples "
                     "eval_many_models.py): 200-class logits, ID = ImageNet val images of those classes, "
                     "anomaly score -MSP, ImageNet-O positive for AUPR")


def _method(run) -> dict:
    m = run.config.get("method")
    return m if isinstance(m, dict) else {"name": m}


def _label_space(run):
    """The method's label space; a dataset protocol's subset is identified by its classes."""
    space = _method(run).get("label_space", "all")
    if isinstance(space, dict) and space.get("source") == "dataset class_subset":
        classes = sorted(int(c) for c in _data(run).get("class_subset") or ())
        return f"the {len(classes)}-class subset of {_data(run).get('spec')} (classes {classes[:3]}...)", classes
    return space


def _data(run) -> dict:
    d = run.config.get("data")
    return d if isinstance(d, dict) else {}


def imagenet_o_subset(ood) -> list[int] | None:
    """ImageNet-O's class subset when the OOD run scored it (the release's protocol), else None."""
    data = _data(ood)
    if data.get("format") != "imagenet-o" or not data.get("class_subset"):
        return None
    space = _label_space(ood)
    return space[1] if isinstance(space, tuple) else None


def check_pair(run, ood) -> None:
    """Refuse (one line) an ID/OOD pair from different models, methods, class lists or label spaces."""
    def refuse(what, a, b, detail=""):
        raise VlmprobeError(f"--ood {ood.path}: {what} differs from the ID run {run.path} ({detail}{a!r} vs {b!r}); "
                            "OOD detection compares one model's confidences in one label space")

    spec = lambda r: (r.config.get("model") or {}).get("spec") if isinstance(r.config.get("model"), dict) \
        else r.config.get("model")  # noqa: E731
    if spec(run) != spec(ood):
        refuse("model", spec(ood), spec(run))
    a, b = ({k: v for k, v in _method(r).items() if k not in PER_DATASET} for r in (ood, run))
    if a != b:
        key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        refuse(f"method ({key})", a.get(key), b.get(key))
    if list(run.classnames) != list(ood.classnames):
        n = next((i for i, (x, y) in enumerate(zip(ood.classnames, run.classnames)) if x != y),
                 min(len(ood.classnames), len(run.classnames)))
        refuse("class list", ood.classnames[n] if n < len(ood.classnames) else None,
               run.classnames[n] if n < len(run.classnames) else None,
               f"{len(ood.classnames)} vs {len(run.classnames)} classes, first difference at index {n}: ")
    subset = imagenet_o_subset(ood)
    a, b = _label_space(ood), _label_space(run)
    same = (a[1] == b[1]) if isinstance(a, tuple) and isinstance(b, tuple) else a == b
    text = lambda s: s[0] if isinstance(s, tuple) else s  # noqa: E731
    if subset is not None:  # the protocol restricts the ID run: it must have scored those classes
        if b != "all" and not same:
            refuse("label space", text(a), text(b), "ImageNet-O's protocol needs an ID run over all classes or the "
                   "same 200: ")
    elif not same:
        refuse("label space", text(a), text(b))


def pair_scores(run, ood) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """(ID scores, OOD scores, protocol block or None) after ``check_pair`` (module docstring)."""
    if run.scores is None or ood.scores is None:
        raise VlmprobeError(f"OOD detection needs scores.npy in {(run if run.scores is None else ood).path}")
    check_pair(run, ood)
    subset = imagenet_o_subset(ood)
    if subset is None:
        protocol = ({"name": "imagenet-o, 1000-way (--label-space all): not Hendrycks et al.'s 200-class protocol"}
                    if _data(ood).get("format") == "imagenet-o" else None)
        return run.scores, ood.scores, protocol
    if run.labels is None:
        raise VlmprobeError(f"{run.path}: ImageNet-O's protocol keeps the ID images of its 200 classes; the ID run "
                            "has no integer labels")
    keep = np.isin(run.labels, subset)
    if not keep.any():
        raise VlmprobeError(f"{run.path}: no ID image of ImageNet-O's 200 classes (its protocol's in-distribution "
                            "set is the ImageNet val images of those classes)")
    protocol = {"name": "imagenet-o-200", "source": IMAGENET_O_SOURCE, "classes": len(subset),
                "n_id_kept": int(keep.sum()), "n_id_dropped": int((~keep).sum())}
    return run.scores[keep][:, subset], ood.scores[:, subset], protocol


def aupr_ood(id_conf, ood_conf) -> float:
    """Average precision with the OOD images positive and -confidence as the anomaly score
    (Hendrycks et al.'s AUPR, ``calibration_tools.get_measures(out_score, in_score)``)."""
    from sklearn.metrics import average_precision_score

    a, b = np.asarray(id_conf, dtype=np.float64), np.asarray(ood_conf, dtype=np.float64)
    return float(average_precision_score(np.r_[np.zeros(a.size), np.ones(b.size)], -np.r_[a, b]))
