"""Hugging Face ``datasets`` as image-classification data.

=================  ===============================================================================
``hfds:PATH``      a Dataset/DatasetDict saved with ``save_to_disk`` (``datasets.load_from_disk``)
``hf:NAME_OR_PATH`` ``datasets.load_dataset(NAME_OR_PATH)``: a hub name (offline from the local
                   cache when ``HF_DATASETS_OFFLINE=1``/``HF_HUB_OFFLINE=1``), or a local folder of
                   parquet/arrow/csv/json files or an ImageFolder (script-free builders)
=================  ===============================================================================

Both become the same lazily-decoding ImageDataset: only the label column is read up front; row
``i``'s image is decoded when ``load_image(i)`` asks for it (Arrow tables are memory-mapped, so
DataLoader workers share them). Image column: ``image``/``img``/``jpg``/``png``/``webp``/
``pixel_values``; label column: ``label``/``labels``/``fine_label``/``cls``; class names from a
``ClassLabel`` feature, else ``--classes``.
"""
from __future__ import annotations

from ..errors import DataError
from ..specs import DATASET_SPECS
from .datasets import ImageDataset, Sample, to_rgb

IMAGE_COLUMNS = ("image", "img", "jpg", "png", "webp", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "fine_label", "cls")


def _datasets(spec: str):
    try:
        import datasets
    except ImportError:
        raise DataError(f"dataset {spec!r} needs the 'datasets' package: pip install datasets") from None
    return datasets


def _pick_split(spec: str, obj, split: str | None, datasets):
    if isinstance(obj, (datasets.DatasetDict, dict)):
        if split is None or split not in obj:
            raise DataError(f"dataset {spec!r}: choose --split from {sorted(obj)}")
        return obj[split]
    return obj


def from_hf_dataset(spec: str, obj, split: str | None, fmt: str) -> ImageDataset:
    """One ``datasets.Dataset`` -> ImageDataset (samples ``{split}/{row}``, images decoded lazily)."""
    image_col = next((c for c in IMAGE_COLUMNS if c in obj.column_names), None)
    label_col = next((c for c in LABEL_COLUMNS if c in obj.column_names), None)
    if image_col is None or label_col is None:
        raise DataError(f"dataset {spec!r}: needs an image column ({'/'.join(IMAGE_COLUMNS)}) and a label column "
                        f"({'/'.join(LABEL_COLUMNS)}); it has {obj.column_names}")
    labels = obj[label_col]
    bad = next((i for i, v in enumerate(labels) if not isinstance(v, int) or isinstance(v, bool)), None)
    if bad is not None:
        raise DataError(f"dataset {spec!r}: row {bad}: column {label_col!r} holds {labels[bad]!r}, not a class index")
    feature = obj.features[label_col]
    names = list(feature.names) if hasattr(feature, "names") else [str(i) for i in range(max(labels, default=-1) + 1)]
    tag = split or "data"
    samples = [Sample(id=f"{tag}/{i}", image=f"{spec}#{split or ''}/{i}", label=int(v)) for i, v in enumerate(labels)]

    def loader(sample: Sample):
        return to_rgb(obj[int(sample.id.rsplit("/", 1)[1])][image_col])

    return ImageDataset(spec, samples, names, loader, info={"format": fmt})


def load_hf_disk(spec: str, split: str | None) -> ImageDataset:
    """``hfds:PATH`` (``save_to_disk`` output)."""
    datasets = _datasets(spec)
    try:
        obj = datasets.load_from_disk(spec[len("hfds:"):])
    except FileNotFoundError as e:
        raise DataError(f"dataset {spec!r}: {e}") from None
    return from_hf_dataset(spec, _pick_split(spec, obj, split, datasets), split, "hf-datasets")


def load_hf_hub(spec: str, split: str | None) -> ImageDataset:
    """``hf:NAME_OR_PATH`` through ``datasets.load_dataset`` (cache-only when offline)."""
    datasets = _datasets(spec)
    ref = spec[len("hf:"):]
    if not ref:
        raise DataError(f"dataset {spec!r} names no dataset")
    try:
        obj = datasets.load_dataset(ref, split=split) if split else datasets.load_dataset(ref)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"dataset {spec!r}: {first}") from None
    return from_hf_dataset(spec, _pick_split(spec, obj, split, datasets), split, "hf-load_dataset")


DATASET_SPECS.register("hfds:", load_hf_disk, "a datasets Dataset/DatasetDict saved with save_to_disk")
DATASET_SPECS.register("hf:", load_hf_hub, "datasets.load_dataset(NAME_OR_PATH): hub name (offline from the cache) "
                       "or a local folder of parquet/arrow/csv/json files")
