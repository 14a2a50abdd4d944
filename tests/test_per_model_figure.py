"""The study report's one-point-per-model calibration panels: ECE and NLL before and after
temperature scaling vs accuracy, the plotted values equal to the metrics computed from each run."""
import numpy as np
import pytest

from vlmprobe.metrics.report import summarize
from vlmprobe.study import figures
from vlmprobe.study.collect import _eval_row


@pytest.fixture
def drawn(monkeypatch):
    """What ``model_scatter`` actually drew, per panel: the axes title, the scatter points in data
    coordinates (probit-transformed on probit panels) and the legend texts."""
    from vlmprobe.metrics import model_scatter as ms

    seen, real = [], ms._panel

    def spy(ax, panel):
        real(ax, panel)
        xy = [c.get_offsets() for c in ax.collections]
        seen.append({"title": ax.get_title(), "xy": np.concatenate(xy) if xy else np.zeros((0, 2)),
                     "legend": [t.get_text() for t in ax.get_legend().get_texts()]})

    monkeypatch.setattr(ms, "_panel", spy)
    return seen


def probit_shown(p):
    """Where a probit panel draws accuracy ``p`` (``model_scatter.SHOWN`` clipping)."""
    from scipy.stats import norm

    return norm.ppf(np.clip(p, 0.005, 0.995))


def _ece(probs, y, bins=15):
    conf, hit = probs.max(1), probs.argmax(1) == y
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # (l, u] bins
    return sum(abs(hit[idx == b].mean() - conf[idx == b].mean()) * (idx == b).mean() for b in range(bins) if (idx == b).any())


def _nll(scores, y, t=1.0):
    z = scores / t
    z = z - z.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))


def test_calibration_panels_plot_each_runs_ece_nll_before_and_after_temperature_scaling():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 80)
    fit = np.arange(80) % 2 == 0
    rows, expected = [], {}
    for i, sharp in enumerate((0.5, 2.0, 6.0)):
        scores = rng.normal(size=(80, 5)) * sharp
        scores[np.arange(80), y] += 1.0 + i
        res = summarize(y, scores.argmax(1), scores, [f"c{k}" for k in range(5)], calibration_fit=fit)
        run = {"id": f"r{i}", "model": f"m{i}", "dataset": "toy", "measure": "finetune", "params": {}}
        rows.append(_eval_row(run, res))
        t = res["calibration"]["temperature_scaling"]["temperature"]
        p_all = np.exp(scores - scores.max(1, keepdims=True))
        p_all /= p_all.sum(1, keepdims=True)
        ev = scores[~fit] / t
        p_ts = np.exp(ev - ev.max(1, keepdims=True))
        p_ts /= p_ts.sum(1, keepdims=True)
        expected[f"m{i}: fine-tuning"] = {"accuracy": (scores.argmax(1) == y).mean(), "ECE": _ece(p_all, y),
                                          "NLL": _nll(scores, y), "ECE after temperature scaling": _ece(p_ts, y[~fit]),
                                          "NLL after temperature scaling": _nll(scores[~fit], y[~fit], t)}
    data = {"models": {r["model"]: {} for r in rows}, "main": rows, "ood": [], "shape_bias": []}
    panels = {p["ylabel"]: p for p in figures.per_model_panels(data)}
    assert set(panels) == {"ECE", "NLL", "ECE after temperature scaling", "NLL after temperature scaling"}
    for name, panel in panels.items():
        assert panel["title"] == f"{name} vs accuracy" and len(panel["points"]) == 3
        for pt in panel["points"]:
            assert pt["x"] == pytest.approx(expected[pt["label"]]["accuracy"])
            assert pt["y"] == pytest.approx(expected[pt["label"]][name], rel=1e-6)
    png = figures.per_model(data)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert figures.per_model({**data, "models": {"m0": {}, "m1": {}}}) is None  # fewer than three models


def _factor_study(root, accs: dict) -> None:
    """A study directory by hand: one `factors` run per (model, method) whose results.json holds
    ``accs[(model, method)] = (overall, {factor: accuracy})`` (the file annotation)."""
    import json

    runs = []
    for (model, method), (overall, facs) in accs.items():
        rid = f"{model}/val/factors-source=f.jsonl-method={method}"
        (root / rid).mkdir(parents=True)
        res = {"factors": {"source": "/a/f.jsonl", "variants": {"file": {
            "n": 50, "accuracy": overall, "n_unmatched": 0,
            "factors": {f: {"n": 0 if a is None else 10, "accuracy": a,
                            "error_ratio": None if a is None else (1 - a) / (1 - overall)} for f, a in facs.items()}}}}}
        (root / rid / "results.json").write_text(json.dumps(res))
        runs.append({"id": rid, "model": model, "dataset": "val", "measure": "factors", "status": "done",
                     "params": {"source": "/a/f.jsonl", "variant": None, "method": method},
                     "deps": {"run": f"{model}/val/{method}"}})
    (root / "study.json").write_text(json.dumps({"name": "factors by hand", "runs": runs,
                                                 "models": {m: {"kind": "vlm" if m == "vlm" else "clip"} for m, _ in accs},
                                                 "datasets": {"val": {}}}))


def test_study_report_factor_panels_one_point_per_model_and_method(tmp_path, drawn):
    """Three models' factors runs (results.json written by hand): the report's ImageNet-X figure has
    one probit panel per factor with images, each point a (model, method) at (overall accuracy,
    factor accuracy) as its results.json says, the Huber line with Spearman and R²; with two models
    the figure is left out and the report says why."""
    from scipy.stats import spearmanr

    from vlmprobe.study.collect import LABELS
    from vlmprobe.study.report import build

    accs = {("clip", "zeroshot"): (0.80, {"pose": 0.70, "texture": 0.50, "color": None}),
            ("vlm", "generate"): (0.40, {"pose": 0.30, "texture": 0.35, "color": None}),
            ("vlm", "likelihood"): (0.60, {"pose": 0.45, "texture": 0.20, "color": None}),
            ("cnn", "classifier"): (0.90, {"pose": 1.00, "texture": 0.55, "color": None})}
    _factor_study(tmp_path / "s", accs)
    doc = build(tmp_path / "s")
    assert "factors.png" in doc.images and "needs factors runs of at least three models" not in "".join(doc.md)
    assert [d["title"] for d in drawn] == ["pose", "texture"]  # color: no accuracy, no panel
    labels = [f"{m}: {LABELS[meth]}" for m, meth in accs]  # one point per model and method
    for d in drawn:
        f = d["title"]
        want = [(accs[k][0], accs[k][1][f]) for k in accs]
        np.testing.assert_allclose(d["xy"], probit_shown(want))  # in the study's order, 1.00 drawn at the edge
        rho = spearmanr([w[0] for w in want], [w[1] for w in want]).statistic
        assert any(t.startswith(f"Huber fit (Spearman {rho:.2f}, R²") for t in d["legend"])
        assert [t for t in d["legend"] if ":" in t and "Huber" not in t] == labels
    drawn.clear()
    _factor_study(tmp_path / "two", {k: v for k, v in accs.items() if k[0] != "cnn" and k[0] != "clip"}
                  | {("clip", "zeroshot"): accs["clip", "zeroshot"]})
    doc = build(tmp_path / "two")
    assert "factors.png" not in doc.images and not drawn
    assert "needs factors runs of at least three models; this study has 2." in "".join(doc.md)
