"""`vlmprobe study` / `vlmprobe report`: study files validated with file, key and line; a small
study on the tiny test models runs, a second run computes nothing and rebuilds a byte-identical
report (apart from the timestamp line); the report loads in a real headless Chromium."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from vlmprobe.cli import main
from vlmprobe.study import StudyFileError, load_study


def _study_text(tiny_models, digits_folder, corpus, qa):
    return f"""\
name: small
seed: 0
models:
  clip: {{spec: "hfclip:{tiny_models['hfclip']}"}}
  vlm: {{spec: "hf:{tiny_models['llava']}"}}
  vlm-ft:
    finetune:
      from: vlm
      recipe: {{train: "{digits_folder}", train_split: null, max_steps: 2, per_device_batch_size: 2, save_every: 0,
               eval_every: 0}}
datasets:
  digits: {{data: "{digits_folder}", limit: 12}}
  train: {{data: "{digits_folder}", limit: 16, eval: false}}
measurements:
  - {{measure: zeroshot}}
  - {{measure: generate, closed_world: true, num_candidates: [2, all]}}
  - {{measure: generate}}
  - {{measure: likelihood, models: [vlm], num_candidates: [2]}}
  - {{measure: frequency, models: [vlm], corpus: "{corpus}"}}
  - {{measure: probe, models: [vlm], train: train, layers: "0,-1", pool: last}}
  - {{measure: wikiqa, models: [vlm], data: "{qa}", images: "{digits_folder}", method: likelihood,
     classification: none}}
"""


@pytest.fixture(scope="module")
def small_study(tiny_models, digits_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    corpus = root / "corpus.json"
    corpus.write_text(json.dumps([{"id": str(i), "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": f"a {n}"}]}
        for i, n in enumerate(["zero", "one", "one", "two", "seven", "seven", "seven"])]))
    qa = root / "qa.jsonl"  # ImageWikiQA-format questions on the digits (one image missing: a counted skip)
    names = sorted(p.name for p in digits_folder.iterdir())
    rows = []
    for i, n in enumerate(names[:5]):
        options = [f"not {n}", f"{n}-like", "none of these"]
        options.insert(i % 4, n)
        rows.append({"image": f"{n}/{sorted((digits_folder / n).iterdir())[0].name}", "classname": n,
                     "label": "ABCD"[i % 4], "text": "Which digit is shown?\n" + "".join(
                         f"{letter}. {o}\n" for letter, o in zip("ABCD", options)) + "Choose A, B, C, or D."})
    rows.append({**rows[0], "image": f"{names[0]}/missing.png"})
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = root / "small.yaml"
    path.write_text(_study_text(tiny_models, digits_folder, corpus, qa))
    out = root / "out"
    assert main(["study", str(path), "--out", str(out)]) == 0
    return path, out


BAD = [
    ("models:\n  m: {spec: \"nope:thing\"}\ndatasets: {d: {data: toy:digits}}\nmeasurements: []\n",
     2, "models.m.spec", "unknown model spec"),
    ("models:\n  m: {spec: toy:vlm}\ndatasets: {d: {data: toy:digits}}\nmeasurements:\n  - {measure: zero-shot}\n",
     5, "measurements[0].measure", "unknown measure"),
    ("models:\n  m: {spec: toy:vlm}\ndatasets: {d: {data: toy:digits}}\nmeasurements:\n"
     "  - measure: generate\n    num_candiates: [2]\n", 6, "measurements[0].num_candiates", "did you mean 'num_candidates'"),
    ("models:\n  m: {spec: toy:vlm}\ndatasets:\n  d: {data: /no/such/folder}\nmeasurements: []\n",
     4, "datasets.d.data", "does not exist"),
    ("model:\n  m: {spec: toy:vlm}\n", 1, "model", "did you mean 'models'"),
    ("models:\n  m: {spec: toy:vlm}\ndatasets: {d: {data: toy:digits}}\nmeasurements:\n"
     "  - {measure: generate, models: [vml]}\n", 5, "measurements[0].models[0]", "no model named 'vml'"),
    # robustness keys: an OOD set needs its class list, a drop needs the group field, ood names a dataset
    ("models:\n  m: {spec: toy:vlm}\ndatasets:\n  d: {data: toy:digits}\n  o: {data: toy:photos, unlabeled: true}\n"
     "measurements: []\n", 5, "datasets.o.unlabeled", "add 'classes'"),
    ("models:\n  m: {spec: toy:vlm}\ndatasets:\n  s: {data: toy:spurious, group_drop: \"common,counter\"}\n"
     "measurements: []\n", 4, "datasets.s.group_drop", "two values A,B of the 'groups' field"),
    ("models:\n  m: {spec: toy:vlm}\ndatasets:\n  s: {data: toy:spurious, groups: group, group_drop: common}\n"
     "measurements: []\n", 4, "datasets.s.group_drop", "got 'common'"),
    ("models:\n  m: {spec: toy:vlm}\ndatasets: {d: {data: toy:digits}}\nmeasurements:\n"
     "  - {measure: ood, ood: photos}\n", 5, "measurements[0].ood", "no dataset named 'photos'"),
    ("models:\n  m: {spec: toy:vlm}\ndatasets: {d: {data: toy:digits}}\nmeasurements:\n"
     "  - {measure: ood}\n", 5, "measurements[0]", "measure 'ood' needs 'ood'"),
    ("models:\n  m: {spec: toy:clip}\ndatasets: {d: {data: toy:digits}}\nmeasurements:\n"
     "  - {measure: shape_bias, method: texture}\n", 5, "measurements[0].method", "method must be one of"),
    ("models:\n  m: {spec: toy:clip}\ndatasets: {d: {data: toy:photo}}\nmeasurements: []\n",
     3, "datasets.d.data", "unknown toy dataset 'toy:photo'"),
    # factors: a source is required, must exist, and the variant must fit it
    ("models:\n  m: {spec: toy:clip}\ndatasets: {d: {data: toy:digits}}\nmeasurements:\n"
     "  - {measure: factors}\n", 5, "measurements[0]", "measure 'factors' needs 'source'"),
    ("models:\n  m: {spec: toy:clip}\ndatasets: {d: {data: toy:digits}}\nmeasurements:\n"
     "  - {measure: factors, source: /no/such/x.jsonl}\n", 5, "measurements[0].source", "imagenet-x or an existing"),
    ("models:\n  m: {spec: toy:clip}\ndatasets: {d: {data: toy:digits}}\nmeasurements:\n"
     "  - {measure: factors, source: imagenet-x, variant: file}\n", 5, "measurements[0].variant",
     "does not fit source 'imagenet-x' (choose top or multi)"),
    ("world: toys\nmodels:\n  m: {spec: toy:clip}\ndatasets: {d: {data: toy:digits}}\nmeasurements: []\n",
     1, "world", "world must be one of ['toy']"),
]


@pytest.mark.parametrize("text,line,key,message", BAD)
def test_bad_study_files_name_file_key_and_line(tmp_path, capsys, text, line, key, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(StudyFileError) as e:
        load_study(path)
    assert str(e.value).startswith(f"{path}:{line}: {key}: ") and message in str(e.value), str(e.value)
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out)]) == 2
    assert f"{path}:{line}: {key}" in capsys.readouterr().err
    assert not out.exists()  # rejected before any run started


def test_default_study_is_valid_and_lists_its_runs(capsys, tmp_path):
    study = load_study(None)
    assert {"clip", "vlm", "vlm-ft"} <= set(study.models)
    assert main(["study", "--out", str(tmp_path / "demo"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "vlm-ft/finetune" in printed and "accelerate launch" in printed
    # the spurious CLIP is measured on the test digits only as a point of the effective-robustness figure
    assert [x for x in printed.splitlines() if x.startswith("[") and "clip-spurious/test/" in x
            and "/shift-" not in x and "clip-spurious/test/zeroshot-templates=templates.json" not in x] == []
    assert "vlmprobe compare --shift" in printed and "toy:sketch" in printed
    assert "vlm/test/wikiqa-condition=oracle_class+no_image" in printed


def _strip_stamp(text: str) -> str:
    return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "generated -", text)


def test_small_study_second_run_computes_nothing_and_report_is_identical(small_study, capsys):
    path, out = small_study
    plan = json.loads((out / "study.json").read_text())
    ids = [r["id"] for r in plan["runs"]]
    assert "vlm/digits/generate-closed_world=True-num_candidates=2" in ids and "vlm/digits/frequency" in ids
    assert all(r["status"] == "done" for r in plan["runs"])
    html1, md1 = (out / "report.html").read_text(), (out / "report.md").read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "report" not in p.name
              and p.name != "study.json" and "report_files" not in str(p)}
    capsys.readouterr()
    assert main(["study", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("reused (finished, same config)") == len(ids) and "$ vlmprobe" not in printed
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # no run directory was touched
    assert _strip_stamp((out / "report.html").read_text()) == _strip_stamp(html1)
    assert _strip_stamp((out / "report.md").read_text()) == _strip_stamp(md1)
    assert main(["report", str(out)]) == 0
    assert _strip_stamp((out / "report.html").read_text()) == _strip_stamp(html1)


def test_study_under_accelerate_launch_shards_each_run_like_one_process(small_study, tmp_path):
    """`accelerate launch --cpu --num_processes 2 -m vlmprobe study`: every engine run (zero-shot,
    generation, likelihood, probe with its feature extraction, ImageWikiQA with a skipped image,
    frequency) is split between the 2 processes and gives the one-process files (records equal
    apart from the volatile ``rank``); fine-tuning runs as 2-process DDP inside the study; one
    report."""
    from vlmprobe.runs import strip_volatile

    path, one = small_study
    two = tmp_path / "two"
    # a cold cache: the probe's features are extracted by the launch's two processes
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "VLMPROBE_HOME": str(tmp_path / "home2")}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                           "-m", "vlmprobe", "study", str(path), "--out", str(two)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads((two / "study.json").read_text())
    assert all(r["status"] == "done" for r in plan["runs"])
    base = [r["id"] for r in plan["runs"] if not r["id"].startswith("vlm-ft/")]
    for rid in base:
        if (one / rid / "samples.jsonl").exists():
            rec = [json.loads(x) for x in (two / rid / "samples.jsonl").read_text().splitlines()]
            assert [strip_volatile(r) for r in rec] == \
                [json.loads(x) for x in (one / rid / "samples.jsonl").read_text().splitlines()], rid
            if "/probe" not in rid:  # a probe's 2 processes extract its features (checked below)
                assert json.loads((two / rid / "timing.json").read_text())["world_size"] == 2, rid
                assert all("rank" in r for r in rec), rid  # computed by the launch's processes (one batch each)
        for name in ("results.json", "frequency.json"):
            if (one / rid / name).exists():
                a, b = ((d / rid / name).read_text().replace(str(d), "OUT") for d in (one, two))
                assert json.loads(a) == json.loads(b), rid
    probe = "vlm/digits/probe-layers=0,_1-pool=last/layers.json"
    probe_one, probe_two = (json.loads((d / probe).read_text()) for d in (one, two))
    assert probe_two["features"]["train"]["computed"] == 16  # extracted here, not read from a cache
    assert [r["test_accuracy"] for r in probe_one["layers"]] == [r["test_accuracy"] for r in probe_two["layers"]]
    qa = json.loads((two / "vlm/digits/wikiqa-method=likelihood-classification=none/results.json").read_text())
    assert qa["num_skipped"] == 1
    ft = json.loads((two / "vlm-ft" / "finetune" / "summary.json").read_text())
    assert ft["num_processes"] == 2 and ft["steps"] == 2
    assert (two / "vlm-ft" / "digits" / "generate" / "results.json").exists()
    assert not list(two.rglob("*.shard*")) and (two / "report.html").exists()


def test_report_links_every_number_and_embeds_study_and_versions(small_study):
    path, out = small_study
    html = (out / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # no network
    assert "<script" not in html and 'src="data:image/png;base64,' in html
    for href in set(re.findall(r'href="([^"#]+)(?:#[^"]*)?"', html)):
        if href == "browse/index.html":  # the sample browser (tests/test_browse.py follows these links)
            assert (out / href).is_file()
            continue
        assert (out / href).is_dir(), href  # every number links to an existing run directory
    assert "transformers" in html and "measure: zeroshot" in html  # versions and the study file
    for section in ("Findings", "Main table", "Label-space size", "Class frequency", "Calibration", "ImageWikiQA"):
        assert section in html
    md = (out / "report.md").read_text()
    assert "Not measured in this study (add {measure: factors, source: imagenet-x}" in md  # how to add one
    for img in re.findall(r"\]\((report_files/[^)]+)\)", md):
        assert (out / img).exists()


def test_failed_run_is_reported_and_others_continue(tiny_models, digits_folder, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(f"""\
models:
  clip: {{spec: "hfclip:{tiny_models['hfclip']}"}}
datasets:
  digits: {{data: "{digits_folder}", limit: 4}}
measurements:
  - {{measure: zeroshot, templates: [single, "{tmp_path}/missing_templates.json"]}}
""")
    assert main(["study", str(path), "--out", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert "FAILED" in printed and "1 of 2 runs did not finish" in printed
    assert (tmp_path / "out" / "clip" / "digits" / "zeroshot" / "results.json").exists()
    assert "report: not written" in printed and not (tmp_path / "out" / "report.html").exists()
    assert main(["study", str(path), "--out", str(tmp_path / "out"), "--partial"]) == 1  # from what is done
    assert (tmp_path / "out" / "report.html").exists()


def test_editing_a_named_file_reruns_only_the_runs_that_read_it(tiny_models, digits_folder, tmp_path, capsys):
    """The reuse key holds the SHA-256 of every file a run's command names: a corpus edited in
    place reruns its frequency run (the old one moved aside); the other runs are reused."""
    corpus = tmp_path / "corpus.json"
    conv = lambda name: {"id": name, "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},  # noqa: E731
                                                       {"from": "gpt", "value": f"a {name}"}]}
    corpus.write_text(json.dumps([conv("zero")]))
    path = tmp_path / "s.yaml"
    path.write_text(f"""\
models:
  vlm: {{spec: "hf:{tiny_models['llava']}"}}
datasets:
  digits: {{data: "{digits_folder}", limit: 4}}
measurements:
  - {{measure: frequency, corpus: "{corpus}"}}
""")
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out)]) == 0
    assert main(["study", str(path), "--out", str(out)]) == 0
    capsys.readouterr()
    corpus.write_text(json.dumps([conv("one"), conv("one")]))
    assert main(["study", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vlm/digits/generate: reused" in printed and "vlm/digits/frequency: its config changed" in printed
    assert json.loads((out / "vlm" / "digits" / "frequency" / "frequency.json").read_text())["texts"] == 2
    assert list(out.glob("vlm/digits/frequency.old-*"))


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_browser() is None, reason="no Chromium installed (CI installs it: apt-get install chromium)")
def test_report_opens_in_headless_chromium(small_study, tmp_path):
    """Every figure decoded (naturalWidth > 0) and every table has body rows, in a real browser."""
    _, out = small_study
    page = (out / "report.html").read_text()
    check = ("<script>window.addEventListener('load',function(){var imgs=[].slice.call(document.images);"
             "var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).length;"
             "var tabs=[].slice.call(document.querySelectorAll('table'));"
             "var empty=tabs.filter(function(t){return t.querySelectorAll('tbody tr').length==0}).length;"
             "var d=document.createElement('div');d.id='vlmprobe-check';"
             "d.textContent='images='+imgs.length+' broken='+bad+' tables='+tabs.length+' empty='+empty;"
             "document.body.appendChild(d);});</script>")
    probe = tmp_path / "report_check.html"
    probe.write_text(page.replace("</body>", check + "</body>"))
    profile = tmp_path / "profile"
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"images=(\d+) broken=(\d+) tables=(\d+) empty=(\d+)", dom)
    assert m, dom[-2000:]
    images, broken, tables, empty = map(int, m.groups())
    assert images >= 3 and broken == 0 and tables >= 5 and empty == 0, m.group(0)


def test_study_notebook_runs(small_study, tmp_path, python3_kernel):
    """notebooks/study.ipynb (committed without outputs) reads a study directory and redraws two
    figures, in a python3 kernel of this interpreter (its parameters cell is replaced)."""
    from pathlib import Path

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    _, out = small_study
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "study.ipynb", as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    params[0].source = f"STUDY_DIR = {str(out)!r}\n"
    nbclient.NotebookClient(nb, kernel_name=python3_kernel, timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stdout")
    assert "study small: 12 runs" in text and "frequency analyses: 1" in text
    for png in ("notebook_label_space.png", "notebook_frequency.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


ROBUST = """\
name: robust
world: toy
models:
  clip: {spec: "toy:clip"}
  cnn: {spec: "toy:cnn"}
datasets:
  test: {data: "toy:digits:test", limit: 16}
  spurious: {data: "toy:spurious", limit: 16, groups: group, group_drop: "common,counter", eval: false}
  photos: {data: "toy:photos", limit: 16, classes: "${toy}/classes.json", unlabeled: true, eval: false}
  cue-conflict: {data: "toy:cue-conflict", limit: 20, eval: false}
  captions: {data: "toy:captions", limit: 6, eval: false}
measurements:
  - {measure: zeroshot, datasets: [spurious]}
  - {measure: classifier, datasets: [spurious]}
  - {measure: ood, datasets: [test], ood: photos}
  - {measure: shape_bias, datasets: [cue-conflict], templates: "${toy}/templates.json"}
  - {measure: retrieval, datasets: [captions]}
"""


def test_robustness_measurements_fill_their_report_sections(toy_world, tmp_path, capsys):
    """Group shift (a dataset with groups), OOD (ood: an unlabeled dataset), shape bias and
    retrieval on the prebuilt world with small limits: each section's table links its runs,
    robustness datasets stay out of the main table, and a second study reuses every run."""
    path = tmp_path / "robust.yaml"
    path.write_text(ROBUST)
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "--groups group --group-drop common,counter" in printed and "--unlabeled" in printed
    assert "skip: zeroshot x cnn" in printed and "skip: retrieval x cnn" in printed
    ood_run = "clip/test/ood-ood=photos-method=zeroshot"
    assert f"$ vlmprobe metrics {out}/clip/test/zeroshot --ood {out}/clip/photos/zeroshot --out {out}/{ood_run}" \
        in printed
    from vlmprobe.study import read_study

    data = read_study(out)
    groups = {(g["model"], g["method"]): g for g in data["groups"]}
    assert set(groups) == {("clip", "CLIP zero-shot"), ("cnn", "supervised classifier")}
    for g in groups.values():
        assert (g["a"], g["b"], g["n_a"] + g["n_b"]) == ("common", "counter", 16)
        assert abs(g["drop"] - 100 * (g["acc_a"] - g["acc_b"])) < 1e-9
    [ood] = data["ood"]
    assert ood["run"] == ood_run
    # the AUROCs equal an independent computation from the two runs' score files (ID = positive)
    from scipy.special import softmax
    from sklearn.metrics import roc_auc_score

    id_s, ood_s = (np.load(out / f"clip/{d}/zeroshot/scores.npy").astype(np.float64) for d in ("test", "photos"))
    scale = json.loads((out / "clip/test/zeroshot/config.json").read_text())["model"]["logit_scale"]
    truth = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    for key, conf in (("msp_auroc", lambda s: softmax(s, axis=1).max(1)),
                      ("mcm_auroc", lambda s: softmax(s / scale, axis=1).max(1))):
        want = roc_auc_score(truth, np.r_[conf(id_s), conf(ood_s)])
        assert ood[key] == pytest.approx(want, abs=1e-6), key
    assert not (out / "clip/test/zeroshot/roc.png").exists()  # the ID run is left as it was
    assert {(r["model"], r["method"]) for r in data["shape_bias"]} == {
        ("clip", "CLIP zero-shot (templates templates.json)"), ("cnn", "supervised classifier")}
    assert all(r["shape"] + r["texture"] + r["other"] == r["n"] <= 20 for r in data["shape_bias"])  # no same-cue
    [ret] = data["retrieval"]
    assert ret["model"] == "clip" and set(ret["i2t"]) == {"1", "5", "10"} and ret["n_images"] == 6
    assert {r["dataset"] for r in data["main"]} == {"test"}  # spurious / photos runs stay out of it
    md = (out / "report.md").read_text()
    for section in ("## Group shift", "## OOD detection", "## Shape bias", "## Retrieval"):
        assert section in md
    assert md.count("Not measured") == 2 and "Not measured in this study (add {measure: factors" in md  # own test
    assert "Not measured in this study (add {measure: shift" in md  # own test (test_demo)
    for png in ("roc_0.png", "shape_bias.png"):
        assert (out / "report_files" / png).read_bytes()[:4] == b"\x89PNG"
    assert f"]({ood_run}/)" in md and "](cnn/spurious/classifier/)" in md and "](clip/captions/retrieval/)" in md
    html1 = (out / "report.html").read_text()
    assert main(["study", str(path), "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert [x for x in again.splitlines() if x.startswith("$ ") and x != "$ vlmprobe toy build"] == []
    assert _strip_stamp((out / "report.html").read_text()) == _strip_stamp(html1)


def test_factors_measurement_fills_its_report_section(tiny_models, digits_folder, tmp_path, capsys):
    """A `factors` run per model reads that model's eval run through `vlmprobe metrics RUN
    --factors FILE --out DIR` (the eval run untouched); the report's ImageNet-X table shows
    exactly what the same command run by hand computes."""
    from vlmprobe.data.imagenet_x import FACTORS
    from vlmprobe.study import read_study

    ann = tmp_path / "factors.jsonl"
    on = {"pose": lambda i: i % 2, "background": lambda i: i % 3 == 0, "color": lambda i: i % 5 == 0}
    ann.write_text("".join(json.dumps({"file_name": f"{i:04d}.png", **{f: int(on[f](i)) if f in on else 0
                                                                        for f in FACTORS}}) + "\n"
                           for i in range(41)))  # image 0040 is not in the folder: ignored by the join
    path = tmp_path / "f.yaml"
    path.write_text(f"""\
models:
  clip: {{spec: "hfclip:{tiny_models['hfclip']}"}}
  vlm: {{spec: "hf:{tiny_models['llava']}"}}
datasets:
  digits: {{data: "{digits_folder}", limit: 12}}
  train: {{data: "{digits_folder}", limit: 16, eval: false}}
measurements:
  - {{measure: factors, source: "{ann}"}}
""")
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    runs = {"clip": ("zeroshot", "clip/digits/factors-source=factors.jsonl-method=zeroshot"),
            "vlm": ("generate", "vlm/digits/factors-source=factors.jsonl-method=generate")}
    data = read_study(out)
    rows = {r["model"]: r for r in data["factors"]}
    assert set(rows) == set(runs) and {r["method"] for r in rows.values()} == {"CLIP zero-shot", "direct generation"}
    md = (out / "report.md").read_text()
    section = md.split("## ImageNet-X factors")[1].split("\n## ")[0]
    assert "| model | method | dataset | annotation | images | overall | pose | background | color |" in section
    for model, (method, rid) in runs.items():
        dep = out / model / "digits" / method
        assert f"$ vlmprobe metrics {dep} --factors {ann} --out {out}/{rid}" in printed
        assert "factors" not in json.loads((dep / "results.json").read_text())  # the eval run is left as it was
        hand = tmp_path / f"hand-{model}"
        assert main(["metrics", str(dep), "--factors", str(ann), "--out", str(hand), "--no-plots"]) == 0
        want = json.loads((hand / "results.json").read_text())["factors"]["variants"]["file"]
        r = rows[model]
        assert r["run"] == rid and r["variant"] == "file" and r["n"] == want["n"] == 12 and r["n_unmatched"] == 0
        assert r["accuracy"] == want["accuracy"] and r["factors"] == want["factors"]
        assert (r["factors"]["pose"]["n"], r["factors"]["texture"]["n"]) == (6, 0)
        cells = [f"[{r['n']}]({rid}/)", f"[{100 * r['accuracy']:.1f}]({rid}/)"]
        for f in ("pose", "background", "color"):
            x = want["factors"][f]
            er = "–" if x["error_ratio"] is None else f"{x['error_ratio']:.2f}"
            cells.append(f"[{100 * x['accuracy']:.1f} ({er}; n={x['n']})]({rid}/)")
        assert f"| {model} | {r['method']} | digits | factors.jsonl (file) | " + " | ".join(cells) + " |" in section
    assert "texture" not in section.split("\n|")[1]  # factors without images get no column
    # two models: no one-point-per-model figure (test_per_model_figure draws it for three), and the report says so
    assert "factors.png" not in section and "needs factors runs of at least three models; this study has 2." in section
    dep = out / "clip" / "digits" / "zeroshot"
    assert main(["metrics", str(dep), "--factors", str(ann), "--factor-variant", "top", "--out", str(tmp_path / "x")]) == 2
    assert "--factor-variant 'top': choose from file" in capsys.readouterr().err
