"""Issue #33 protocols, end to end from the CLI on the miniature world (toy:vlm, toy:clip):
95% intervals in results.json and paired tests (checked against scipy / statsmodels), open-world
scoring (checked against NLTK WordNet), hard-negative multiple choice."""
import json

import numpy as np
import pytest

from vlmprobe.cli import main

LIMIT = 60


@pytest.fixture(scope="module")
def runs(toy_world, tmp_path_factory):
    """A generation run of toy:vlm and a zero-shot run of toy:clip on the same 60 test digits."""
    root = tmp_path_factory.mktemp("p33")
    common = ["--data", "toy:digits:test", "--limit", str(LIMIT), "--no-progress", "--seed", "0"]
    assert main(["eval", "--model", "toy:vlm", "--method", "generate", "--out", str(root / "gen"), *common]) == 0
    assert main(["eval", "--model", "toy:clip", "--method", "zeroshot", "--out", str(root / "clip"), *common]) == 0
    return root


def _results(d):
    return json.loads((d / "results.json").read_text())


def _records(d):
    return [json.loads(x) for x in (d / "samples.jsonl").read_text().splitlines() if x.strip()]


# ------------------------------------------------------------------ (5) intervals and paired tests

def test_results_carry_clopper_pearson_intervals_matching_statsmodels(runs):
    from statsmodels.stats.proportion import proportion_confint

    for name in ("gen", "clip"):
        res = _results(runs / name)
        iv = res["intervals"]
        recs = _records(runs / name)
        k = sum(r["prediction"] == r["label"] for r in recs)
        lo, hi = proportion_confint(k, len(recs), alpha=0.05, method="beta")
        assert res["top1"] == pytest.approx(k / len(recs))
        assert (iv["top1"]["low"], iv["top1"]["high"]) == pytest.approx((lo, hi), abs=1e-10)
        for cls, (clo, chi) in iv["per_class_accuracy"].items():
            cr = [r for r in recs if r["label_name"] == cls]
            elo, ehi = proportion_confint(sum(r["prediction"] == r["label"] for r in cr), len(cr), method="beta")
            assert (clo, chi) == pytest.approx((elo, ehi), abs=1e-10)
        w1 = iv["worst_k_accuracy"]["1"]
        assert w1["low"] <= res["worst_k_accuracy"]["1"]["value"] + 0.2 and w1["low"] <= w1["high"]
    clip = _results(runs / "clip")["intervals"]
    assert clip["top5"]["method"] == "clopper-pearson" and clip["ece"]["low"] < clip["ece"]["high"]


def test_bootstrap_intervals_agree_with_scipy_bootstrap(runs):
    """The mean-CMM interval (bootstrap over classes) and the ECE interval (over samples) against
    scipy.stats.bootstrap's percentile intervals of the same statistics (different random
    streams: agreement within the Monte-Carlo error)."""
    from scipy.stats import bootstrap

    from vlmprobe.metrics.calibration import expected_calibration_error, softmax
    from vlmprobe.metrics.margin import class_matching_margin
    from vlmprobe.metrics.rundata import load_run

    run = load_run(runs / "clip")
    iv = _results(runs / "clip")["intervals"]
    cmm = class_matching_margin(run.scores, run.labels, len(run.classnames))
    ref = bootstrap((cmm,), np.mean, n_resamples=20000, method="percentile", random_state=1).confidence_interval
    width = ref.high - ref.low
    assert iv["cmm_mean"]["low"] == pytest.approx(ref.low, abs=0.1 * width)
    assert iv["cmm_mean"]["high"] == pytest.approx(ref.high, abs=0.1 * width)
    probs = softmax(run.scores)
    ref = bootstrap((np.arange(len(run.labels)),), lambda i: expected_calibration_error(probs[i], run.labels[i]),
                    n_resamples=3000, method="percentile", random_state=1, vectorized=False).confidence_interval
    width = ref.high - ref.low
    assert iv["ece"]["low"] == pytest.approx(ref.low, abs=0.15 * width)
    assert iv["ece"]["high"] == pytest.approx(ref.high, abs=0.15 * width)


def test_stratified_bootstrap_of_worst_k_matches_an_explicit_resampling():
    """Drawing hit counts from Binomial(n_c, acc_c) is resampling each class's right/wrong values
    with replacement: the worst-2 interval equals a literal per-sample resampling's within the
    Monte-Carlo error."""
    from vlmprobe.metrics.intervals import stratified_class_accuracy, worst_k_values

    counts, hits = np.array([20, 30, 25, 10]), np.array([15, 12, 24, 6])
    fast = worst_k_values(stratified_class_accuracy(hits, counts, 20000, seed=3), 2)
    rng = np.random.default_rng(7)
    vals = [np.r_[np.ones(h), np.zeros(n - h)] for h, n in zip(hits, counts)]
    slow = [np.sort([rng.choice(v, v.size).mean() for v in vals])[:2].mean() for _ in range(4000)]
    assert np.quantile(fast, [0.025, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.975]), abs=0.02)


def test_compare_paired_matches_statsmodels_mcnemar(runs, tmp_path, capsys):
    from statsmodels.stats.contingency_tables import mcnemar

    out = tmp_path / "paired.json"
    assert main(["compare", str(runs / "gen"), str(runs / "clip"), "--paired", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    t = json.loads(out.read_text())["paired"]
    tb = t["table"]
    table = [[tb["both_right"], tb["only_a_right"]], [tb["only_b_right"], tb["both_wrong"]]]
    assert t["mcnemar_exact_p"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9)
    gen, clip = _records(runs / "gen"), _records(runs / "clip")
    assert sum(table[0]) + sum(table[1]) == t["n"] == LIMIT
    d = np.array([float(b["prediction"] == b["label"]) - float(a["prediction"] == a["label"])
                  for a, b in zip(gen, clip)])
    assert t["difference"] == pytest.approx(d.mean())
    assert t["bootstrap"]["low"] <= d.mean() <= t["bootstrap"]["high"]
    assert t["significant"] and "significant" in printed and "McNemar exact p" in printed
    # a run against itself: no discordant pair, p = 1, marked not significant
    assert main(["compare", str(runs / "clip"), str(runs / "clip"), "--paired", "--out", str(out)]) == 0
    same = json.loads(out.read_text())["paired"]
    assert same["mcnemar_exact_p"] == 1.0 and not same["significant"]
    assert "not significant" in capsys.readouterr().out


def test_compare_paired_refuses_other_than_two_runs(runs, capsys):
    assert main(["compare", str(runs / "gen"), "--paired"]) != 0
    assert "--paired compares exactly two RUN_DIRs (got 1)" in capsys.readouterr().err


# ------------------------------------------------------------------ (1) open-world scoring

@pytest.fixture(scope="module")
def wordnet_dir(tmp_path_factory):
    """A copy of the installed WordNet 3.0 files that NLTK's reader accepts (it also wants a
    ``lexnames`` file, which Debian's wordnet-base lacks: the 45 lexicographer-file slots)."""
    import shutil

    from vlmprobe.data.wordnet import find_wordnet

    src = find_wordnet()
    if src is None:
        pytest.skip("no WordNet 3.0 database (apt-get install wordnet-base)")
    d = tmp_path_factory.mktemp("wordnet")
    for pos in ("noun", "verb", "adj", "adv"):
        for kind in ("index", "data"):
            shutil.copy(src / f"{kind}.{pos}", d)
        if (src / f"{pos}.exc").exists():
            shutil.copy(src / f"{pos}.exc", d)
    if not (d / "lexnames").exists():
        (d / "lexnames").write_text("".join(f"{i:02d} lex{i} 1\n" for i in range(45)))
    return d


@pytest.fixture(scope="module")
def nltk_wn(wordnet_dir):
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # the OMW mapping needs nltk_data's own copy; unused here
            return None

    nltk.data.path.append(str(wordnet_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Reader(str(wordnet_dir), None)


def _nltk_exact(wn, name):
    key = "_".join(name.lower().split())
    return [s for s in wn.synsets(key, "n") if key in [lem.name().lower() for lem in s.lemmas()]]


def _nltk_closure(synsets, rel, depth):
    seen, frontier, out, step = {s.offset() for s in synsets}, list(synsets), set(), 0
    while frontier and (depth is None or step < depth):
        nxt = []
        for s in frontier:
            for t in rel(s):
                if t.offset() not in seen:
                    seen.add(t.offset())
                    out.add(t)
                    nxt.append(t)
        frontier, step = nxt, step + 1
    return out


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "beagle", "dog",
         "polar bear", "crane", "sunglasses", "tabby"]


def test_wordnet_reader_matches_nltk(wordnet_dir, nltk_wn):
    from vlmprobe.data.wordnet import HYPERNYM, HYPONYM, WordNet

    wn = WordNet(wordnet_dir)
    try:
        for name in NAMES:
            ref = _nltk_exact(nltk_wn, name)
            assert wn.synsets(name) == [s.offset() for s in ref], name
            for s in ref:
                assert wn.lemmas(s.offset()) == [lem.name().replace("_", " ").lower() for lem in s.lemmas()]
                up = _nltk_closure([s], lambda x: x.hypernyms() + x.instance_hypernyms(), 3)
                assert set(wn.related(s.offset(), HYPERNYM, 3)) == {x.offset() for x in up}, name
                down = _nltk_closure([s], lambda x: x.hyponyms() + x.instance_hyponyms(), None)
                assert set(wn.related(s.offset(), HYPONYM)) == {x.offset() for x in down}, name
    finally:
        wn.close()


def _nltk_terms(wn, name, depth=3):
    """(synonym, hypernym, hyponym) word-token tuples of a class name from NLTK, the module's rules."""
    import re

    def tok(x):
        return tuple(re.findall(r"\w+", x.lower().replace("_", " ")))

    syn = _nltk_exact(wn, name)
    s = {tok(name)} | {tok(lem.name()) for x in syn for lem in x.lemmas()}
    up = {tok(lem.name()) for x in _nltk_closure(syn, lambda y: y.hypernyms() + y.instance_hypernyms(), depth)
          for lem in x.lemmas()}
    down = {tok(lem.name()) for x in _nltk_closure(syn, lambda y: y.hyponyms() + y.instance_hyponyms(), None)
            for lem in x.lemmas()}
    drop = {k for k in s | up | down if len(k) == 1 and len(k[0]) == 1 and k[0].isalpha()}
    return s - drop, up - s - drop, down - s - drop


def _names(answer, terms):
    import re

    words = re.findall(r"\w+", answer.lower())
    for i in range(len(words)):
        for t in terms:
            span = words[i:i + len(t)]
            if len(span) == len(t) and span[:-1] == list(t[:-1]) and t[-1] in (
                    span[-1], span[-1][:-1] if span[-1].endswith("s") else None,
                    span[-1][:-2] if span[-1].endswith("es") else None):
                return True
    return False


def test_open_world_cli_matches_an_nltk_recomputation(runs, wordnet_dir, nltk_wn, capsys):
    """`vlmprobe metrics RUN --open-world` on the toy VLM's stored answers: every per-sample
    criterion equals a recomputation from NLTK's WordNet, the rates equal their counts, inclusion
    equals the run's own any-match accuracy, and the semantic prediction is the nearest class
    name under the toy CLIP's text tower."""
    import torch

    from vlmprobe.models.registry import load_model

    gen = runs / "gen"
    assert main(["metrics", str(gen), "--open-world", "--wordnet", str(wordnet_dir), "--text-encoder", "toy:clip",
                 "--no-plots"]) == 0
    assert "open world on 60 answers" in capsys.readouterr().out
    res = _results(gen)
    ow = res["open_world"]
    rows = [json.loads(x) for x in (gen / "open_world.jsonl").read_text().splitlines()]
    recs = {r["id"]: r for r in _records(gen)}
    names = json.loads((gen / "config.json").read_text())["data"]["classnames"]
    terms = [_nltk_terms(nltk_wn, n) for n in names]
    assert len(rows) == ow["n"] == LIMIT
    for row in rows:
        syn, up, down = terms[row["label"]]
        resp = recs[row["id"]]["response"]
        inclusion = names[row["label"]] in resp.lower()
        synonym = inclusion or _names(resp, syn)
        assert row["inclusion"] == inclusion and row["synonym"] == synonym, row
        assert row["hypernym"] == (not synonym and _names(resp, up)), row
        assert row["hyponym"] == (not synonym and _names(resp, down)), row
        any_class = any(_names(resp, t[0]) for t in terms)
        assert row["unmatched"] == (not any_class and not inclusion and not _names(resp, up)
                                    and not _names(resp, down)), row
    for k in ("inclusion", "synonym", "hypernym", "hyponym", "unmatched", "semantic"):
        assert ow[k]["count"] == sum(r[k] for r in rows) and ow[k]["rate"] == pytest.approx(ow[k]["count"] / LIMIT)
    assert ow["inclusion"]["rate"] == pytest.approx(res["method_summary"]["accuracy_any_match"])
    assert ow["hypernym"]["count"] > 0  # the toy VLM often answers "a handwritten digit": a hypernym of each class
    assert any("digit" in r["hypernym_terms"] for r in rows)
    clip = load_model("toy:clip")
    with torch.no_grad():
        e_names = clip.encode_texts(names).numpy()
        e_ans = clip.encode_texts([recs[r["id"]]["response"] for r in rows]).numpy()
    assert [r["semantic_prediction"] for r in rows] == (e_ans @ e_names.T).argmax(1).tolist()


def test_open_world_criteria_on_imagenet_like_answers(wordnet_dir):
    """Hand-checked answers: a synonym ("ice bear"), a hypernym ("dog" for beagle, 3 steps), a
    hyponym ("beagle" for dog), a plural, an answer naming nothing (unmatched)."""
    from vlmprobe.classify.openworld import class_terms, rates, score_records
    from vlmprobe.data.wordnet import WordNet

    names = ["beagle", "polar bear", "dog", "crane"]
    wn = WordNet(wordnet_dir)
    terms = class_terms(names, wn)
    recs = [{"id": "a", "label": 0, "response": "A dog on grass.", "matches": []},
            {"id": "b", "label": 1, "response": "An ice bear.", "matches": []},
            {"id": "c", "label": 2, "response": "Two beagles.", "matches": [0]},
            {"id": "d", "label": 1, "response": "A spaceship.", "matches": []},
            {"id": "e", "label": 0, "response": "a beagle", "matches": [0]}]
    rows = {r["id"]: r for r in score_records(recs, names, terms)}
    assert rows["a"]["hypernym"] and not rows["a"]["synonym"] and rows["a"]["hypernym_terms"] == ["dog"]
    assert rows["b"]["synonym"] and rows["b"]["synonym_terms"] == ["ice bear"] and not rows["b"]["inclusion"]
    assert rows["c"]["hyponym"] and rows["c"]["hyponym_terms"] == ["beagle"]
    assert rows["d"]["unmatched"] and not rows["d"]["synonym"]
    assert rows["e"]["inclusion"] and rows["e"]["synonym"] and not rows["e"]["hypernym"]
    r = rates(list(rows.values()))
    assert r["synonym"]["count"] == 2 and r["hierarchy"]["count"] == 2 and r["unmatched"]["count"] == 1
    assert r["semantic"] is None
    assert len(class_terms(names, wn, hypernym_depth=2)[0].hypernyms & {("dog",)}) == 0  # beagle->hound->hunting dog
    wn.close()


def test_open_world_refuses_a_run_without_answers(runs, capsys):
    assert main(["metrics", str(runs / "clip"), "--open-world", "--no-plots"]) != 0
    assert "has no labeled record with a 'response'" in capsys.readouterr().err


# ------------------------------------------------------------------ (2) hard-negative multiple choice

@pytest.fixture(scope="module")
def mc_runs(runs):
    """{(method, "rand" | "hard"): run dir}: 3 candidates per image, random or mined from the CLIP run."""
    out = {}
    for method in ("generate", "likelihood"):
        extra = ["--closed-world"] if method == "generate" else ["--answer-prefix", "paper"]
        for rule in ("random", f"hard:{runs / 'clip'}"):
            d = runs / f"{method}-{rule[:4]}"
            assert main(["eval", "--model", "toy:vlm", "--data", "toy:digits:test", "--limit", str(LIMIT), "--seed",
                         "0", "--no-progress", "--method", method, "--num-candidates", "3", "--candidates", rule,
                         *extra, "--out", str(d)]) == 0
            out[method, rule[:4]] = d
    return out


@pytest.mark.parametrize("method", ["generate", "likelihood"])
def test_hard_candidates_are_the_clip_runs_top_confusions(runs, mc_runs, method, capsys):
    """--candidates hard:CLIP_RUN offers the true class plus the N-1 classes the CLIP run scores
    highest on the same image (recomputed here from its scores.npy); random keeps the paper's
    uniform draw; compare --paired gives the inflation (random minus hard) with its tests."""
    clip_scores = np.load(runs / "clip" / "scores.npy")
    clip_ids = [r["id"] for r in _records(runs / "clip")]
    out = {"hard": mc_runs[method, "hard"], "rand": mc_runs[method, "rand"]}
    cfg = json.loads((out["hard"] / "config.json").read_text())["method"]
    assert cfg["candidates"]["rule"] == "hard" and cfg["candidates"]["method"] == "zeroshot"
    assert "candidates" not in json.loads((out["rand"] / "config.json").read_text())["method"]
    differ = 0
    for hard, rand in zip(_records(out["hard"]), _records(out["rand"])):
        row = clip_scores[clip_ids.index(hard["id"])].copy()
        row[hard["label"]] = -np.inf
        expected = {hard["label"], *np.argsort(-row, kind="stable")[:2].tolist()}
        assert set(hard["candidates"]) == expected and len(hard["candidates"]) == 3
        assert hard["label"] in rand["candidates"] and len(rand["candidates"]) == 3
        differ += set(rand["candidates"]) != expected
    assert differ > LIMIT // 3
    capsys.readouterr()
    assert main(["compare", str(out["hard"]), str(out["rand"]), "--paired"]) == 0
    assert "McNemar exact p" in capsys.readouterr().out


def test_hard_candidates_refusals(runs, capsys):
    base = ["eval", "--model", "toy:vlm", "--data", "toy:digits:test", "--limit", "4", "--no-progress",
            "--method", "likelihood"]
    assert main([*base, "--candidates", f"hard:{runs / 'clip'}", "--out", str(runs / "x1")]) != 0
    assert "--candidates hard:CLIP_RUN picks the distractors of --num-candidates N" in capsys.readouterr().err
    assert main([*base, "--num-candidates", "3", "--candidates", "hard:", "--out", str(runs / "x2")]) != 0
    assert "expected random or hard:CLIP_RUN" in capsys.readouterr().err
    assert main([*base, "--num-candidates", "3", "--candidates", f"hard:{runs / 'gen'}", "--out", str(runs / "x3")]) != 0
    assert "the run has no scores.npy" in capsys.readouterr().err


# ------------------------------------------------------------------ (3) multi-label truth

def test_label_sets_file_gives_single_and_multi_label_top1_side_by_side(runs, tmp_path, capsys):
    """Each test digit's set = {its class, the next digit} (every third sample: an empty set,
    excluded and counted; one id absent: unmatched). Single, multi (prediction in the set) and,
    for generation, any-named (an answer naming any class of the set) recomputed here."""
    from statsmodels.stats.proportion import proportion_confint

    names = json.loads((runs / "gen" / "config.json").read_text())["data"]["classnames"]
    recs = _records(runs / "gen")
    sets = {}
    with open(tmp_path / "sets.jsonl", "w") as f:
        for i, r in enumerate(recs[:-1]):
            labels = [] if i % 3 == 2 else [names[r["label"]], (r["label"] + 1) % 10]  # names or indices
            sets[r["id"]] = [names.index(x) if isinstance(x, str) else x for x in labels]
            f.write(json.dumps({"id": r["id"], "labels": labels}) + "\n")
    for run in ("gen", "clip"):
        assert main(["metrics", str(runs / run), "--label-sets", str(tmp_path / "sets.jsonl"), "--no-plots"]) == 0
        assert "multi-label truth" in capsys.readouterr().out
        m = _results(runs / run)["multi_label"]
        rr = [r for r in _records(runs / run) if sets.get(r["id"])]
        assert m["n"] == len(rr) and m["n_unmatched"] == 1 and m["n_excluded_no_label"] == (LIMIT - 1) // 3
        single = sum(r["prediction"] == r["label"] for r in rr)
        multi = sum(r["prediction"] in sets[r["id"]] for r in rr)
        assert (m["single"]["count"], m["multi"]["count"]) == (single, multi) and multi >= single
        assert m["multi"]["ci95"] == pytest.approx(list(proportion_confint(multi, len(rr), method="beta")))
        rows = [json.loads(x) for x in (runs / run / "multi_label.jsonl").read_text().splitlines()]
        assert len(rows) == m["n"]
        if run == "gen":
            named = sum(any(c in sets[r["id"]] for c in r["matches"]) for r in rr)
            assert m["multi_any_named"]["count"] == named >= multi
        else:
            assert "multi_any_named" not in m


def test_real_label_sets_match_the_imagenet_x_file(tmp_path, capsys):
    """--label-sets real on a run over ImageNet val file names with the ImageNet class list: the
    multi-label top-1 equals the fraction of predictions in the imagenet-x package's ReaL sets."""
    pytest.importorskip("imagenet_x")
    import importlib.resources

    from vlmprobe.data.imagenet_classes import imagenet_names

    real = json.loads((importlib.resources.files("imagenet_x") / "annotations" / "imagenet_real_labels.jsonl")
                      .read_text())
    names = list(imagenet_names())
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"classnames": names}}))
    rng = np.random.default_rng(0)
    expect_multi = expect_single = n = 0
    with open(run / "samples.jsonl", "w") as f:
        for i in range(200):
            s = real[i]
            label = s[0] if s else int(rng.integers(1000))
            pred = int(rng.choice(s)) if s and i % 2 else int(rng.integers(1000))
            f.write(json.dumps({"id": f"v{i}", "image": f"/x/ILSVRC2012_val_{i + 1:08d}.JPEG", "label": label,
                                "prediction": pred}) + "\n")
            if s:
                n += 1
                expect_multi += pred in s
                expect_single += pred == label
    assert main(["metrics", str(run), "--label-sets", "real", "--no-plots"]) == 0
    m = _results(run)["multi_label"]
    assert (m["n"], m["multi"]["count"], m["single"]["count"]) == (n, expect_multi, expect_single)
    assert m["n_excluded_no_label"] == 200 - n
    capsys.readouterr()


# ------------------------------------------------------------------ (4) order and batch audit

def test_audit_likelihood_and_closed_world_generation(runs, mc_runs, capsys):
    """The exact likelihood engine on a deterministic model: zero flips under batch size 1, a
    shuffled order and permuted candidates (score differences at float level). Closed-world
    generation lists the candidates in the question, so their order may change answers: every
    reported flip is a sample whose prediction in the knob's run differs from the run's."""
    lik, gen = mc_runs["likelihood", "rand"], mc_runs["generate", "rand"]
    assert main(["audit", str(lik), "--n", "12", "--out", str(runs / "audit-lik"), "--no-progress"]) == 0
    a = json.loads((runs / "audit-lik" / "audit.json").read_text())
    assert a["total_flips"] == 0 and set(a["knobs"]) == {"batch1", "order", "candidates"}
    for knob in a["knobs"].values():
        assert knob["applicable"] and knob["n"] == 12 and knob["max_abs_score_diff"] < 1e-4
    assert a["knobs"]["batch1"]["batch_size"] == 1
    orig = {r["id"]: r for r in _records(lik)}
    perm = _records(runs / "audit-lik" / "candidates")
    assert all(sorted(r["candidates"]) == sorted(orig[r["id"]]["candidates"]) for r in perm)
    assert any(r["candidates"] != orig[r["id"]]["candidates"] for r in perm)
    order = [r["id"] for r in _records(runs / "audit-lik" / "order")]
    assert order != sorted(order, key=list(orig).index)  # the order knob really shuffled
    assert main(["audit", str(gen), "--n", "12", "--out", str(runs / "audit-gen"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    g = json.loads((runs / "audit-gen" / "audit.json").read_text())
    orig = {r["id"]: r for r in _records(gen)}
    for knob in ("batch1", "order", "candidates"):
        new = _records(runs / "audit-gen" / knob)
        flipped = {r["id"] for r in new if r["prediction"] != orig[r["id"]]["prediction"]}
        assert {f["id"] for f in g["knobs"][knob]["flips"]} == flipped
        assert g["knobs"][knob]["responses_changed"] == sum(r["response"] != orig[r["id"]]["response"] for r in new)
    assert g["knobs"]["batch1"]["num_flips"] == 0 and g["knobs"]["order"]["num_flips"] == 0
    assert "predictions flipped" in printed


def test_audit_refuses_open_world_candidate_knob_and_other_methods(runs, capsys):
    assert main(["audit", str(runs / "gen"), "--n", "4", "--knobs", "candidates", "--out", str(runs / "ag"),
                 "--no-progress"]) == 0
    assert "candidates: not applicable (open-world generation lists no candidates)" in capsys.readouterr().out
    assert main(["audit", str(runs / "clip"), "--n", "4", "--out", str(runs / "ac"), "--no-progress"]) != 0
    assert "vlmprobe audit re-runs generate and likelihood runs" in capsys.readouterr().err


# ------------------------------------------------------------------ (6) ImageWikiQA builder

ARTICLES = {"zero": "Zero is the additive identity of the integers. Any number times zero equals zero.",
            "one": "One is the multiplicative identity of the integers. One is the first positive integer.",
            "eight": "Eight is an even number of course. Eight is equal to two cubed exactly."}


class ScriptedLM:
    """A text-only LM behind the test API server that writes every fact as a question (the fact is
    the right option), answers right when the class name is stated, and without it answers only
    questions on facts mentioning "even" (so the filter drops those); one class gets a malformed
    question (no 'Answer:' line)."""

    spec = "scripted"

    class _Tok:
        def __call__(self, text, add_special_tokens=True):
            from types import SimpleNamespace

            return SimpleNamespace(input_ids=text.split())

    tokenizer = _Tok()

    def render(self, text, image=False, answer_prefix=None):
        return text

    def generate(self, images, prompts, max_new_tokens=64):
        out = []
        for p in prompts:
            if p.startswith("Fact about "):
                cls, fact = p[len("Fact about "):].split(": ", 1)
                fact = fact.split("\n", 1)[0]
                ans = "" if cls == "one" and "first" in fact else "\nAnswer: A"
                out.append(f"Question: Which is true of the {cls} shown?\nA. {fact}\nB. It is a letter.\n"
                           f"C. It is a colour.\nD. It is a sound.{ans}")
                continue
            named = p.startswith("This object is:")
            lines = p.splitlines()
            opts = {ln[0]: ln[3:] for ln in lines if len(ln) > 3 and ln[1:3] == ". " and ln[0] in "ABCD"}
            right = next(k for k, v in opts.items() if not v.startswith("It is a"))
            out.append(f"The answer is {right}." if named or "even" in opts[right] else "I cannot tell.")
        return out


def test_wikiqa_build_with_the_api_server_keeps_what_the_filter_keeps(toy_world, tmp_path, capsys, monkeypatch):
    """`vlmprobe wikiqa build` over the test API server: every fact becomes a record with the
    reason it was dropped; kept = right with the class name and wrong without it; the output is
    the same for the same seed, and loads and runs in `vlmprobe wikiqa`."""
    from vlmprobe.testing.api_server import ApiTestServer
    from vlmprobe.wikiqa import load_questions

    arts = tmp_path / "a.jsonl"
    arts.write_text("".join(json.dumps({"classname": c, "text": t}) + "\n" for c, t in ARTICLES.items()))
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(list(ARTICLES)))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-p33")
    with ApiTestServer(ScriptedLM(), model_name="scripted") as server:
        lm = f"openai:scripted@{server.base_url}"
        outs = []
        for k in range(2):
            q = tmp_path / f"q{k}.jsonl"
            assert main(["wikiqa", "build", "--classes", str(classes), "--articles", str(arts), "--lm", lm,
                         "--data", "toy:digits:test", "--seed", "3", "--out", str(q), "--no-progress",
                         "--api-timeout", "30"]) == 0
            outs.append(q.read_text())
    printed = capsys.readouterr().out
    assert outs[0] == outs[1] and "wikiqa build: 4 of 6 questions kept" in printed, printed
    recs = _records(tmp_path / "q0.jsonl.build")
    reasons = {r["wiki"]: r.get("dropped") for r in recs}
    assert reasons["One is the first positive integer."].startswith("unparseable")
    assert reasons["Eight is an even number of course."] == "answerable without the class name"
    rows = [json.loads(x) for x in outs[0].splitlines()]
    assert {r["wiki"] for r in rows} == {w for w, why in reasons.items() if why is None}
    for r in rows:
        assert "the object in this photo" not in r["text"] or r["classname"] not in r["text"].split("\n")[0]
        letter = r["label"]
        line = next(ln for ln in r["text"].splitlines() if ln.startswith(f"{letter}. "))
        assert line[3:] == r["wiki"] and r["image"].endswith(".png") and f"/{r['classname']}/" in r["image"]
    assert len({r["label"] for r in rows}) >= 2  # options permuted per question (seeded)
    qs = load_questions(tmp_path / "q0.jsonl", "/")
    assert len(qs) == 4 and not qs.missing
    assert main(["wikiqa", "--model", "toy:vlm", "--data", str(tmp_path / "q0.jsonl"), "--images", "/",
                 "--method", "likelihood", "--out", str(tmp_path / "qa"), "--no-progress"]) == 0


def test_wikiqa_build_with_the_tiny_lm_is_deterministic(tiny_models, tmp_path, capsys):
    """A tiny random-weight LLaVA writes nothing parseable: every fact is recorded as dropped
    (counted by reason), the run directory resumes to the same file, and bad input is one line."""
    arts = tmp_path / "a.jsonl"
    arts.write_text("".join(json.dumps({"classname": c, "text": t}) + "\n" for c, t in ARTICLES.items()))
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(list(ARTICLES)))
    args = ["wikiqa", "build", "--classes", str(classes), "--articles", str(arts), "--lm", str(tiny_models["llava"]),
            "--per-class", "1", "--out", str(tmp_path / "q.jsonl"), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    recs = _records(tmp_path / "q.jsonl.build")
    assert len(recs) == 3 and all("dropped" in r and r["written"] is not None for r in recs)
    assert f"{sum(r['kept'] for r in recs)} of 3 questions kept" in out
    assert main(args) == 0 and _records(tmp_path / "q.jsonl.build") == recs
    arts.write_text(json.dumps({"classname": "seven", "text": "x"}) + "\n")
    assert main(args) != 0
    assert "class 'seven' is not in --classes" in capsys.readouterr().err


def test_effective_robustness_interval_agrees_with_the_delta_method():
    """With a fixed baseline line, Var(ER) ~ p_s(1-p_s)/n_s + (d pred / d p_id)^2 p_i(1-p_i)/n_i
    (delta method on the logit line): the bootstrap interval's width is within 15% of the
    normal interval's, and it contains the point estimate."""
    from vlmprobe.metrics.intervals import effective_robustness_intervals
    from vlmprobe.metrics.robustness import effective_robustness

    base_id, base_shift = [0.5, 0.6, 0.7, 0.8], [0.3, 0.4, 0.52, 0.65]
    id_k, id_n, sk, sn = [700], [1000], [600], [1000]
    iv = effective_robustness_intervals(id_k, id_n, sk, sn, base_id, base_shift, resamples=20000)[0]
    er = effective_robustness([0.7], [0.6], base_id, base_shift)
    slope, pred = er["slope"], er["predicted"][0]
    dpred = slope * pred * (1 - pred) / (0.7 * 0.3)  # d/dp of sigmoid(slope * logit(p) + b)
    sd = np.sqrt(0.6 * 0.4 / 1000 + dpred ** 2 * 0.7 * 0.3 / 1000)
    assert iv["high"] - iv["low"] == pytest.approx(2 * 1.959964 * sd, rel=0.15)
    assert iv["low"] < er["er"][0] < iv["high"]


def test_vectorised_clopper_pearson_and_ece_interval_inputs_match_the_references():
    from vlmprobe.metrics.calibration import expected_calibration_error, softmax
    from vlmprobe.metrics.intervals import _ece_interval, proportions
    from vlmprobe.metrics.robustness import clopper_pearson

    k, n = np.array([0, 1, 5, 9, 10, 0]), np.array([10, 10, 10, 10, 10, 0])
    lo, hi = proportions(k, n)
    for i in range(5):
        assert (lo[i], hi[i]) == pytest.approx(clopper_pearson(int(k[i]), int(n[i])), abs=1e-12)
    assert np.isnan(lo[5]) and np.isnan(hi[5])
    rng = np.random.default_rng(0)
    s = rng.normal(size=(300, 7)).astype(np.float32)
    y = rng.integers(0, 7, 300)
    iv = _ece_interval(s, y, 0.95, 1, 0, 15, "right")  # one resample: compare it with the reference ECE on it
    idx = np.random.default_rng(0).integers(0, 300, 300)
    assert iv["low"] == pytest.approx(expected_calibration_error(softmax(s[idx]), y[idx]), abs=1e-6)


def test_report_er_intervals_use_the_shift_sections_baseline_line():
    """With a testbed reference ({fit: true}) the intervals section's ER equals the distribution-shift
    section's (same baseline line) and its interval contains it; without a baseline no ER row."""
    from pathlib import Path

    from vlmprobe.study.protocols import _er_rows
    from vlmprobe.study.report import Doc, shift_section

    data_csv = Path(__file__).parent / "data" / "imagenet_testbed_rows.csv"
    ref = {"files": [str(data_csv)], "datasets": {"sketch": "imagenet-sketch"}, "fit": True}
    rows = [{"run": f"runs/{m}", "model": m, "method": "CLIP zero-shot", "dataset": "val", "shift_dataset": "sketch",
             "id_accuracy": i, "id_ci95": [i - 0.05, i + 0.05], "id_n": 400, "shift_accuracy": s,
             "shift_ci95": [s - 0.05, s + 0.05], "shift_n": 400, "protocol": "top1", "id_subset_classes": None}
            for m, i, s in (("a", 0.70, 0.30), ("b", 0.85, 0.45))]
    doc = Doc(Path("."))
    shift_section(doc, {"shift": [dict(r) for r in rows], "reference": ref})
    md = "\n".join(doc.md)
    ours = _er_rows({"shift": rows, "reference": ref})
    assert len(ours) == 2
    for row in ours:
        text = row[4][0]
        er = float(text.split(" [")[0])
        lo, hi = (float(x) for x in text.split(" [")[1].rstrip("]").split(", "))
        assert lo <= er <= hi and f"{er:+.1f}" in md
    assert _er_rows({"shift": rows, "reference": None}) == []
