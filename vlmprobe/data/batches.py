"""Batches of decoded images for the sample loop (``vlmprobe.engine.process``): a DataLoader over
anything with ``load_image(i)`` (an ImageDataset, engine inputs) that never raises on an
unreadable or undecodable image (``ImageLoadError``), but yields its reason so the caller can
record a counted skip; any other exception (a transform or loader bug) fails the run. ``load_image`` may return
None (an item shown without an image); the transform is then skipped."""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from .datasets import ImageLoadError


class _ImageItems(torch.utils.data.Dataset):
    """(index, image or transform(image) or None, error or None) for ``indices``."""

    def __init__(self, dataset, indices: Sequence[int], transform: Callable | None):
        self.dataset, self.indices, self.transform = dataset, indices, transform

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        i = self.indices[j]
        try:
            image = self.dataset.load_image(i)
            return i, (self.transform(image) if self.transform and image is not None else image), None
        except ImageLoadError as e:  # unreadable or undecodable: a counted skip
            return i, None, e.reason
        # anything else (a transform or loader bug) propagates with its traceback: a programming
        # error must fail the run, not turn every image into a "skipped image"


def _as_list(items):
    return items


def image_batches(dataset, indices: Sequence[int], batch_size: int, workers: int = 0,
                  transform: Callable | None = None) -> Iterator[list[tuple[int, object, str | None]]]:
    """Yield lists of ``(index, image | None, error | None)`` in ``indices`` order; images are
    decoded (and ``transform``-ed, e.g. a CLIP preprocess) in ``workers`` processes."""
    loader = torch.utils.data.DataLoader(_ImageItems(dataset, indices, transform), batch_size=batch_size,
                                         shuffle=False, num_workers=workers, collate_fn=_as_list)
    yield from loader
