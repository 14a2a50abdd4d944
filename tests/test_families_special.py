"""Likelihood normalisations (mean, char, pmi) against naive reference computations, and the
special families (BLIP-2, InstructBLIP, PaliGemma, Mllama) built tiny from their own config
classes by ``vlmprobe.testing.families_special`` and loaded back with ``hf:PATH``."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlmprobe
from vlmprobe.cli import main as cli_main
from vlmprobe.errors import VlmprobeError

CANDIDATES = ["tench", "great white shark", "great", "tiger shark", "Ünïcødé 猫", "goldfish"]
TOL = 1e-4
QUESTION = "What type of object is in this photo?"


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (32 + 8 * (i % 2), 32, 3), dtype=np.uint8)) for i in range(n)]


def plain_sum(vlm, image, prefix: str, name: str) -> float:
    """Reference: one plain forward of ``prefix + " " + name`` (image or text only); the sum of
    the name's token log-probs, read off the logits at the positions before each name token."""
    P = vlm.encode(None if image is None else [image], [prefix])["input_ids"].shape[1]
    batch = vlm.encode(None if image is None else [image], [prefix + " " + name])
    with torch.no_grad():
        logp = vlm.model(**batch).logits[0].float().log_softmax(-1)
    ids = batch["input_ids"][0]
    return sum(logp[t - 1, ids[t]].item() for t in range(P, len(ids)))


def plain_tokens(vlm, image, prefix: str, name: str) -> list[float]:
    P = vlm.encode([image], [prefix])["input_ids"].shape[1]
    batch = vlm.encode([image], [prefix + " " + name])
    with torch.no_grad():
        logp = vlm.model(**batch).logits[0].float().log_softmax(-1)
    ids = batch["input_ids"][0]
    return [logp[t - 1, ids[t]].item() for t in range(P, len(ids))]


@pytest.fixture(scope="module")
def llava(tiny_models):
    return vlmprobe.load_model(f"hf:{tiny_models['llava']}")


@pytest.mark.parametrize("answer_prefix", [None, "The photo features a"])
def test_normalisations_equal_naive_references(llava, answer_prefix):
    """sum, mean, char and pmi (fast and naive) equal the plain-forward reference: mean = sum /
    tokens, char = sum / len(name), pmi = sum - the same name's sum after the text-only prompt."""
    imgs = images(2)
    with_image = llava.render(QUESTION, image=True, answer_prefix=answer_prefix)
    text_only = llava.render(QUESTION, image=False, answer_prefix=answer_prefix)
    prior = {c: plain_sum(llava, None, text_only, c) for c in CANDIDATES}
    ref = {r: torch.zeros(2, len(CANDIDATES)) for r in ("sum", "mean", "char", "pmi")}
    for b, img in enumerate(imgs):
        for k, c in enumerate(CANDIDATES):
            toks = plain_tokens(llava, img, with_image, c)
            ref["sum"][b, k] = sum(toks)
            ref["mean"][b, k] = sum(toks) / len(toks)
            ref["char"][b, k] = sum(toks) / len(c)
            ref["pmi"][b, k] = sum(toks) - prior[c]
    for scoring in ("naive", "fast"):
        got = llava.score(imgs, CANDIDATES, answer_prefix=answer_prefix, reduction=tuple(ref), scoring=scoring,
                          chunk_size=3)
        for r, want in ref.items():
            assert (got[r] - want).abs().max().item() <= TOL, (scoring, r)
            assert torch.equal(got[r].argmax(1), want.argmax(1)), (scoring, r)
        single = llava.score(imgs, CANDIDATES, answer_prefix=answer_prefix, reduction="pmi", scoring=scoring)
        assert (single - got["pmi"]).abs().max().item() <= 1e-5  # chunking differs: float noise only
    # per-image candidate lists (ragged): missing entries stay NaN, the prior is looked up per name
    ragged = [CANDIDATES[:2], CANDIDATES[3:]]
    got = llava.score(imgs, ragged, answer_prefix=answer_prefix, reduction="pmi")
    assert (got[0, :2] - ref["pmi"][0, :2]).abs().max() <= TOL and got[0, 2:].isnan().all()
    assert (got[1, :3] - ref["pmi"][1, 3:]).abs().max() <= TOL
    with pytest.raises(VlmprobeError, match="unknown reduction 'max'"):
        llava.score(imgs, CANDIDATES, reduction=("sum", "max"))


def test_eval_reports_the_normalised_and_the_sum_prediction(tiny_models, digits_folder, tmp_path):
    spec = f"hf:{tiny_models['llava']}"
    args = ["eval", "--model", spec, "--data", str(digits_folder), "--limit", "4", "--method", "likelihood",
            "--batch-size", "4", "--no-progress"]
    assert cli_main(args + ["--out", str(tmp_path / "sum")]) == 0
    assert cli_main(args + ["--reduction", "pmi", "--out", str(tmp_path / "pmi")]) == 0
    plain = [json.loads(x) for x in (tmp_path / "sum" / "samples.jsonl").read_text().splitlines()]
    pmi = [json.loads(x) for x in (tmp_path / "pmi" / "samples.jsonl").read_text().splitlines()]
    assert [r["sum_prediction"] for r in pmi] == [r["prediction"] for r in plain]
    assert all("sum_prediction" not in r for r in plain)
    cfg = json.loads((tmp_path / "pmi" / "config.json").read_text())
    assert json.dumps(cfg).count('"pmi"') >= 1
    model = vlmprobe.load_model(spec)
    data = vlmprobe.load_dataset(str(digits_folder), limit=4)
    want = model.score([data.load_image(i) for i in range(4)], data.classnames, reduction="pmi").numpy()
    assert np.abs(np.load(tmp_path / "pmi" / "scores.npy") - want).max() <= TOL
