"""Shared protocol pieces of the methods that score every class from preprocessed pixels
(CLIP zero-shot, supervised classifiers): images are transformed by the model's own
``preprocess`` in DataLoader workers, and each image gets a row of K scores."""
from __future__ import annotations


class PixelScoresMethod:
    """Mixin: ``num_scores`` = K classes; ``image_transform`` = the model's ``preprocess``."""

    def num_scores(self, dataset) -> int:
        return len(dataset.classnames)

    def image_transform(self, model):
        """Runs in DataLoader workers: PIL -> [3, H, W] with the model's own eval transform."""
        return model.preprocess
