"""ImageNet distribution-shift test sets in their released layouts (labels in ImageNet-1k's
1,000-index space, class names open_clip's ImageNet names).

==========================  ========================================================================
``imagenet-v2:ROOT``        ``imagenetv2-<variant>-format-val/<0..999>/<sha1>.jpeg`` (Recht et al. 2019):
                            the folder name IS the class index, mapped with ``int()`` (a string sort
                            puts ``10`` before ``2`` and mislabels images: ImageNetV2 issue #10).
                            ROOT is the variant folder, or the folder holding the three variants with
                            ``--split matched-frequency|threshold-0.7|top-images``. The older release's
                            WordNet-id folders are read too.
``imagenet-sketch:ROOT``    ``sketch/<wnid>/*.JPEG`` (Wang et al. 2019), 1,000 classes (ROOT = ``sketch``
                            or its parent).
``imagenet-r:ROOT``         ``imagenet-r/<wnid>/*.jpg`` (Hendrycks et al. 2021), 200 classes.
``imagenet-a:ROOT``         ``imagenet-a/<wnid>/*.jpg`` (Hendrycks et al. 2021), 200 classes.
``imagenet-o:ROOT``         ``imagenet-o/<wnid>/*.jpg``: out-of-distribution images (label -1), scored
                            against ImageNet-O's 200 classes (the release's protocol, ``load_imagenet_o``;
                            ``--label-space all``: the 1,000 classes).
``imagenet-c:ROOT``         ``<corruption>/<1..5>/<wnid>/*.JPEG`` (Hendrycks & Dietterich 2019); every
                            sample's ``meta`` holds ``corruption`` and ``severity`` (``--corruption``,
                            ``--severity`` select; results report accuracy per corruption/severity).
``imagenet-3dcc:ROOT``      the same layout for 3D Common Corruptions (Kar et al. 2022).
==========================  ========================================================================

**The 200-class protocol (R and A).** Hendrycks' ``eval.py`` (and CLIP_benchmark) keep only the
logits of the 200 classes the set covers. The class lists are timm's
(``timm/data/_info/imagenet_{r,a}_synsets.txt`` and ``_indices.txt``). The dataset records them as
``info["class_subset"]`` (sorted ImageNet indices); every method's label space restricts to them by
default (``classify.candidates.LabelSpace``: scores outside are ``-inf``, VLM likelihood scores 200
candidates instead of 1,000) and ``--label-space all`` scores 1000-way. Classifier/CLIP runs also
record the 1000-way prediction, so results report both accuracies.
A root's ``README.txt`` (the release's ``wnid name`` list) is ignored: only folders are read.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import DataError
from ..specs import DATASET_SPECS
from .datasets import ImageDataset, Sample, image_files
from .imagenet import WNID, default_classnames, synsets

V2_VARIANTS = ("matched-frequency", "threshold-0.7", "top-images")
SEVERITIES = (1, 2, 3, 4, 5)


def _subdirs(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _root(spec: str, prefix: str, inner: str | None = None) -> Path:
    """ROOT of ``prefix:ROOT`` (descending into the release's top folder ``inner`` when ROOT holds it)."""
    root = Path(spec.removeprefix(prefix)).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset {spec!r}: {root} is not a directory")
    if inner and (root / inner).is_dir():
        root = root / inner
    return root


def _no_split(spec: str, split: str | None) -> None:
    if split is not None:
        raise DataError(f"dataset {spec!r}: --split does not apply (point at the folder itself)")


@lru_cache(maxsize=2)
def subset_synsets(name: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(wnids, ImageNet indices) of ImageNet-R (``name='r'``) or -A (``'a'``) from timm's files,
    checked against each other (wnid ``i`` must be ImageNet class ``indices[i]``)."""
    import timm.data

    info = Path(timm.data.__file__).parent / "_info"
    wfile, ifile = info / f"imagenet_{name}_synsets.txt", info / f"imagenet_{name}_indices.txt"
    if not (wfile.is_file() and ifile.is_file()):
        raise DataError(f"ImageNet-{name.upper()} class lists not found in timm ({wfile}); upgrade timm")
    wnids = tuple(w.strip() for w in wfile.read_text().split())
    indices = tuple(int(i) for i in ifile.read_text().split())
    full = synsets()
    bad = next((i for i, (w, k) in enumerate(zip(wnids, indices)) if full[k] != w), None)
    if len(wnids) != len(indices) or bad is not None:
        raise DataError(f"{wfile} and {ifile} disagree (line {bad}); reinstall timm")
    return wnids, indices


def wnid_samples(root: Path, allowed: dict[str, int], where: str, label: bool = True,
                 meta: dict | None = None, id_prefix: Path | None = None) -> list[Sample]:
    """``root/<wnid>/<image>`` -> samples; a folder outside ``allowed`` is a DataError naming it."""
    samples = []
    for d in _subdirs(root):
        if d.name not in allowed:
            raise DataError(f"{d}: {d.name!r} is not one of the {len(allowed)} WordNet ids of {where}")
        base = id_prefix or root
        samples += [Sample(id=str(f.relative_to(base)), image=str(f), label=allowed[d.name] if label else -1,
                           meta=dict(meta or {})) for f in image_files(d)]
    return samples


def _dataset(spec: str, samples: list[Sample], fmt: str, **info) -> ImageDataset:
    if not samples:
        raise DataError(f"dataset {spec!r}: no images found")
    return ImageDataset(spec, samples, default_classnames(), info={"format": fmt, **info})


def load_imagenet_v2(spec: str, split: str | None = None) -> ImageDataset:
    """``imagenet-v2:ROOT`` (module docstring)."""
    root = _root(spec, "imagenet-v2:")
    variants = {v: root / f"imagenetv2-{v}-format-val" for v in V2_VARIANTS}
    present = [v for v, d in variants.items() if d.is_dir()]
    if split is not None:
        if split not in V2_VARIANTS:
            raise DataError(f"dataset {spec!r}: --split {split!r} is not an ImageNet-V2 variant {V2_VARIANTS}")
        if split not in present:
            raise DataError(f"dataset {spec!r}: no folder {variants[split].name} under {root}")
        root = variants[split]
    elif present:
        raise DataError(f"dataset {spec!r}: {root} holds the variants {present}; choose one with --split "
                        f"or point at its folder")
    dirs = _subdirs(root)
    if dirs and all(WNID.match(d.name) for d in dirs):  # the older release
        index = {w: i for i, w in enumerate(synsets())}
        return _dataset(spec, wnid_samples(root, index, "ImageNet-1k"), "imagenet-v2-wnid", variant=split,
                        label_source="WordNet-id folders (timm synsets)")
    samples = []
    for d in dirs:
        if not d.name.isdigit() or not 0 <= int(d.name) < 1000:
            raise DataError(f"{d}: ImageNet-V2 class folders are named 0..999 (the class index), got {d.name!r}")
        samples += [Sample(id=str(f.relative_to(root)), image=str(f), label=int(d.name)) for f in image_files(d)]
    return _dataset(spec, samples, "imagenet-v2", variant=split, label_source="folder name = class index (int)")


def load_imagenet_sketch(spec: str, split: str | None = None) -> ImageDataset:
    """``imagenet-sketch:ROOT``: ``sketch/<wnid>/`` over all 1,000 classes."""
    _no_split(spec, split)
    root = _root(spec, "imagenet-sketch:", "sketch")
    index = {w: i for i, w in enumerate(synsets())}
    return _dataset(spec, wnid_samples(root, index, "ImageNet-1k"), "imagenet-sketch",
                    label_source="WordNet-id folders (timm synsets)")


def _load_200(spec: str, split: str | None, name: str) -> ImageDataset:
    _no_split(spec, split)
    root = _root(spec, f"imagenet-{name}:", f"imagenet-{name}")
    wnids, indices = subset_synsets(name)
    allowed = dict(zip(wnids, indices))
    return _dataset(spec, wnid_samples(root, allowed, f"ImageNet-{name.upper()}"), f"imagenet-{name}",
                    class_subset=sorted(indices), protocol=f"imagenet-{name}-200",
                    label_source=f"timm imagenet_{name}_synsets.txt / imagenet_{name}_indices.txt")


def load_imagenet_r(spec: str, split: str | None = None) -> ImageDataset:
    return _load_200(spec, split, "r")


def load_imagenet_a(spec: str, split: str | None = None) -> ImageDataset:
    return _load_200(spec, split, "a")


def imagenet_o_synsets() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(wnids, ImageNet indices) of ImageNet-O's 200 classes: the release's folder names, as listed
    in hendrycks/natural-adv-examples ``eval_many_models.py`` (``imagenet_o_wnids``), stored in
    ``data/files/imagenet_o_synsets.txt``."""
    wnids = tuple((Path(__file__).parent / "files" / "imagenet_o_synsets.txt").read_text().split())
    index = {w: i for i, w in enumerate(synsets())}
    return wnids, tuple(index[w] for w in wnids)


def load_imagenet_o(spec: str, split: str | None = None) -> ImageDataset:
    """``imagenet-o:ROOT``: OOD images (label -1) under ImageNet WordNet-id folders.

    Protocol (Hendrycks et al. 2021, "Natural Adversarial Examples"; their code,
    hendrycks/natural-adv-examples ``eval_many_models.py``): the classifier's logits are restricted
    to ImageNet-O's 200 classes (``imagenet_o_mask``), the in-distribution images are the ImageNet
    val images of those 200 classes, the anomaly score is minus the maximum softmax probability
    over the 200 logits, ImageNet-O is the positive class, and the headline number is the AUPR
    (``calibration_tools.get_measures``). So the dataset carries ``info["class_subset"]`` = those
    200 classes (every method scores them only unless ``--label-space all``) and ``vlmprobe metrics
    ID_RUN --ood O_RUN`` restricts the ID run to the same classes (``metrics.ood_pairs``)."""
    _no_split(spec, split)
    root = _root(spec, "imagenet-o:", "imagenet-o")
    index = {w: i for i, w in enumerate(synsets())}
    return _dataset(spec, wnid_samples(root, index, "ImageNet-1k", label=False), "imagenet-o", ood=True,
                    class_subset=sorted(imagenet_o_synsets()[1]), protocol="imagenet-o-200",
                    protocol_source="hendrycks/natural-adv-examples eval_many_models.py")


def _load_corruptions(spec: str, split: str | None, prefix: str, fmt: str) -> ImageDataset:
    _no_split(spec, split)
    root = _root(spec, prefix)
    index = {w: i for i, w in enumerate(synsets())}
    samples, corruptions = [], []
    for c in _subdirs(root):
        levels = _subdirs(c)
        if not levels:
            raise DataError(f"{c}: expected severity folders 1..5 (<corruption>/<severity>/<wnid>/)")
        for s in levels:
            if not s.name.isdigit() or int(s.name) not in SEVERITIES:
                raise DataError(f"{s}: severity folders are named 1..5, got {s.name!r}")
            samples += wnid_samples(s, index, "ImageNet-1k", meta={"corruption": c.name, "severity": int(s.name)},
                                    id_prefix=root)
        corruptions.append(c.name)
    return _dataset(spec, samples, fmt, corruptions=corruptions, label_source="WordNet-id folders (timm synsets)")


def load_imagenet_c(spec: str, split: str | None = None) -> ImageDataset:
    return _load_corruptions(spec, split, "imagenet-c:", "imagenet-c")


def load_imagenet_3dcc(spec: str, split: str | None = None) -> ImageDataset:
    return _load_corruptions(spec, split, "imagenet-3dcc:", "imagenet-3dcc")


for _prefix, _fn, _help in (
        ("imagenet-v2:", load_imagenet_v2, "ImageNet-V2: ROOT/<0..999>/ (class index folders; --split variant)"),
        ("imagenet-sketch:", load_imagenet_sketch, "ImageNet-Sketch: ROOT/sketch/<wnid>/"),
        ("imagenet-r:", load_imagenet_r, "ImageNet-R: ROOT/<wnid>/, scored over its 200 classes"),
        ("imagenet-a:", load_imagenet_a, "ImageNet-A: ROOT/<wnid>/, scored over its 200 classes"),
        ("imagenet-o:", load_imagenet_o, "ImageNet-O (OOD): ROOT/<wnid>/"),
        ("imagenet-c:", load_imagenet_c, "ImageNet-C: ROOT/<corruption>/<1..5>/<wnid>/"),
        ("imagenet-3dcc:", load_imagenet_3dcc, "ImageNet-3DCC: ROOT/<corruption>/<1..5>/<wnid>/")):
    DATASET_SPECS.register(_prefix, _fn, _help)
