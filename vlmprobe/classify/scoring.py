"""Shared protocol pieces of the methods that score every class from preprocessed pixels
(CLIP zero-shot, supervised classifiers): images are transformed by the model's own
``preprocess`` in DataLoader workers, and each image gets a row of K scores."""
from __future__ import annotations

import numpy as np

from ..metrics.nonfinite import prediction_fields, predict


class PixelScoresMethod:
    """Mixin: ``num_scores`` = K classes; ``image_transform`` = the model's ``preprocess``;
    ``run_batch`` = the subclass's ``scores(model, images)`` -> records + scores. Subclasses set
    ``self.space`` (a ``LabelSpace``)."""

    def scores(self, model, images):
        """[3, H, W] tensors -> [B, K] class scores (torch or numpy)."""
        raise NotImplementedError

    def run_batch(self, model, samples, images, rng_for):
        """-> records, scores [B, K] float32 (-inf outside a restricted label space; a NaN/inf row,
        e.g. an fp16 overflow, gets no prediction and is counted). With a dataset's class subset
        (ImageNet-R/-A) each record also keeps ``prediction_all``, the argmax over all K classes
        before masking, so results report the 1000-way accuracy beside the subset one."""
        return self.records_from_scores(self.scores(model, images), samples)

    def records_from_scores(self, scores, samples):
        """[B, K] scores (the model's, or computed from cached embeddings) -> (records, float32
        scores masked to the label space)."""
        full = np.asarray(scores, dtype=np.float32)
        scores = self.space.mask(full, samples)
        preds, bad = predict(scores, allow_neg_inf=self.space.restricted)
        records = [prediction_fields(p, b) for p, b in zip(preds, bad)]
        if self.space.subset is not None:
            for rec, p, b in zip(records, predict(full)[0], bad):
                rec["prediction_all"] = None if b else int(p)
        return records, scores

    def num_scores(self, dataset) -> int:
        return len(dataset.classnames)

    def image_transform(self, model):
        """Runs in DataLoader workers: PIL -> [3, H, W] with the model's own eval transform."""
        return model.preprocess
