"""Shape bias on cue-conflict images: the loader (real file layout, bad names), exact counts on
a synthetic set, the ImageNet-to-16 decision against an independent computation, a whole
cue-conflict run through the one sample loop, and the per-category plot."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlmprobe
from vlmprobe.data.cueconflict import imagenet16, parse_stimulus_name
from vlmprobe.errors import DataError, VlmprobeError
from vlmprobe.metrics.shape_bias import shape_bias

CATS = ["airplane", "bear", "cat"]


def _stimuli(root, names):
    for rel in names:
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(len(rel)).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(f)
    return root


@pytest.fixture
def cue_root(tmp_path):
    return _stimuli(tmp_path / "cc", ["airplane/airplane1-bear2.png", "airplane/airplane1-airplane3.png",
                                      "airplane/airplane2-cat1.png", "bear/bear4-cat10.png", "cat/cat1-bear1.png"])


def test_parse_stimulus_name():
    assert parse_stimulus_name("airplane1-bicycle2.png") == ("airplane", "bicycle")
    assert parse_stimulus_name("knife10-elephant12.png") == ("knife", "elephant")
    for bad in ("airplane-bicycle2.png", "airplane1_bicycle2.png", "airplane1-bicycle.png", "1-2.png"):
        with pytest.raises(ValueError):
            parse_stimulus_name(bad)


def test_cue_conflict_loader(cue_root):
    ds = vlmprobe.load_dataset(f"cue-conflict:{cue_root}")
    assert ds.classnames == CATS and len(ds) == 5
    by_id = {s.id: s for s in ds.samples}
    s = by_id["airplane/airplane1-bear2.png"]
    assert s.label == 0 and s.meta == {"shape": "airplane", "texture": "bear", "cue_conflict": True}
    assert by_id["airplane/airplane1-airplane3.png"].meta["cue_conflict"] is False
    assert ds.info["same_cue_images"] == 1 and ds.info["cue_conflict_images"] == 4


@pytest.mark.parametrize("name, message", [
    ("airplane/airplane-bear2.png", "airplane-bear2.png"),        # does not parse
    ("airplane/airplane1-dog2.png", "texture category 'dog'"),    # unknown category
    ("bear/airplane5-cat1.png", "in folder 'bear'"),              # folder disagrees with the shape
])
def test_cue_conflict_bad_names_name_the_file(cue_root, name, message):
    _stimuli(cue_root, [name])
    with pytest.raises(DataError) as e:
        vlmprobe.load_dataset(f"cue-conflict:{cue_root}")
    text = str(e.value)
    assert "\n" not in text and str(cue_root / name) in text and message in text


def test_shape_bias_counts_exact():
    # categories 0..2; (prediction, shape, texture)
    rows = [(0, 0, 1), (0, 0, 1), (1, 0, 1), (2, 0, 1),   # shape 0: 2 shape, 1 texture, 1 other
            (None, 1, 2), (2, 1, 2), (1, 1, 2),          # shape 1: 1 shape, 1 texture, 1 other (no answer)
            (2, 2, 2), (0, 2, 2),                        # same cue: excluded
            (-1, 2, 0), (0, 2, 0)]                       # shape 2: 0 shape, 1 texture, 1 other
    pred, shp, tex = zip(*rows)
    out = shape_bias(pred, shp, tex, ["a", "b", "c"])
    assert out["excluded_same_cue"] == 2
    o = out["overall"]
    assert (o["shape"], o["texture"], o["other"], o["n"]) == (3, 3, 3, 9)
    assert o["shape_bias"] == pytest.approx(0.5) and o["shape_accuracy"] == pytest.approx(3 / 9)
    pc = out["per_category"]
    assert (pc["a"]["shape"], pc["a"]["texture"], pc["a"]["other"]) == (2, 1, 1)
    assert pc["a"]["shape_bias"] == pytest.approx(2 / 3)
    assert (pc["b"]["shape"], pc["b"]["texture"], pc["b"]["other"]) == (1, 1, 1)
    assert (pc["c"]["shape"], pc["c"]["texture"], pc["c"]["other"]) == (0, 1, 1) and pc["c"]["shape_bias"] == 0.0
    none = shape_bias([2], [0], [1], ["a", "b", "c"])
    assert none["overall"]["shape_bias"] is None and none["overall"]["other"] == 1
    with pytest.raises(VlmprobeError):
        shape_bias([0], [0], [5], ["a", "b", "c"])


def test_imagenet16_mapping_data():
    m = imagenet16()
    cats = m["categories"]
    assert sorted(cats) == ["airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair", "clock",
                            "dog", "elephant", "keyboard", "knife", "oven", "truck"]
    flat = [i for v in cats.values() for i in v]
    assert len(flat) == len(set(flat)) and all(0 <= i < 1000 for i in flat)
    assert "model-vs-human" in m["source"] and m["aggregation"] == "mean"
    assert cats["airplane"] == [404] and cats["cat"] == [281, 282, 283, 284, 285, 286]


def test_cue_conflict_run_zeroshot_and_imagenet16(tiny_models, tmp_path):
    """A run on a cue-conflict folder of the real categories: results.json holds the shape bias
    recomputed exactly from the records; imagenet16 decisions equal an independent aggregation."""
    cats = ["bear", "cat", "dog"]
    names = [f"{s}/{s}{i}-{t}{i}.png" for i, (s, t) in enumerate([(a, b) for a in cats for b in cats])]
    root = _stimuli(tmp_path / "cc", names)
    model = vlmprobe.load_model(f"hfclip:{tiny_models['hfclip']}")
    data = vlmprobe.load_dataset(f"cue-conflict:{root}")
    res = vlmprobe.evaluate(model, data, "zeroshot", tmp_path / "zs", batch_size=4, progress=False)
    recs = [json.loads(x) for x in open(tmp_path / "zs" / "samples.jsonl")]
    want = shape_bias([r["prediction"] for r in recs], [cats.index(r["meta"]["shape"]) for r in recs],
                      [cats.index(r["meta"]["texture"]) for r in recs], cats)
    assert res["shape_bias"] == json.loads(json.dumps(want))
    assert res["shape_bias"]["excluded_same_cue"] == 3 and res["shape_bias"]["overall"]["n"] == 6

    res16 = vlmprobe.evaluate(model, data, "imagenet16", tmp_path / "in16", batch_size=4, progress=False)
    scores = np.load(tmp_path / "in16" / "scores.npy")
    from vlmprobe.data import read_classnames

    images = [data.load_image(i) for i in range(len(data))]
    probs = torch.softmax(model.score(images, read_classnames("imagenet")), -1).numpy()
    idx = imagenet16()["categories"]
    q = np.stack([[p[idx[c]].mean() for c in cats] for p in probs])
    np.testing.assert_allclose(np.exp(scores), q, rtol=1e-4, atol=1e-7)
    recs16 = [json.loads(x) for x in open(tmp_path / "in16" / "samples.jsonl")]
    assert [r["prediction"] for r in recs16] == q.argmax(1).tolist()
    assert res16["shape_bias"]["overall"]["n"] == 6

    from vlmprobe.cli import main

    assert main(["compare", str(tmp_path / "zs"), str(tmp_path / "in16"), "--labels", "direct,in16",
                 "--shape-bias", str(tmp_path / "sb.png"), "--out", str(tmp_path / "sb.json")]) == 0
    table = json.loads((tmp_path / "sb.json").read_text())["shape_bias"]
    assert table["direct"]["overall"] == res["shape_bias"]["overall"] and (tmp_path / "sb.png").is_file()


def test_compare_refuses_a_run_without_cue_conflict(tmp_path, capsys):
    from vlmprobe.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"classnames": ["a", "b"]}}))
    (run / "samples.jsonl").write_text(json.dumps({"id": "x", "image": "x.png", "label": 0, "prediction": 1}) + "\n")
    assert main(["compare", str(run), "--shape-bias", str(tmp_path / "sb.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a cue-conflict run" in err and str(run / "samples.jsonl") in err and "\n" not in err


def test_imagenet16_refuses_other_classes(tiny_models, digits_folder):
    model = vlmprobe.load_model(f"hfclip:{tiny_models['hfclip']}")
    with pytest.raises(VlmprobeError, match="16 cue-conflict categories"):
        from vlmprobe.classify.imagenet16 import Method

        Method().setup(model, vlmprobe.load_dataset(str(digits_folder)))


def test_toy_cue_conflict_stimulus():
    """The toy stimulus: ink only inside the big shape's mask, and the small copies tile it."""
    from sklearn.datasets import load_digits

    from vlmprobe.toy.cueconflict import CueConflictConfig, stimulus

    d = load_digits()
    cfg = CueConflictConfig()
    img = np.asarray(stimulus(d.images[0], d.images[1], np.random.default_rng(0), cfg), dtype=np.float32).mean(-1)
    big = np.asarray(Image.fromarray((d.images[0] / 16 * 255).astype(np.uint8)).resize((32, 32), Image.BICUBIC))
    outside = big / 255.0 <= cfg.threshold
    assert img[outside].min() > 200  # paper only
    assert img[~outside].min() < 120  # some ink inside


def test_shape_bias_plot(tmp_path):
    from vlmprobe.metrics.shape_bias_plot import plot_shape_bias

    results = {"model A": {"overall": {"shape_bias": 0.6}, "per_category": {"a": {"shape_bias": 0.5},
                                                                           "b": {"shape_bias": None}}},
               "model B": {"overall": {"shape_bias": 0.2}, "per_category": {"a": {"shape_bias": 0.1},
                                                                           "b": {"shape_bias": 0.3}}}}
    out = plot_shape_bias(results, tmp_path / "sb.png")
    assert out.is_file() and out.stat().st_size > 1000
