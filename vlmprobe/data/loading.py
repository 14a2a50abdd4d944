"""``load_dataset(spec, ...)``: one entry point for every dataset source.

=====================  =================================================================
``DIR``                ImageFolder ``DIR/<class>/<image>`` (``DIR/<split>/<class>/...`` with split)
``FILE.jsonl``         manifest rows ``{"image", "label", "split", ...}``; paths relative to it
``DIR`` of WordNet ids ImageNet ``DIR/n01440764/<image>``: labels via timm's synset list
``[imagenet:]DIR+labels:F`` flat ImageNet val + devkit ground truth or ``file label`` table
``hfds:PATH``          a ``datasets`` Dataset/DatasetDict saved with ``save_to_disk``
``hf:NAME_OR_PATH``    ``datasets.load_dataset`` (hub name from the cache, or local parquet/...)
``wds:PATTERN``        webdataset tar shards (``{key}.jpg`` + ``{key}.cls``, ``classnames.txt``)
``toy:digits[:SPLIT]`` the embedded miniature world (registered by the ``vlmprobe.toy`` plugin)
``counteranimal:ROOT`` CounterAnimal's layout (``data.counteranimal``); ``toy:spurious`` its toy split
``cue-conflict:ROOT``  Geirhos et al. cue-conflict stimuli (``data.cueconflict``); label = shape
``imagenet-v2:`` ...   ImageNet shifts: ``imagenet-{v2,sketch,r,a,o,c,3dcc}:ROOT`` (``data.imagenet_shifts``)
``objectnet:ROOT``     ObjectNet's release (``data.objectnet``)
``inaturalist:`` ...   OOD sets ``inaturalist:``, ``sun:``, ``places:``, ``textures:``, ``ninco:`` (``data.ood_suites``)
=====================  =================================================================

Datasets that declare ``info["ood"]`` (ImageNet-O, the OOD suites) are unlabeled by nature:
their samples keep label -1 without ``--unlabeled``. ``corruption``/``severity`` keep only the
samples whose ``meta`` has those values (ImageNet-C / -3DCC; comma-separated lists accepted).

Class names come from the dataset (sorted folder names / sorted manifest labels / the
``ClassLabel`` feature) or from ``classes`` (``imagenet`` or a JSON list file). ``limit`` keeps a
seeded random subset (``seed``) in dataset order, so the same arguments give the same images.
``unlabeled=True`` (e.g. out-of-distribution images scored against ``classes``) gives every
sample the label -1 and ignores any labels or folder names.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..specs import DATASET_SPECS
from .classnames import apply_duplicate_policy, read_classnames
from .datasets import ImageDataset, Sample, read_manifest, scan_image_folder, scan_images
from .hub import load_hf_disk  # noqa: F401  (these modules register their spec prefixes)
from .imagenet import LABELS_SEPARATOR, is_wnid_folder, load_imagenet, load_wnid_folder
from .wds import load_wds  # noqa: F401
from .cueconflict import load_cue_conflict  # noqa: F401
from . import imagenet_shifts, objectnet, ood_suites, paper_sets  # noqa: F401  (imagenet-v2:, objectnet:, ninco:, flowers102:, ...)


def load_dataset(spec: str, split: str | None = None, limit: int | None = None, seed: int = 0,
                 classes: str | None = None, duplicate_names: str = "merge",
                 image_root: str | None = None, unlabeled: bool = False, corruption: str | None = None,
                 severity: str | None = None, corrupt: str | None = None) -> ImageDataset:
    """Load a dataset spec (table above) as an ImageDataset; raises DataError with one line.
    ``corrupt`` (``NAME:SEVERITY``) corrupts every image on the fly (``data.corrupt``)."""
    if unlabeled and not classes:
        raise DataError("an unlabeled dataset needs --classes (the class list its images are scored against)")
    entry = DATASET_SPECS.find(spec)
    if entry is not None:
        ds = entry.resolve(spec, split)
    elif LABELS_SEPARATOR in spec:  # flat ImageNet val folder + its label file
        ds = load_imagenet(spec)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise DataError(f"dataset {spec!r}: path does not exist")
        if path.is_dir():
            root = path / split if split and (path / split).is_dir() else path
            if split and root is path:
                raise DataError(f"dataset {spec!r}: no sub-directory {split!r} for --split")
            if unlabeled:  # any tree of images; folder names are not classes
                ds = ImageDataset(spec, scan_images(root), [], info={"format": "imagefolder", "split": split})
            elif is_wnid_folder(root):  # ImageNet layout DIR/n01440764/...: labels via timm's synset list
                ds = load_wnid_folder(spec, root)
            else:
                samples, names = scan_image_folder(root)
                ds = ImageDataset(spec, samples, names, info={"format": "imagefolder", "split": split})
        elif path.suffix == ".jsonl":
            ds = _load_manifest(spec, path, split, image_root, labeled=not unlabeled)
        else:
            raise DataError(f"dataset {spec!r}: expected a directory, a .jsonl manifest or one of "
                            f"{', '.join(DATASET_SPECS.prefixes())}")
    if unlabeled:
        ds = ImageDataset(ds.name, [Sample(s.id, s.image, -1, s.meta) for s in ds.samples], read_classnames(classes),
                          ds._loader, {**ds.info, "unlabeled": True})
    elif ds.info.get("ood"):
        if classes:
            ds = ImageDataset(ds.name, ds.samples, read_classnames(classes), ds._loader, ds.info)
    else:
        unlabeled_sample = next((s for s in ds.samples if s.label < 0), None)
        if unlabeled_sample is not None:
            raise DataError(f"{unlabeled_sample.image}: sample {unlabeled_sample.id!r} has no label"
                            f"{ds.info.get('missing_label', '')}; pass --unlabeled --classes to score unlabeled images")
    if classes and not unlabeled and not ds.info.get("ood"):
        ds = _relabel(ds, read_classnames(classes), classes)
    ds = _dedupe(ds, duplicate_names)
    ds = _select_meta(ds, "corruption", corruption)
    ds = _select_meta(ds, "severity", severity)
    if limit is not None and limit < len(ds):
        if limit <= 0:
            raise DataError(f"--limit must be positive (got {limit})")
        keep = np.sort(np.random.default_rng(seed).choice(len(ds), size=limit, replace=False))
        ds = ds.subset(keep.tolist())
    if corrupt is not None:
        from .corrupt import corrupted

        ds = corrupted(ds, corrupt, seed=seed)
    ds.info.update({"split": split, "limit": limit, "seed": seed, "classes_source": classes or "dataset"})
    if len(ds) == 0:
        raise DataError(f"dataset {spec!r} (split {split!r}) has no images")
    return ds


def _load_manifest(spec: str, path: Path, split: str | None, image_root: str | None,
                   labeled: bool = True) -> ImageDataset:
    rows = read_manifest(path, Path(image_root).expanduser() if image_root else None, labeled)
    if not labeled:
        for r in rows:
            r["label"] = ""  # ignored: load_dataset sets every label to -1
    if split is not None:
        missing = [r["_line"] for r in rows if "split" not in r]
        if missing:
            raise DataError(f"{path}:{missing[0]}: no 'split' field but --split {split} was given")
        rows = [r for r in rows if r["split"] == split]
        if not rows:
            raise DataError(f"{path}: no rows with split {split!r}")
    labels = [r["label"] for r in rows]
    if all(isinstance(v, str) for v in labels):
        names = sorted(set(labels))
    elif all(isinstance(v, int) for v in labels):
        names = [str(i) for i in range(max(labels) + 1)]  # replaced by --classes
    else:
        bad = next(r for r in rows if not isinstance(r["label"], (str, int)) or isinstance(r["label"], bool))
        raise DataError(f"{path}:{bad['_line']}: field 'label' must be a class name or an index")
    index = {n: i for i, n in enumerate(names)}
    samples = []
    for r in rows:
        meta = {k: v for k, v in r.items() if k not in ("image", "label", "_path", "_line")}
        lab = r["label"]
        samples.append(Sample(id=str(r.get("id", r["image"])), image=r["_path"],
                              label=index[lab] if isinstance(lab, str) else lab, meta=meta))
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: sample id {dup!r} appears more than once (add a unique 'id' field)")
    return ImageDataset(spec, samples, names, info={"format": "manifest"})


def _relabel(ds: ImageDataset, names: list[str], source: str) -> ImageDataset:
    """Map the dataset's labels onto an explicit class list: by name when every dataset class is
    in the list, else by position when the counts agree (ImageNet folders named by wnid)."""
    own = ds.classnames
    lookup = {n: i for i, n in enumerate(names)}
    if all(n in lookup for n in own):
        mapping = [lookup[n] for n in own]
    elif len(own) == len(names) or (own == [str(i) for i in range(len(own))] and len(own) <= len(names)):
        # same count (ImageNet folders by wnid), or index-only labels (manifest ints, .cls) -> by position
        mapping = list(range(len(names)))
    else:
        missing = next(n for n in own if n not in lookup)
        raise DataError(f"label {missing!r} of dataset {ds.name!r} is not in class list {source} "
                        f"({len(names)} names)")
    for s in ds.samples:
        if not 0 <= s.label < len(mapping):
            raise DataError(f"sample {s.id!r}: label index {s.label} outside class list {source}")
    samples = [Sample(s.id, s.image, mapping[s.label], s.meta) for s in ds.samples]
    return ImageDataset(ds.name, samples, names, ds._loader, ds.info)


def _dedupe(ds: ImageDataset, policy: str) -> ImageDataset:
    """Apply the duplicate-name policy; class indices a protocol names (``info["class_subset"]``,
    a sample's ``meta["label_set"]``) are remapped with the labels."""
    names, remap, duplicates = apply_duplicate_policy(ds.classnames, policy)
    if not duplicates:
        return ds

    def meta(m):
        return {**m, "label_set": sorted({remap[i] for i in m["label_set"]})} if "label_set" in m else m
    samples = [Sample(s.id, s.image, remap[s.label] if s.label >= 0 else -1, meta(s.meta)) for s in ds.samples]
    info = {**ds.info, "duplicate_names": {"policy": policy, "groups": duplicates}}
    if info.get("class_subset"):
        info["class_subset"] = sorted({remap[i] for i in info["class_subset"]})
    return ImageDataset(ds.name, samples, names, ds._loader, info)


def _select_meta(ds: ImageDataset, key: str, wanted: str | None) -> ImageDataset:
    """Keep the samples whose ``meta[key]`` is one of the comma-separated ``wanted`` values."""
    if wanted is None:
        return ds
    values = {v.strip() for v in str(wanted).split(",") if v.strip()}
    present = {str(s.meta.get(key)) for s in ds.samples if key in s.meta}
    if not present:
        raise DataError(f"dataset {ds.name!r}: --{key} applies to corruption sets (imagenet-c:, imagenet-3dcc:); "
                        f"its samples have no {key!r}")
    unknown = sorted(values - present)
    if unknown:
        raise DataError(f"dataset {ds.name!r}: --{key} {unknown[0]!r} not found (present: {', '.join(sorted(present))})")
    keep = [i for i, s in enumerate(ds.samples) if str(s.meta.get(key)) in values]
    return ds.subset(keep, **{key: sorted(values)})



def _load_counteranimal(spec: str, split: str | None):
    from .counteranimal import load_counteranimal

    if split is not None:
        raise DataError(f"dataset {spec!r}: CounterAnimal has no splits (groups are common/counter)")
    return load_counteranimal(spec)


DATASET_SPECS.register("counteranimal:", _load_counteranimal,
                       "CounterAnimal: ROOT/<ImageNet index> <name>/{common,counter}-<background>/<image>")
