"""The sample browser (``vlmprobe browse``, ``vlmprobe.browse``): its data files against the run
directories it reads, the thumbnail cache (parallel = serial), and the page itself in a real
headless Chromium: open, filter, click from the study report into the browser, read the rows."""
import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from vlmprobe.cli import main

STUDY = """\
name: browse
world: toy
models:
  clip: {spec: "toy:clip"}
  vlm: {spec: "toy:vlm"}
datasets:
  test: {data: "toy:digits:test", limit: 60}
measurements:
  - {measure: zeroshot}
  - {measure: generate}
"""


@pytest.fixture(scope="module")
def study(toy_world, tmp_path_factory):
    """A real study (toy CLIP zero-shot and toy VLM generation on 60 digits) with its report and
    browser, as `vlmprobe study` writes them."""
    root = tmp_path_factory.mktemp("browse_study")
    (root / "s.yaml").write_text(STUDY)
    out = root / "out"
    assert main(["study", str(root / "s.yaml"), "--out", str(out), "--no-progress"]) == 0
    return out


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines() if line.strip()]


def load_js(path: Path):
    """The JSON argument of a data file's ``VB.x(...)`` call."""
    text = path.read_text(encoding="utf-8")
    body = text[text.index("(") + 1: text.rindex(")")]
    body = re.sub(r"^\d+,", "", body)
    return json.loads(body.replace("<\\/", "</"))


def decode(s: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype)


@pytest.fixture(scope="module")
def crafted(digits_folder, tmp_path_factory):
    """A generation run directory by hand with every status: right, wrong, unmatched, skipped
    (unreadable image) and api_error, plus a scored run of the same samples (top-5 from scores.npy)."""
    root = tmp_path_factory.mktemp("crafted")
    images = sorted(str(p) for p in digits_folder.rglob("*.png"))[:6]
    names = ["zero", "one", "two"]
    gen = root / "gen"
    gen.mkdir()
    recs = [
        {"id": "s0", "image": images[0], "label": 0, "prediction": 0, "response": "A zero, clearly.", "matched": True},
        {"id": "s1", "image": images[1], "label": 1, "prediction": 2, "response": "It is two.", "matched": True},
        {"id": "s2", "image": images[2], "label": 2, "prediction": None, "response": "A handwritten digit.",
         "matched": False},
        {"id": "s3", "image": str(root / "missing.png"), "label": 0, "skipped": "file not found"},
        {"id": "s4", "image": images[4], "label": 1, "prediction": None, "api_error": "HTTP 503 after 3 retries"},
        {"id": "s5", "image": images[5], "label": 2, "prediction": 2, "response": "Two <b>bold</b>.", "matched": True},
    ]
    (gen / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (gen / "config.json").write_text(json.dumps({"method": {"name": "generate"}, "data": {"classnames": names}}))
    zs = root / "zs"
    zs.mkdir()
    scores = np.array([[3, 1, 2], [1, 2, 3], [1, 0, 2], [np.nan] * 3, [0, 5, 1], [2, 1, 0]], np.float32)
    zrecs = [{"id": r["id"], "image": r["image"], "label": r["label"],
              "prediction": None if r["id"] == "s3" else int(np.argmax(s))} for r, s in zip(recs, scores)]
    zrecs[3]["skipped"] = "file not found"
    (zs / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in zrecs))
    np.save(zs / "scores.npy", scores)
    (zs / "config.json").write_text(json.dumps({"method": {"name": "zeroshot"}, "data": {"classnames": names}}))
    return root


def test_run_arrays_match_the_records(crafted, tmp_path):
    """Status codes, predictions, answers (distinct strings) and top-5 (from scores.npy, NaN rows
    left empty) as the page reads them, for one run directory."""
    from vlmprobe.browse import write_browser

    info = write_browser(crafted / "gen", tmp_path / "b", workers=1, progress=False, log=lambda m: None)
    assert info["samples"] == 6 and info["runs"] == 1 and info["thumbnails"]["failed"] == 1
    run = load_js(tmp_path / "b" / "data" / "d0-r0.js")
    assert decode(run["status"], np.uint8).tolist() == [0, 0, 1, 2, 3, 0]
    assert decode(run["pred"], np.int16).tolist() == [0, 2, -1, -1, -1, 2]
    answers = [run["strings"][i] if i >= 0 else None for i in decode(run["answer"], np.int32)]
    assert answers == ["A zero, clearly.", "It is two.", "A handwritten digit.", "file not found",
                       "HTTP 503 after 3 retries", "Two <b>bold</b>."]
    assert "<\\/b>" in (tmp_path / "b" / "data" / "d0-r0.js").read_text()  # no "</" inside a script file
    ds = load_js(tmp_path / "b" / "data" / "d0.js")
    assert ds["ids"] == [f"s{i}" for i in range(6)] and ds["thumbs"][3] == "" and all(ds["thumbs"][:3])
    write_browser(crafted / "zs", tmp_path / "z", workers=1, progress=False, log=lambda m: None)
    z = load_js(tmp_path / "z" / "data" / "d0-r0.js")
    top = decode(z["top"], np.int16).reshape(6, 5)
    assert top[0, :3].tolist() == [0, 2, 1] and top[0, 3] == -1 and (top[3] == -1).all()
    assert np.allclose(decode(z["tops"], np.float32).reshape(6, 5)[4, :3], [5, 1, 0])


def test_thumbnails_parallel_equal_serial_and_are_made_once(digits_folder, tmp_path):
    """The parallel thumbnail path writes the same bytes as the plain in-process one; a second
    call makes nothing (the cache key holds path, size and mtime)."""
    from vlmprobe.browse import make_thumbnails

    paths = sorted(str(p) for p in digits_folder.rglob("*.png")) + [str(tmp_path / "nope.png")]
    serial = make_thumbnails(paths, tmp_path / "a", workers=1, progress=False)
    parallel = make_thumbnails(paths, tmp_path / "b", workers=2, progress=False)
    assert serial["names"] == parallel["names"] and serial["made"] == 40 and serial["names"][-1] is None
    assert len(serial["failed"]) == 1 and "nope.png" in serial["failed"][0][0]
    for name in serial["names"][:-1]:
        assert (tmp_path / "a" / f"{name}.jpg").read_bytes() == (tmp_path / "b" / f"{name}.jpg").read_bytes()
    again = make_thumbnails(paths, tmp_path / "b", workers=2, progress=False)
    assert again["made"] == 0 and again["reused"] == 40


def test_browse_refuses_a_directory_without_runs(tmp_path, capsys):
    assert main(["browse", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "neither a study directory (study.json) nor a run directory (samples.jsonl)" in err and str(tmp_path) in err


def test_study_writes_the_browser_and_the_report_links_to_it(study):
    """`vlmprobe study` writes browse/ beside report.html; the report links each run's worst
    classes and confusions into it."""
    assert (study / "browse" / "index.html").is_file() and (study / "browse" / "data" / "index.js").is_file()
    page = (study / "report.html").read_text()
    assert 'href="browse/index.html"' in page
    assert re.search(r'href="browse/index.html#ds=test&amp;run=vlm%2Ftest%2Fgenerate&amp;cls=\d+&amp;wrong=1"', page)
    assert re.search(r'href="browse/index.html#ds=test&amp;run=clip%2Ftest%2Fzeroshot&amp;cls=\d+&amp;pred=\d+"', page)
    index = load_js(study / "browse" / "data" / "index.js")
    assert [r["id"] for r in index["datasets"][0]["runs"]] == ["clip/test/zeroshot", "vlm/test/generate"]


# ------------------------------------------------------------------ in a real browser

def _chromium():
    from vlmprobe.testing import chromium

    try:
        chromium.find()
    except chromium.BrowserUnavailable as e:
        pytest.skip(str(e))
    return chromium


def all_shown(chromium, driver) -> list[str]:
    """Every matching row, page by page (the page holds 50 rows at a time)."""
    ids = chromium.shown_ids(driver)
    while driver.execute_script("return !document.getElementById('next').disabled"):
        driver.find_element("id", "next").click()
        ids += chromium.shown_ids(driver)
    return ids


def test_browser_filters_in_headless_chromium(study):
    """Open the study's browser, filter "VLM wrong, CLIP right", "all runs wrong", a class and a
    search in the answers through the page's controls; the rows shown are exactly the samples
    computed here from samples.jsonl."""
    chromium = _chromium()
    from selenium.webdriver.support.ui import Select

    clip, vlm = records(study / "clip" / "test" / "zeroshot"), records(study / "vlm" / "test" / "generate")
    assert [r["id"] for r in clip] == [r["id"] for r in vlm]
    right = lambda r: r.get("prediction") is not None and r["prediction"] == r["label"]  # noqa: E731
    want_vw_cr = [v["id"] for c, v in zip(clip, vlm) if right(c) and not right(v)]
    want_all_wrong = [v["id"] for c, v in zip(clip, vlm) if not right(c) and not right(v)]
    assert want_vw_cr and len(clip) == 60
    with chromium.browser() as d:
        chromium.open_page(d, study / "browse" / "index.html")
        assert chromium.matching(d) == 60 and len(chromium.shown_ids(d)) == 50
        Select(d.find_element("id", "f-a")).select_by_value("vlm/test/generate")
        Select(d.find_element("id", "f-b")).select_by_value("clip/test/zeroshot")
        assert all_shown(chromium, d) == want_vw_cr
        assert "a=vlm%2Ftest%2Fgenerate" in d.current_url and "b=clip%2Ftest%2Fzeroshot" in d.current_url
        text = d.find_element("id", "rows").text
        assert "✗" in text and "✓" in text
        d.find_element("id", "f-reset").click()
        d.find_element("id", "f-allwrong").click()
        assert all_shown(chromium, d) == want_all_wrong
        d.find_element("id", "f-reset").click()
        Select(d.find_element("id", "f-cls")).select_by_value("3")
        assert all_shown(chromium, d) == [r["id"] for r in clip if r["label"] == 3]
        d.find_element("id", "f-reset").click()
        word = vlm[0]["response"].split()[-1].strip(".").lower()
        d.find_element("id", "f-q").send_keys(word)
        d.execute_script("document.getElementById('f-q').dispatchEvent(new Event('input'))")
        import time

        time.sleep(0.5)  # the search box waits 150 ms after the last key
        assert all_shown(chromium, d) == [r["id"] for r in vlm if word in r["response"].lower()]


def test_report_links_open_the_samples_in_headless_chromium(study):
    """Click a worst class and a confusion cell in report.html: the browser opens with those
    samples (the run's wrong samples of that class; the samples of class t predicted as p)."""
    chromium = _chromium()
    clip = records(study / "clip" / "test" / "zeroshot")
    vlm = records(study / "vlm" / "test" / "generate")
    with chromium.browser() as d:
        d.get((study / "report.html").resolve().as_uri())
        link = d.find_element("css selector", 'a[href*="run=vlm%2Ftest%2Fgenerate"][href*="wrong=1"]')
        cls = int(re.search(r"cls=(\d+)", link.get_attribute("href")).group(1))
        link.click()
        chromium.wait_ready(d)
        assert "browse/index.html" in d.current_url
        want = [r["id"] for r in vlm if r["label"] == cls and r.get("prediction") != cls]
        assert want and all_shown(chromium, d) == want
        d.get((study / "report.html").resolve().as_uri())
        link = d.find_element("css selector", 'a[href*="run=clip%2Ftest%2Fzeroshot"][href*="pred="]')
        t, p = (int(re.search(rf"{k}=(\d+)", link.get_attribute("href")).group(1)) for k in ("cls", "pred"))
        count = int(re.search(r"\((\d+)\)", link.text).group(1))
        link.click()
        chromium.wait_ready(d)
        want = [r["id"] for r in clip if r["label"] == t and r.get("prediction") == p]
        assert all_shown(chromium, d) == want and len(want) == count


def test_status_filters_and_escaping_in_headless_chromium(crafted, tmp_path):
    """unmatched / skipped / api_error filters over a hand-made run with each status; answers are
    shown as text (no HTML injected), a missing image shows no thumbnail."""
    chromium = _chromium()
    from vlmprobe.browse import write_browser

    write_browser(crafted / "gen", tmp_path / "b", workers=1, progress=False, log=lambda m: None)
    page = tmp_path / "b" / "index.html"
    with chromium.browser() as d:
        for status, want in (("unmatched", ["s2"]), ("skipped", ["s3"]), ("api_error", ["s4"])):
            chromium.open_page(d, page, f"status={status}")
            assert chromium.shown_ids(d) == want, status
        chromium.open_page(d, page, "wrong=1&run=gen")
        assert chromium.shown_ids(d) == ["s1", "s2"]
        chromium.open_page(d, page, "q=bold")
        assert chromium.shown_ids(d) == ["s5"]
        assert d.execute_script("return document.querySelectorAll('#rows b').length") == 0
        assert "<b>bold</b>" in d.find_element("id", "rows").text
        assert d.execute_script("return [].every.call(document.images, function (i) { return i.naturalWidth > 0; })")
        chromium.open_page(d, page)
        assert chromium.shown_ids(d) == [f"s{i}" for i in range(6)]
        assert "no image" in d.find_element("css selector", 'tr[data-id="s3"]').text


@pytest.mark.parametrize("k,ties", [(3, True), (10, True), (1000, True), (1000, False)])
def test_top_k_equals_the_plain_sort(k, ties):
    """The partitioned top-5 (wide score matrices) equals a plain per-row sort by (-score, class),
    with ties, NaN and -inf rows, and rows with fewer than 5 finite scores."""
    from vlmprobe.browse import top_k

    rng = np.random.default_rng(0)
    s = (rng.integers(0, 4, size=(300, k)) if ties else rng.standard_normal((300, k))).astype(np.float32)
    s[8, :] = 1.0  # a tie over the whole row
    s[rng.random(s.shape) < 0.2] = np.nan
    s[5] = np.nan
    s[6, :] = -np.inf
    s[7, 2:] = np.nan
    idx, vals = top_k(s)
    for row, got, got_v in zip(s, idx, vals):
        want = sorted((i for i in range(k) if np.isfinite(row[i])), key=lambda i: (-row[i], i))[:5]
        assert [int(x) for x in got if x >= 0] == want
        assert np.allclose(got_v[:len(want)], row[want]) and np.isnan(got_v[len(want):]).all()
