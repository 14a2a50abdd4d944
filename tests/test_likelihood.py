"""Probability inference: the fast engine (shared prefix + token trie) equals the plain
per-candidate forward, on LLaVA-1.5 and LLaVA-NeXT (AnyRes) tiny models; tokenization at the
prompt/candidate boundary; reductions; batch invariance; the eval method end to end."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import vlmprobe
from vlmprobe.errors import VlmprobeError
from vlmprobe.classify.likelihood import apply_article
from vlmprobe.models.likelihood import continuation_logprobs, fast_path
from vlmprobe.models.tokentrie import build_trie, plan_chunks, tokenize_continuations

# shared token prefixes, multi-token names, duplicates, unicode, a long name
CANDIDATES = ["tench", "great white shark", "great", "great white", "tiger shark", "tiger", "tench",
              "Ünïcødé 猫", "café au lait", "African bush elephant", "goldfish"]
TOL = 1e-4


@pytest.fixture(scope="module")
def vlms(tiny_models):
    return {k: vlmprobe.load_model(f"hf:{tiny_models[k]}") for k in ("llava", "llava-next")}


def images(n, seed=0):
    """Random RGB images of different sizes (LLaVA-NeXT: different numbers of image tokens)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (24 + 12 * (i % 4), 40 - 6 * (i % 3), 3), dtype=np.uint8))
            for i in range(n)]


def assert_same_ranking(fast, naive):
    """Same argmax wherever the naive top-2 gap exceeds the tolerance (exact ties: duplicates)."""
    top2 = naive.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > TOL
    assert torch.equal(fast.argmax(1)[clear], naive.argmax(1)[clear])


@pytest.mark.parametrize("kind", ["llava", "llava-next"])
def test_fast_equals_naive(vlms, kind):
    vlm, imgs = vlms[kind], images(2)
    # every scored token's log-prob; chunk_size 5 splits subtrees (ancestors recomputed in later chunks)
    naive = vlm.score(imgs, CANDIDATES, reduction="tokens", scoring="naive")
    fast = vlm.score(imgs, CANDIDATES, reduction="tokens", chunk_size=5, batch_size=2)
    assert fast.shape == naive.shape and torch.equal(fast.isnan(), naive.isnan())
    assert (fast - naive).nan_to_num().abs().max().item() <= TOL
    ref = {"sum": naive.nansum(-1), "mean": naive.nanmean(-1), "first": naive[..., 0]}
    for reduction, want in ref.items():
        got = vlm.score(imgs, CANDIDATES, reduction=reduction, chunk_size=5, batch_size=2)
        assert got.shape == (2, len(CANDIDATES)) and torch.isfinite(got).all()
        assert (got - want).abs().max().item() <= TOL, reduction
        assert_same_ranking(got, want)
        assert torch.equal(got[:, 0], got[:, 6])  # duplicate names score identically
    # with the paper's answer prefix and EOS scoring
    kw = dict(answer_prefix="The photo features a", include_eos=True)
    fast = vlm.score(imgs[:1], CANDIDATES, **kw)
    naive = vlm.score(imgs[:1], CANDIDATES, scoring="naive", **kw)
    assert (fast - naive).abs().max().item() <= TOL
    assert_same_ranking(fast, naive)
    no_eos = vlm.score(imgs[:1], CANDIDATES, answer_prefix="The photo features a")
    assert (fast < no_eos).all()  # one more log-prob (< 0) in the sum


@pytest.mark.parametrize("kind", ["llava", "llava-next"])
def test_batch_invariance(vlms, kind):
    vlm, imgs = vlms[kind], images(8, seed=1)
    together = vlm.score(imgs, CANDIDATES, batch_size=8)
    alone = torch.cat([vlm.score([im], CANDIDATES, batch_size=1) for im in imgs])
    assert (together - alone).abs().max().item() <= TOL
    mixed = vlm.score(imgs, CANDIDATES, batch_size=3, chunk_size=9)
    assert (together - mixed).abs().max().item() <= TOL


def test_tokens_are_what_the_processor_reads(vlms):
    """The scored tokens appended to the (expanded) prompt ids == the processor's ids of the
    whole text ``prompt + " " + candidate``: both paths score exactly that text."""
    vlm = vlms["llava-next"]
    img = images(1)[0]
    prefix = vlm.render("What type of object is in this photo?")
    req = tokenize_continuations(vlm.tokenizer, prefix, CANDIDATES)
    assert req.shared == len(req.prefix_ids) and all(s == 0 for s in req.start)
    base = vlm.encode([img], [prefix])["input_ids"][0].tolist()
    for c, seq in zip(CANDIDATES, req.seqs):
        whole = vlm.encode([img], [prefix + " " + c])["input_ids"][0].tolist()
        assert base + list(seq) == whole, c


def test_boundary_merge_is_context_not_score(vlms):
    """A prompt ending in a space: byte-level BPE reads "a cat" as "a", " cat", so the prompt's
    trailing " " token is not in tok(prompt + candidate). The score is the log-prob of the
    tokens after the common prefix, computed here by hand from one plain forward."""
    vlm = vlms["llava"]
    img = images(1)[0]
    prefix = vlm.render("What type of object is in this photo?", answer_prefix="The photo features a") + " "
    cands = ["goldfish", "tiger shark", "tench"]
    req = tokenize_continuations(vlm.tokenizer, prefix, cands, separator="")
    assert req.shared < len(req.prefix_ids)  # the boundary really re-tokenizes
    fast = vlm.logprobs([img], [prefix], cands, separator="")
    naive = vlm.logprobs([img], [prefix], cands, separator="", scoring="naive")
    assert (fast - naive).abs().max().item() <= TOL
    P = vlm.tokenizer(prefix).input_ids
    for k, c in enumerate(cands):
        F = vlm.tokenizer(prefix + c).input_ids
        n = next(i for i in range(len(F)) if i >= len(P) or P[i] != F[i])
        batch = vlm.encode([img], [prefix + c])
        with torch.no_grad():
            logp = vlm.model(**batch).logits[0].float().log_softmax(-1)
        ids = batch["input_ids"][0]
        m = len(F) - n  # scored tokens sit at the end of the expanded ids
        L = len(ids)
        manual = sum(logp[t - 1, ids[t]].item() for t in range(L - m, L))
        assert fast[0, k].item() == pytest.approx(manual, abs=TOL)


def test_reductions_agree_with_token_logprobs(vlms):
    vlm, imgs = vlms["llava"], images(2)
    prefix = vlm.render("What type of object is in this photo?")
    tokens = vlm.logprobs(imgs, prefix, CANDIDATES, reduction="tokens")
    counts = (~tokens.isnan()).sum(-1)
    red = {r: vlm.logprobs(imgs, prefix, CANDIDATES, reduction=r) for r in ("sum", "mean", "first")}
    assert torch.allclose(red["sum"], tokens.nansum(-1), atol=1e-5)
    assert torch.allclose(red["mean"], tokens.nansum(-1) / counts, atol=1e-5)
    assert torch.equal(red["first"], tokens[..., 0])
    assert (counts[:, 1] == 3).all() and (counts[:, 2] == 1).all()  # " great white shark", " great"
    # per-row continuation lists of different lengths: NaN-padded
    ragged = vlm.logprobs(imgs, prefix, [CANDIDATES[:2], CANDIDATES[:5]])
    assert ragged[0, 2:].isnan().all() and torch.allclose(ragged[1], red["sum"][1, :5], atol=TOL)


def test_text_only_rows_with_their_own_prompts(vlms):
    """No image (ImageWikiQA-style text scoring), one prompt and one option list per row."""
    vlm = vlms["llava"]
    prefixes = [vlm.render("Which is a fish? A. tench B. cat", image=False) + " Answer:",
                vlm.render("Name an animal.", image=False)]
    conts = [["A", "B"], ["tench", "cat", "great white shark"]]
    fast = vlm.logprobs(None, prefixes, conts, chunk_size=2)
    naive = vlm.logprobs(None, prefixes, conts, scoring="naive")
    assert fast.shape == (2, 3) and fast[0, 2].isnan() and torch.isfinite(fast[1]).all()
    assert (fast - naive).nan_to_num().abs().max().item() <= TOL


def test_trie_shares_tokens_and_chunks_cover_it():
    seqs = [(1, 2, 3), (1, 2), (1, 4), (5,), (1, 2, 3)]
    trie = build_trie(seqs)
    assert trie.size == 5  # 1, 1-2, 1-2-3, 1-4, 5
    assert torch.equal(trie.paths[0], trie.paths[4])
    assert trie.parent.tolist() == [-1, 0, 1, 0, -1]  # pre-order numbering
    for size in (1, 2, 3, 5):
        plans = plan_chunks(trie, size)
        scored = torch.cat([p.targets for p in plans]).tolist()
        assert sorted(scored) == [1, 2, 3]  # every non-root node scored exactly once
        for p in plans:  # a chunk holds each scored node's ancestors
            assert p.tree.diagonal().all()


def test_article_option():
    prefix, cands = apply_article("The photo features a", ["apple", "cat", "Egyptian cat"])
    assert prefix == "The photo features" and cands == ["an apple", "a cat", "an Egyptian cat"]
    assert apply_article(None, ["owl"]) == (None, ["an owl"])


def test_unsupported_models_and_bad_input_raise(vlms):
    vlm = vlms["llava"]
    img = images(1)
    with pytest.raises(VlmprobeError, match="empty candidate"):
        vlm.score(img, ["tench", ""])
    with pytest.raises(VlmprobeError, match="reduction"):
        vlm.score(img, ["tench"], reduction="max")
    from transformers import ChameleonConfig, PaliGemmaConfig

    for config, match in ((PaliGemmaConfig(), "paligemma.*prefix-LM.*naive"), (ChameleonConfig(), "chameleon.*naive")):
        fake = SimpleNamespace(model=SimpleNamespace(config=config))  # a family refusal / no family adapter
        with pytest.raises(VlmprobeError, match=match):
            continuation_logprobs(fake, None, ["x"], ["y"])
    cfg = vlm.model.config
    old = cfg.text_config._attn_implementation
    try:  # an attention kernel that ignores a 4-D mask: the state path, never the tree mask
        cfg.text_config._attn_implementation = "flash_attention_2"
        assert fast_path(vlm.model) == "state"
        with pytest.raises(VlmprobeError, match="'tree' is not exact here"):
            continuation_logprobs(vlm, img, "USER: x ASSISTANT:", ["tench"], path="tree")
    finally:
        cfg.text_config._attn_implementation = old
    assert fast_path(vlm.model) == "tree"


def test_eval_method_end_to_end(vlms, digits_folder, tmp_path):
    """Run directory, exact scores vs the engine, and label-space sampling (-inf elsewhere,
    same candidates and scores at any batch size)."""
    from vlmprobe.classify.likelihood import Method

    vlm = vlms["llava"]
    data = vlmprobe.load_dataset(str(digits_folder), limit=6)
    res = vlmprobe.evaluate(vlm, data, Method(answer_prefix="paper"), tmp_path / "all", batch_size=4,
                            progress=False)
    scores = np.load(tmp_path / "all" / "scores.npy")
    records = [json.loads(line) for line in open(tmp_path / "all" / "samples.jsonl")]
    assert scores.shape == (6, 10) and np.isfinite(scores).all() and "top1" in res
    assert [r["prediction"] for r in records] == scores.argmax(1).tolist()
    direct = vlm.score([data.load_image(i) for i in range(6)], data.classnames,
                              answer_prefix="The photo features a").numpy()
    assert np.abs(scores - direct).max() <= TOL
    config = json.load(open(tmp_path / "all" / "config.json"))["method"]
    assert config["name"] == "likelihood" and config["answer_prefix"] == "The photo features a"

    runs = {}
    for bs in (1, 4):
        res = vlmprobe.evaluate(vlm, data, Method(num_candidates=3), tmp_path / f"n3_{bs}", batch_size=bs,
                                progress=False)
        assert "calibration" in res and "cmm" in res  # -inf columns (not offered) are valid scores
        runs[bs] = [json.loads(line) for line in open(tmp_path / f"n3_{bs}" / "samples.jsonl")]
        sampled = np.load(tmp_path / f"n3_{bs}" / "scores.npy")
        for i, r in enumerate(runs[bs]):
            np.testing.assert_array_equal(sampled[i, r["candidates"]], np.float32(r["candidate_scores"]))
            assert np.isneginf(np.delete(sampled[i], r["candidates"])).all()
    r1, r4 = runs[1], runs[4]
    assert [r["candidates"] for r in r1] == [r["candidates"] for r in r4]
    assert np.abs(np.array([r["candidate_scores"] for r in r1]) - [r["candidate_scores"] for r in r4]).max() <= TOL
    full = vlm.score([data.load_image(i) for i in range(6)], data.classnames).numpy()
    for i, r in enumerate(r1):
        assert len(set(r["candidates"])) == 3 and r["label"] in r["candidates"]
        assert np.abs(full[i, r["candidates"]] - r["candidate_scores"]).max() <= TOL  # same scores as all K
        assert r["prediction"] == r["candidates"][int(np.argmax(r["candidate_scores"]))]


def test_cli_flags(digits_folder, tiny_models, tmp_path):
    from vlmprobe.classify.likelihood import Method
    from vlmprobe.cli import build_parser, main

    flags = ["--reduction", "mean", "--article", "a/an", "--answer-prefix", "paper", "--score-eos",
             "--chunk-size", "7"]
    out = tmp_path / "cli"
    rc = main(["eval", "--method", "likelihood", "--model", f"hf:{tiny_models['llava']}", "--data",
               str(digits_folder), "--limit", "2", "--out", str(out), "--workers", "0", "--no-progress", *flags])
    assert rc == 0
    method = json.load(open(out / "config.json"))["method"]
    assert method["reduction"] == "mean" and method["article"] == "a/an" and method["include_eos"]
    assert method["answer_prefix"] == "The photo features a" and method["scoring"] == "fast"
    assert np.load(out / "scores.npy").shape == (2, 10)
    args = build_parser().parse_args(["eval", "--method", "likelihood", "--model", "x", "--data", "y", "--out", "z",
                                      "--scoring", "naive", "--num-candidates", "5", "--prompt", "what"])
    m = vlmprobe.classify.likelihood.from_args(args)
    assert isinstance(m, Method) and m.scoring == "naive" and m.num_candidates == 5
    assert m.question == "What is in this photo?"
    with pytest.raises(VlmprobeError, match="closed-world"):
        vlmprobe.classify.likelihood.from_args(build_parser().parse_args(
            ["eval", "--method", "likelihood", "--model", "x", "--data", "y", "--out", "z", "--closed-world"]))


def test_resume_after_a_killed_run_equals_uninterrupted(vlms, digits_folder, tmp_path):
    """A run cut after 3 of 6 images (torn last line, half-written score row) resumes, at
    another batch size, to the same samples.jsonl and scores.npy."""
    import shutil

    from vlmprobe.classify.likelihood import Method

    data = vlmprobe.load_dataset(str(digits_folder), limit=6)
    full, cut = tmp_path / "full", tmp_path / "cut"
    vlmprobe.evaluate(vlms["llava"], data, Method(), full, batch_size=4, progress=False)
    shutil.copytree(full, cut)
    lines = (full / "samples.jsonl").read_bytes().split(b"\n")
    (cut / "samples.jsonl").write_bytes(b"\n".join(lines[:3]) + b"\n" + lines[3][:20])
    scores = np.load(full / "scores.npy")
    (cut / "scores.partial").write_bytes(scores[:3].tobytes() + scores[3].tobytes()[:10])
    for name in ("scores.npy", "results.json", "timing.json"):
        (cut / name).unlink(missing_ok=True)
    vlmprobe.evaluate(vlms["llava"], data, Method(), cut, batch_size=1, progress=False)
    a = [json.loads(line) for line in open(full / "samples.jsonl")]
    b = [json.loads(line) for line in open(cut / "samples.jsonl")]
    assert [r["prediction"] for r in a] == [r["prediction"] for r in b] and len(b) == 6
    assert np.abs(np.load(cut / "scores.npy") - scores).max() <= TOL
