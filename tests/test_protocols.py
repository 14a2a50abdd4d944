"""Robustness numbers under their papers' definitions (issue #30, part A): ObjectNet's label-set
rule everywhere, mCE only on the full 15 x 5 benchmark, ID and shift in one label space for
generation runs, ``metrics --ood`` pairing only comparable runs, ImageNet-O's protocol, and one
real ImageNet classifier on real photos."""
import json

import numpy as np
import pytest

from test_robust import cli
from vlmprobe.data.imagenet import default_classnames

NAMES = default_classnames()


def write_run(path, data: dict, records: list[dict], scores=None, method="classifier", model="timm:some-net",
              **config):
    """A finished run directory in the format ``vlmprobe eval`` writes (config.json, samples.jsonl,
    scores.npy), for metric tests whose predictions must be exactly these."""
    path.mkdir(parents=True)
    method = method if isinstance(method, dict) else {"name": method}
    cfg = {"command": "eval", "method": method, "model": {"spec": model, "kind": "classifier"},
           "data": {"classnames": NAMES, **data}, **config}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if scores is not None:
        np.save(path / "scores.npy", np.asarray(scores, dtype=np.float32))
    return path


def _scores(rows, k=1000, subset=None):
    """Score rows: {class: value} per sample, -inf outside ``subset`` (else a low constant)."""
    s = np.full((len(rows), k), -np.inf if subset else -5.0, dtype=np.float32)
    if subset:
        s[:, subset] = -5.0
    for i, row in enumerate(rows):
        for c, v in row.items():
            s[i, c] = v
    return s


# ---------------------------------------------------------------- 1. ObjectNet: the label-set rule
OBJECTNET_SUBSET = [0, 1, 419, 954]


@pytest.fixture
def objectnet_runs(tmp_path):
    """An ObjectNet run (the released protocol: 125-class subset, label = smallest mapped index) in
    which the Fish image is predicted as goldfish (1): right under the protocol, since Fish maps to
    tench (0) and goldfish (1); and an ImageNet val run of the same model on two of those classes."""
    recs = [{"id": "fish_tank/a.png", "label": 0, "meta": {"objectnet_class": "Fish", "label_set": [0, 1]},
             "prediction": 1, "prediction_all": 1},
            {"id": "band_aid/a.png", "label": 419, "meta": {"objectnet_class": "Band-Aid", "label_set": [419]},
             "prediction": 419, "prediction_all": 419},
            {"id": "banana/a.png", "label": 954, "meta": {"objectnet_class": "Banana", "label_set": [954]},
             "prediction": 0, "prediction_all": 7}]
    scores = _scores([{1: 3.0, 0: 1.0}, {419: 2.0}, {0: 2.0, 954: 1.0}], subset=OBJECTNET_SUBSET)
    on = write_run(tmp_path / "on", {"spec": "objectnet:/data/objectnet-1.0", "format": "objectnet",
                                     "protocol": "objectnet-imagenet", "class_subset": OBJECTNET_SUBSET}, recs, scores)
    val = write_run(tmp_path / "val", {"spec": "imagenet:/data/val"},
                    [{"id": "v1", "label": 1, "prediction": 1}, {"id": "v2", "label": 954, "prediction": 954},
                     {"id": "v3", "label": 5, "prediction": 5}],
                    _scores([{1: 3.0}, {954: 3.0}, {5: 3.0}]))
    return on, val


def test_objectnet_top1_everywhere_counts_any_mapped_class(objectnet_runs, tmp_path):
    """results.json top1 / shift.top1 / shift.subset_accuracy / all_classes_accuracy, the metrics
    printout and compare --shift all use the label-set rule: 2 of 3 right (main: 1 of 3)."""
    on, val = objectnet_runs
    r = cli("metrics", on, "--no-plots")
    assert r.returncode == 0, r.stderr
    assert "top-1 0.6667" in r.stdout
    res = json.loads((on / "results.json").read_text())
    assert res["top1"] == pytest.approx(2 / 3)
    sh = res["shift"]
    for key in ("top1", "subset_accuracy", "label_set_accuracy", "all_classes_accuracy"):
        assert sh[key]["accuracy"] == pytest.approx(2 / 3), key
    assert res["top5"] == 1.0 and res["per_class_accuracy"]["tench"] == 1.0  # Fish's row: its smallest index
    r = cli("compare", "--shift", f"{val}:{on}", "--out", tmp_path / "cmp.json")
    assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "cmp.json").read_text())["shift"]["rows"][0]
    assert row["shift_accuracy"] == pytest.approx(2 / 3) and row["id_n"] == 2  # val's images of the 4 classes
    # the records keep what the model said
    assert [json.loads(x)["prediction"] for x in (on / "samples.jsonl").read_text().splitlines()] == [1, 419, 0]


def test_objectnet_label_set_rule_on_a_real_evaluation(tmp_path):
    """Through `evaluate` (tiny timm classifier on the released layout): top-1 = label-set accuracy,
    and a prediction of a non-smallest mapped class counts as right."""
    from test_robust import tiny_timm
    from test_shift_data import _objectnet
    from vlmprobe import load_dataset
    from vlmprobe.classify.runner import evaluate, make_method
    from vlmprobe.models import load_model

    model = load_model(f"timm:local-dir:{tiny_timm(tmp_path / 'timm')}")
    _objectnet(tmp_path / "on")
    res = evaluate(model, load_dataset(f"objectnet:{tmp_path / 'on'}"), make_method("classifier"), tmp_path / "run",
                   progress=False)
    recs = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    ok = np.mean([r["prediction"] in r["meta"]["label_set"] for r in recs])
    assert res["top1"] == pytest.approx(ok) == res["shift"]["label_set_accuracy"]["accuracy"]
    assert res["shift"]["subset_accuracy"]["accuracy"] == pytest.approx(ok)
