"""Zero-shot retrieval: recalls equal an independent computation from the stored score matrix,
the pessimistic tie rule, caption-file formats and their errors, CLIP and VLM runs end to end
through the one sample loop (resume, restricted candidates, exact VLM scores)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import vlmprobe
from vlmprobe.data.captions import load_captions
from vlmprobe.errors import DataError
from vlmprobe.metrics.retrieval import image_to_text_ranks, recall_at_k, text_to_image_ranks


def _independent_recalls(scores, image_captions, caption_image, ks=(1, 5, 10)):
    """Recall@K by explicit sorting: order candidates by score descending, correct answers LAST
    among equal scores (the stated pessimistic rule), and look up the first correct position."""
    n, m = scores.shape
    i2t, t2i = {k: [] for k in ks}, {k: [] for k in ks}
    for i in range(n):
        cand = [j for j in range(m) if np.isfinite(scores[i, j])]
        order = sorted(cand, key=lambda j: (-scores[i, j], j in image_captions[i]))
        pos = min(order.index(j) for j in image_captions[i] if j in cand) + 1
        for k in ks:
            i2t[k].append(pos <= k)
    for j in range(m):
        cand = [i for i in range(n) if np.isfinite(scores[i, j])]
        order = sorted(cand, key=lambda i: (-scores[i, j], i == caption_image[j]))
        pos = order.index(caption_image[j]) + 1
        for k in ks:
            t2i[k].append(pos <= k)
    return {str(k): float(np.mean(v)) for k, v in i2t.items()}, {str(k): float(np.mean(v)) for k, v in t2i.items()}


def test_recalls_equal_independent_computation():
    rng = np.random.default_rng(0)
    n, per = 12, 3
    caption_image = np.repeat(np.arange(n), per)
    image_captions = [list(range(i * per, (i + 1) * per)) for i in range(n)]
    scores = rng.integers(0, 6, size=(n, n * per)).astype(np.float32)  # many ties on purpose
    scores[rng.random(scores.shape) < 0.2] = np.nan  # pairs not offered
    for i, caps in enumerate(image_captions):  # every image keeps one scored own caption, every caption its image
        scores[i, caps] = np.where(np.isnan(scores[i, caps]), 3.0, scores[i, caps])
    want_i2t, want_t2i = _independent_recalls(scores, image_captions, caption_image)
    assert recall_at_k(image_to_text_ranks(scores, image_captions)) == pytest.approx(want_i2t)
    assert recall_at_k(text_to_image_ranks(scores, caption_image)) == pytest.approx(want_t2i)


def test_tie_rule_is_pessimistic():
    scores = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # image 0 owns caption 0; image 1 owns 1, 2
    assert image_to_text_ranks(scores, [[0], [1, 2]]).tolist() == [2.0, 2.0]  # a tied wrong caption ranks above
    assert text_to_image_ranks(scores, [0, 1, 1]).tolist() == [2.0, 2.0, 1.0]
    const = np.zeros((4, 4))
    assert text_to_image_ranks(const, [0, 1, 2, 3]).tolist() == [4.0] * 4  # a constant scorer never gets lucky


def _images(root, n):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / f"{i}.png")


@pytest.fixture
def caption_jsonl(tmp_path):
    _images(tmp_path / "img", 5)
    rows = [{"image": f"img/{i}.png", "captions": [f"a photo of a {w}" for w in ws]}
            for i, ws in enumerate([["cat", "kitten"], ["dog"], ["bird", "small bird", "sparrow"], ["car"], ["boat"]])]
    path = tmp_path / "caps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_captions(caption_jsonl):
    ds = load_captions(str(caption_jsonl))
    assert len(ds) == 5 and len(ds.captions) == 8 and ds.caption_image == [0, 0, 1, 2, 2, 2, 3, 4]
    assert ds.samples[2].meta["captions"] == [3, 4, 5] and ds.samples[0].label == -1
    sub = load_captions(str(caption_jsonl), limit=2, seed=1)
    assert len(sub) == 2 and len(sub.captions) == sum(len(s.meta["captions"]) for s in sub.samples)


def test_karpathy_json(tmp_path):
    _images(tmp_path / "val2014", 3)
    doc = {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "0.png", "split": "test", "imgid": 0,
         "sentences": [{"raw": "A cat.", "tokens": ["a", "cat"]}, {"raw": "A kitten."}]},
        {"filepath": "val2014", "filename": "1.png", "split": "train", "sentences": [{"raw": "A dog."}]},
        {"filepath": "val2014", "filename": "2.png", "split": "test", "sentences": [{"raw": "A bird."}]}]}
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(doc))
    ds = load_captions(str(path))
    assert [s.id for s in ds.samples] == ["val2014/0.png", "val2014/2.png"]
    assert ds.captions == ["A cat.", "A kitten.", "A bird."] and ds.info["format"] == "karpathy-coco"
    assert ds.samples[1].image == str(tmp_path / "val2014" / "2.png")
    assert [s.id for s in load_captions(str(path), split="train").samples] == ["val2014/1.png"]
    doc["images"][2]["sentences"] = []
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"images\[2\].*val2014/2.png has no captions"):
        load_captions(str(path))


@pytest.mark.parametrize("row, message", [
    ({"image": "img/9.png", "captions": []}, ":2: image img/9.png has no captions"),
    ({"image": "img/9.png"}, ":2: missing field 'captions'"),
    ({"image": "img/9.png", "captions": ["ok", "  "]}, ":2: caption 1 of image img/9.png is empty"),
    ({"captions": ["x"]}, ":2: missing field 'image'"),
])
def test_bad_caption_files_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"image": "img/0.png", "captions": ["fine"]}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as e:
        load_captions(str(path))
    assert str(path) + message in str(e.value) and "\n" not in str(e.value)


def test_clip_retrieval_run(tiny_models, caption_jsonl, tmp_path):
    """CLIP scores are cosines of the model's embeddings; recalls in results.json equal the
    independent computation on the stored matrix; the CLI writes the rank files and resumes."""
    import torch

    spec = f"hfclip:{tiny_models['hfclip']}"
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "vlmprobe", "retrieval", "--model", spec, "--data", str(caption_jsonl),
           "--out", str(out), "--batch-size", "2", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "image->text R@1" in proc.stdout
    scores = np.load(out / "scores.npy")
    ds = load_captions(str(caption_jsonl))
    model = vlmprobe.load_model(spec)
    img = model.encode_images(torch.stack([model.preprocess(ds.load_image(i)) for i in range(len(ds))]))
    np.testing.assert_allclose(scores, (img @ model.encode_texts(ds.captions).T).numpy(), atol=1e-5)
    res = json.loads((out / "results.json").read_text())["retrieval"]
    want_i2t, want_t2i = _independent_recalls(scores, [s.meta["captions"] for s in ds.samples], ds.caption_image)
    assert res["image_to_text"]["recall"] == pytest.approx(want_i2t)
    assert res["text_to_image"]["recall"] == pytest.approx(want_t2i)
    caps = [json.loads(x) for x in open(out / "captions.jsonl")]
    assert len(caps) == 8 and caps[3]["text"] == "a photo of a bird" and caps[3]["image_id"] == "img/2.png"
    assert [c["rank_text_to_image"] for c in caps] == text_to_image_ranks(scores, ds.caption_image).astype(int).tolist()
    assert len([json.loads(x) for x in open(out / "images.jsonl")]) == 5
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)  # resume: nothing recomputed
    assert again.returncode == 0 and np.array_equal(np.load(out / "scores.npy"), scores)
    from vlmprobe.metrics.report import results_from_run

    assert results_from_run(out)["retrieval"] == res


def test_vlm_retrieval_restricted_candidates_exact(tiny_models, caption_jsonl, tmp_path):
    """VLM scores equal the naive per-pair likelihood; --max-candidates offers each caption to
    its own image + C-1 others, states the rule, and ranks only among offered pairs."""
    from vlmprobe.classify.retrieval import CAPTION_PROMPT, Method, offered_images

    model = vlmprobe.load_model(f"hf:{tiny_models['llava']}")
    ds = load_captions(str(caption_jsonl))
    res = vlmprobe.evaluate(model, ds, Method(max_candidates=2, seed=3), tmp_path / "vlm", batch_size=3,
                            progress=False)
    scores = np.load(tmp_path / "vlm" / "scores.npy")
    offered = offered_images(ds.caption_image, len(ds), 2, 3)
    expect_mask = np.zeros_like(scores, dtype=bool)
    for j, imgs in enumerate(offered):
        assert imgs[0] == ds.caption_image[j] and len(set(imgs.tolist())) == 2
        expect_mask[imgs, j] = True
    assert np.array_equal(np.isfinite(scores), expect_mask)
    i, j = np.argwhere(expect_mask)[0]
    naive = model.score([ds.load_image(int(i))], [ds.captions[j]], prompt=CAPTION_PROMPT, scoring="naive")
    assert scores[i, j] == pytest.approx(float(naive[0, 0]), abs=1e-4)
    r = res["retrieval"]
    assert r["text_to_image"]["mean_candidates"] == pytest.approx(2.0)
    cfg = json.loads((tmp_path / "vlm" / "config.json").read_text())["method"]
    assert cfg["max_candidates"] == 2 and "drawn uniformly" in cfg["candidate_rule"]
    assert r["candidates"]["max_candidates"] == 2 and r["candidates"]["candidate_rule"] == cfg["candidate_rule"]
    want_i2t, want_t2i = _independent_recalls(scores, [s.meta["captions"] for s in ds.samples], ds.caption_image)
    assert r["image_to_text"]["recall"] == pytest.approx(want_i2t)
    assert r["text_to_image"]["recall"] == pytest.approx(want_t2i)
    # the command's --scoring naive (the reference path) gives the same matrix and records itself
    from vlmprobe.cli import main

    assert main(["retrieval", "--model", f"hf:{tiny_models['llava']}", "--data", str(caption_jsonl), "--seed", "3",
                 "--max-candidates", "2", "--scoring", "naive", "--batch-size", "3", "--out", str(tmp_path / "naive"),
                 "--no-progress"]) == 0
    naive_scores = np.load(tmp_path / "naive" / "scores.npy")
    assert np.array_equal(np.isfinite(naive_scores), expect_mask)
    assert np.allclose(naive_scores[expect_mask], scores[expect_mask], atol=1e-4)
    assert json.loads((tmp_path / "naive" / "config.json").read_text())["method"]["scoring"] == "naive"


def test_unreadable_image_is_a_counted_skip(tiny_models, caption_jsonl, tmp_path):
    """A caption row whose image cannot be read: the image is a skipped record (NaN row), its
    captions are not ranked and are counted; the other queries are ranked as usual."""
    (caption_jsonl.parent / "img" / "1.png").write_bytes(b"not a png")
    model = vlmprobe.load_model(f"hfclip:{tiny_models['hfclip']}")
    ds = load_captions(str(caption_jsonl))
    from vlmprobe.classify.retrieval import Method

    res = vlmprobe.evaluate(model, ds, Method(), tmp_path / "run", progress=False)
    r = res["retrieval"]
    assert r["counts"] == {"images": 4, "skipped_images": 1, "captions": 8, "captions_of_skipped_images": 1}
    assert r["image_to_text"]["n_ranked"] == 4 and r["text_to_image"]["n_ranked"] == 7
    assert res["skipped_images"][0]["image"].endswith("img/1.png")


def test_clip_retrieval_uses_the_image_embedding_cache(tiny_models, caption_jsonl, tmp_path, monkeypatch):
    """CLIP retrieval scores from the cached image embeddings equal the image tower's per batch
    (--no-embedding-cache) within 1e-6; the config records the cache key; a second run with other
    options reuses the entry (not recomputed)."""
    from vlmprobe.cache import home_dir
    from vlmprobe.classify.embeddings import embedding_key
    from vlmprobe.cli import main

    monkeypatch.setenv("VLMPROBE_HOME", str(tmp_path / "home"))
    spec = f"hfclip:{tiny_models['hfclip']}"
    base = ["retrieval", "--model", spec, "--data", str(caption_jsonl), "--batch-size", "2", "--no-progress"]
    assert main(base + ["--out", str(tmp_path / "plain"), "--no-embedding-cache"]) == 0
    assert main(base + ["--out", str(tmp_path / "cached")]) == 0
    plain, cached = (np.load(tmp_path / k / "scores.npy") for k in ("plain", "cached"))
    assert plain.shape == (5, 8) and np.abs(plain - cached).max() <= 1e-6
    cfg = json.loads((tmp_path / "cached" / "config.json").read_text())["method"]
    key = embedding_key(vlmprobe.load_model(spec), load_captions(str(caption_jsonl)))
    assert cfg["image_embeddings"] == key
    assert "image_embeddings" not in json.loads((tmp_path / "plain" / "config.json").read_text())["method"]
    entry = home_dir() / "features" / key / "features" / "embed.npy"
    stat = entry.stat().st_mtime_ns
    assert main(base + ["--out", str(tmp_path / "again"), "--max-candidates", "2"]) == 0
    assert entry.stat().st_mtime_ns == stat
    assert json.loads((tmp_path / "again" / "config.json").read_text())["method"]["image_embeddings"] == key
