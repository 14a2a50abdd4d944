"""NaN/inf scores (fp16/bf16 overflow) are flagged, counted and reported, never argmax-ed into a
prediction: through the real evaluation loop, with the model's own forward made to overflow."""
import json

import numpy as np
import pytest
import torch

import vlmprobe
from vlmprobe.metrics.nonfinite import nonfinite_rows, predict


def test_predict_flags_nan_and_inf_rows():
    s = np.array([[1.0, 2.0, 0.0], [np.nan, 5.0, 0.0], [np.inf, 0.0, 0.0], [-np.inf, 3.0, 1.0],
                  [-np.inf, -np.inf, -np.inf]])
    pred, bad = predict(s)
    assert pred.tolist() == [1, -1, -1, -1, -1] and bad.tolist() == [False, True, True, True, True]
    pred, bad = predict(s, allow_neg_inf=True)  # sampled label space: -inf = not offered
    assert pred.tolist() == [1, -1, -1, 1, -1]
    assert nonfinite_rows(np.zeros((0, 3))).shape == (0,)


def _overflow_every_third(module, args, output):
    """What an fp16 overflow does to an image embedding: some rows become inf/NaN."""
    out = output.clone()
    out[::3] = torch.inf
    return out


@pytest.fixture
def overflowing_clip(tiny_models):
    model = vlmprobe.load_model(f"openclip:local-dir:{tiny_models['openclip']}")
    handle = model.model.visual.register_forward_hook(_overflow_every_third)
    yield model
    handle.remove()


def test_zeroshot_nonfinite_scores_are_counted_not_predicted(overflowing_clip, digits_folder, tmp_path, monkeypatch):
    # a private cache: the forward hook changes what the image tower computes, which the image-embedding
    # cache key (the model's files) cannot see, so an entry computed by another test must not be reused
    monkeypatch.setenv("VLMPROBE_HOME", str(tmp_path / "home"))
    data = vlmprobe.load_dataset(str(digits_folder), limit=12)
    results = vlmprobe.evaluate(overflowing_clip, data, "zeroshot", tmp_path / "run", batch_size=6, progress=False)
    records = [json.loads(line) for line in open(tmp_path / "run" / "samples.jsonl")]
    flagged = [r for r in records if r.get("nonfinite_scores")]
    assert len(flagged) == 4  # rows 0 and 3 of each batch of 6
    assert all(r["prediction"] is None and r["prediction_name"] is None and "top5" not in r for r in flagged)
    assert results["counts"]["nonfinite_scores"] == 4 and results["counts"]["n"] == 8
    assert results["nonfinite_samples"] == [r["id"] for r in flagged]
    scores = np.load(tmp_path / "run" / "scores.npy")
    assert not np.isfinite(scores[[r["id"] in results["nonfinite_samples"] for r in records]]).all(axis=1).any()
    again = vlmprobe.metrics.report.results_from_run(tmp_path / "run")  # `vlmprobe metrics` path
    assert again["counts"]["nonfinite_scores"] == 4 and again["top1"] == results["top1"]


def test_likelihood_nan_logits_are_counted(tiny_models, digits_folder, tmp_path):
    vlm = vlmprobe.load_model(f"hf:{tiny_models['llava']}")
    head = vlm.model.lm_head if hasattr(vlm.model, "lm_head") else vlm.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda m, a, out: out.masked_fill(torch.ones_like(out, dtype=torch.bool),
                                                                          float("nan")))
    try:
        data = vlmprobe.load_dataset(str(digits_folder), limit=3)
        results = vlmprobe.evaluate(vlm, data, "likelihood", tmp_path / "lik", batch_size=3, progress=False)
    finally:
        handle.remove()
    records = [json.loads(line) for line in open(tmp_path / "lik" / "samples.jsonl")]
    assert all(r["nonfinite_scores"] and r["prediction"] is None and r["logprob"] is None for r in records)
    assert results["counts"]["nonfinite_scores"] == 3 and results["counts"]["n"] == 0
