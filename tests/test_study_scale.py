"""Zoo-scale studies: the report's per-run figures drawn fast (blitted reliability diagrams equal
a full draw), published reference points in the one-point-per-model figures, GPU assignment of
the local executor's workers."""
from __future__ import annotations

import io

import numpy as np
import pytest


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.int16)


def test_blitted_reliability_diagrams_equal_a_full_draw():
    """The report's reused, blitted reliability figure gives the pixels of a full draw of the same
    diagram (bars up to 1.0 touching the spines, an empty bin, a new title each time), and a
    fresh figure the same bytes as a reused one."""
    from vlmprobe.metrics.plots import ReliabilityFigure

    rng = np.random.default_rng(0)
    fig, fresh = ReliabilityFigure(compress_level=1), None
    try:
        for i in range(3):
            acc, conf = rng.random(15), rng.random(15)
            acc[[0, -1]], conf[4] = 1.0, np.nan
            bins = {"edges": np.linspace(0, 1, 16).tolist(), "accuracy": acc.tolist(), "confidence": conf.tolist()}
            blit = fig.png(bins, f"model {i}: zero-shot", 0.1 * i)
            assert np.array_equal(_pixels(blit), _pixels(fig.png(bins, f"model {i}: zero-shot", 0.1 * i, blit=False)))
            if i == 2:
                fresh = ReliabilityFigure(compress_level=1)
                assert fresh.png(bins, f"model {i}: zero-shot", 0.2) == blit
        other = {"edges": np.linspace(0, 1, 11).tolist(), "accuracy": [0.5] * 10, "confidence": [0.4] * 10}
        assert np.array_equal(_pixels(fig.png(other, "ten bins")), _pixels(fig.png(other, "ten bins", blit=False)))
    finally:
        fig.close()
        if fresh:
            fresh.close()
