"""ImageWikiQA: loader (real file + malformed rows + image resolution), answer parser, generation
and likelihood scoring end to end on the tiny LLaVA, baselines, classification split, resume."""
import json
import os

import numpy as np
import pytest

from vlmprobe.errors import DataError, VlmprobeError
from vlmprobe.wikiqa import Condition, load_questions, parse_answer, parse_options
from vlmprobe.wikiqa.loader import LETTERS

CLASSES = ["goldfish", "tench", "stretcher"]


# ------------------------------------------------------------------------------- fixtures
def _write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _question_text(stem, options):
    return stem + "\n" + "\n".join(f"{x}. {o}" for x, o in zip(LETTERS, options)) + "\nChoose A, B, C, or D."


@pytest.fixture(scope="module")
def qa_world(tmp_path_factory):
    """7 questions over 6 JPEGs stored ImageNet-style (class sub-folders, released paths say
    ``images/NAME``), the last question's image missing."""
    from PIL import Image

    root = tmp_path_factory.mktemp("wikiqa")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        cls = CLASSES[i % 3]
        (root / "val" / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "val" / cls / name, "JPEG")
        options = [f"the {w} kind of {cls}" for w in ("red", "blue", "green", "small")]
        rows.append({"image": f"images/{name}", "text": _question_text(f"What is true of this object ({i})?", options),
                     "label": LETTERS[i % 4], "wiki": "", "classname": cls})
    rows.append({**rows[0], "image": "images/ILSVRC2012_val_00000099.JPEG", "label": "B"})
    data = _write_rows(root / "qa.jsonl", rows)
    return {"data": data, "images": root / "val", "root": root, "rows": rows}


def _cli(*argv):
    from vlmprobe.cli import main

    return main(["wikiqa", "--no-progress", *map(str, argv)])


def _records(out):
    with open(out / "samples.jsonl") as f:
        return [json.loads(line) for line in f]


# --------------------------------------------------------------------------- real file
def test_reference_file_every_row_parses(reference_dir):
    qset = load_questions(reference_dir / "imagewikiqa.jsonl")
    assert len(qset) == 2000
    assert len({q.id for q in qset.questions}) == 2000
    for q in qset.questions:
        assert len(q.options) == 4 and all(q.options) and 0 <= q.label <= 3 and q.classname
        # the four options and the stem are exactly what the released text holds
        assert _question_text(q.stem, q.options) == q.text
    imagenet = set(json.loads((reference_dir / "imagenet_classes.json").read_text()))
    assert {q.classname for q in qset.questions} <= imagenet


def test_parser_finds_every_option_of_the_real_file(reference_dir):
    """Letters, letter forms and option texts (34 option pairs contain one another) of every row."""
    qset = load_questions(reference_dir / "imagewikiqa.jsonl")
    for q in qset.questions:
        for k, (x, opt) in enumerate(zip(LETTERS, q.options)):
            for response in (f"({x.lower()})", f"The answer is {x}.", f"{x}. {opt}", opt, f"I think it is {opt}."):
                assert parse_answer(response, q.options).index == k, (q.id, response)


# ----------------------------------------------------------------------------- loader
@pytest.mark.parametrize("row, message", [
    ("{not json", "not valid JSON"),
    ({"image": "a.jpg", "text": _question_text("Q?", list("wxyz")), "label": "E", "classname": "c"}, "'label'"),
    ({"image": "a.jpg", "text": _question_text("Q?", list("wxyz")), "label": "A"}, "'classname'"),
    ({"image": "a.jpg", "text": "Q?\nA. w\nB. x\nC. y\nChoose A, B, or C.", "label": "A", "classname": "c"},
     "found letters: ABC"),
    ({"image": "a.jpg", "text": "Q?\nA. w\nC. x\nB. y\nD. z", "label": "A", "classname": "c"}, "'text'"),
    ({"image": "a.jpg", "text": _question_text("Q?", ["w", "x", "w", "z"]), "label": "A", "classname": "c"},
     "same text"),
])
def test_malformed_row_names_file_and_line(tmp_path, row, message):
    good = {"image": "a.jpg", "text": _question_text("Q?", list("wxyz")), "label": "A", "classname": "c"}
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + (row if isinstance(row, str) else json.dumps(row)) + "\n")
    with pytest.raises(DataError) as e:
        load_questions(path)
    assert f"{path}:3" in str(e.value) and message in str(e.value)


def test_parse_options_stem_and_trailing_instruction():
    stem, options = parse_options("Which one?\nSecond line.\nA) one\nB) two\nC) three\nD) four\nChoose A, B, C, or D.")
    assert stem == "Which one?\nSecond line." and options == ["one", "two", "three", "four"]


def test_images_resolved_relative_then_by_file_name(qa_world, tmp_path):
    # ROOT/<image> as released
    (tmp_path / "images").mkdir()
    src = qa_world["images"] / "goldfish" / "ILSVRC2012_val_00000001.JPEG"
    (tmp_path / "images" / src.name).write_bytes(src.read_bytes())
    qset = load_questions(qa_world["data"], tmp_path)
    assert qset.questions[0].image_path == str(tmp_path / "images" / src.name)
    assert len(qset.missing) == 6
    # a flat folder of file names (ImageNet val as distributed)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / src.name).write_bytes(src.read_bytes())
    assert load_questions(qa_world["data"], flat).questions[0].image_path == str(flat / src.name)
    # an ImageNet val folder with class sub-folders: found by file name, the missing one reported
    qset = load_questions(qa_world["data"], qa_world["images"])
    assert [q.id for q in qset.missing] == ["L7"]
    assert all(os.path.isfile(q.image_path) for q in qset.questions[:6])
    assert qset.questions[1].image_path.endswith(os.path.join("tench", "ILSVRC2012_val_00000002.JPEG"))
    # the same file name twice under ROOT is refused (cannot tell which one is meant)
    dup = qa_world["root"] / "dup"
    for sub in ("x", "y"):
        (dup / sub).mkdir(parents=True)
        (dup / sub / src.name).write_bytes(src.read_bytes())
    with pytest.raises(DataError, match="several files are named"):
        load_questions(qa_world["data"], dup)


def test_limit_is_a_seeded_subset_in_file_order(reference_dir):
    a = load_questions(reference_dir / "imagewikiqa.jsonl", limit=50, seed=3)
    b = load_questions(reference_dir / "imagewikiqa.jsonl", limit=50, seed=3)
    lines = [q.line for q in a.questions]
    assert lines == [q.line for q in b.questions] and lines == sorted(lines) and len(set(lines)) == 50


# ----------------------------------------------------------------------------- parser
OPTIONS = ["Fowler's position", "Upright position", "Trendelenburg position", "Flat position"]


@pytest.mark.parametrize("response, letter", [
    ("C", "C"), ("(C)", "C"), ("C.", "C"), ("c", "C"), ("(c)", "C"), ("c) trendelenburg", "C"), ("**B**", "B"),
    ("Answer: C", "C"), ("answer: d", "D"), ("The answer is C.", "C"),
    ("The correct answer is (D) Flat position.", "D"),
    ("I choose d.", "D"), ("Option b", "B"), ("A is correct.", "A"),
    # option text only, any case; a shorter option inside a longer one does not count
    ("Trendelenburg position", "C"), ("trendelenburg position", "C"), ("The answer is a Trendelenburg position.", "C"),
    # two letters mentioned: the last unambiguous one, explicit answer statements first
    ("I think B. Actually, the answer is D.", "D"), ("The answer is C, not A.", "C"),
    ("C is wrong; the answer is B.", "B"), ("The answer is C because A is for breathing.", "C"),
    ("Fowler's position is for breathing; Trendelenburg position is for shock.", "C"),
    ("Let's think. Fowler's position helps breathing. Trendelenburg position treats shock. So the answer is C.", "C"),
    # no usable answer: never a guess
    ("", None), ("   ", None), ("None of the above.", None), ("A dog on a stretcher.", None),
    ("B or C", None), ("Both A and C", None), ("A, B, C, or D", None), ("The answer is A or B", None),
    ("Not A.", None), ("Upright", None),
    ("A. Fowler's position\nB. Upright position\nC. Trendelenburg position\nD. Flat position", None),
])
def test_parse_answer(response, letter):
    parsed = parse_answer(response, OPTIONS)
    assert parsed.letter == letter, parsed
    assert (parsed.rule in ("cue", "letter", "text")) == (letter is not None)


def test_parse_answer_option_that_contains_another():
    opts = ["Black with white markings", "Solid red", "Red with white markings", "White with black markings"]
    assert parse_answer("Red with white markings", opts).letter == "C"
    assert parse_answer("Solid red", opts).letter == "B"
    assert parse_answer("none of the above", opts).letter is None
    assert parse_answer("None of the above", ["Cats", "Dogs", "Both", "None of the above"]).letter == "D"


def test_conditions_build_the_prompts(qa_world):
    q = load_questions(qa_world["data"]).questions[0]
    assert Condition().question(q) == q.text
    oracle = Condition(image=False, oracle_class=True, cot=True)
    text = oracle.question(q)
    assert text.startswith("This object is: goldfish.\n") and text.endswith("Let's think step by step.")
    assert oracle.name == "oracle_class+no_image+cot" and oracle.max_new_tokens == 512
    assert Condition().max_new_tokens == 64


# --------------------------------------------------------------------- end to end (tiny)
@pytest.fixture(scope="module")
def llava(tiny_models):
    return f"hf:{tiny_models['llava']}"


@pytest.fixture(scope="module")
def generate_run(qa_world, llava, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "run"
    assert _cli("--model", llava, "--data", qa_world["data"], "--images", qa_world["images"], "--method", "generate",
                "--max-new-tokens", 8, "--batch-size", 3, "--out", out) == 0
    return out


def test_generate_end_to_end(generate_run, qa_world):
    out = generate_run
    recs = _records(out)
    assert [r["id"] for r in recs] == [f"L{i}" for i in range(1, 8)]
    questions = load_questions(qa_world["data"]).questions
    for r, q in zip(recs[:6], questions):
        parsed = parse_answer(r["response"], q.options)  # what is stored is what the parser says
        assert (r["parsed"], r["parse_rule"], r["prediction"]) == (parsed.letter, parsed.rule, parsed.index)
        assert r["correct"] == (parsed.index == q.label) and not r.get("skipped")
    assert recs[6]["skipped"] and "ILSVRC2012_val_00000099.JPEG" in recs[6]["error"]
    res = json.loads((out / "results.json").read_text())
    n_ok = sum(r["correct"] for r in recs)
    assert res["num_questions"] == 7 and res["num_scored"] == 6 and res["num_skipped"] == 1
    assert res["accuracy"] == pytest.approx(n_ok / 6) and res["chance"] == 0.25
    assert res["unparseable_rate"] == pytest.approx(sum(r["prediction"] is None for r in recs[:6]) / 6)
    assert set(res["per_class_accuracy"]) == set(CLASSES)
    assert res["skipped"][0]["id"] == "L7"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"]["max_new_tokens"] == 8 and cfg["condition"]["name"] == "image"
    assert cfg["environment"]["versions"]["transformers"] and cfg["seed"] == 0
    assert not (out / "scores.npy").exists()
    assert json.loads((out / "timing.json").read_text())["questions_computed"] == 7


def test_generate_is_deterministic(generate_run, qa_world, llava, tmp_path):
    out = tmp_path / "again"
    assert _cli("--model", llava, "--data", qa_world["data"], "--images", qa_world["images"], "--method", "generate",
                "--max-new-tokens", 8, "--batch-size", 2, "--out", out) == 0
    assert _records(out) == _records(generate_run)  # also batch-size invariant


@pytest.fixture(scope="module")
def likelihood_run(qa_world, llava, tmp_path_factory):
    out = tmp_path_factory.mktemp("lik") / "run"
    assert _cli("--model", llava, "--data", qa_world["data"], "--images", qa_world["images"], "--method", "likelihood",
                "--batch-size", 3, "--out", out) == 0
    return out


def test_likelihood_end_to_end_matches_a_plain_forward(likelihood_run, qa_world, llava):
    import torch

    from vlmprobe.data import read_image
    from vlmprobe.models import load_model

    out = likelihood_run
    recs, scores = _records(out), np.load(out / "scores.npy")
    assert scores.shape == (7, 4) and np.isnan(scores[6]).all() and np.isfinite(scores[:6]).all()
    for r, row in zip(recs[:6], scores):
        assert r["prediction"] == int(np.argmax(row)) and r["parsed"] == LETTERS[r["prediction"]]
        assert np.allclose(r["logprob_letter"], row, atol=1e-5)
        assert r["predictions"]["text_sum"] == LETTERS[int(np.argmax(r["logprob_text_sum"]))]
    res = json.loads((out / "results.json").read_text())
    assert res["unparseable_rate"] == 0 and set(res["accuracy_by_target"]) == {"letter", "text_sum", "text_mean"}
    assert res["accuracy"] == pytest.approx(res["accuracy_by_target"]["letter"])

    # independent check of question 2: log p(" B" | image, prompt + "The answer is") and the
    # option text's per-token mean, from one plain forward each
    model = load_model(llava)
    q = load_questions(qa_world["data"], qa_world["images"]).questions[1]
    image = read_image(q.image_path)
    prefix = model.render(q.text, image=True, answer_prefix="The answer is")

    def plain(cont):
        """Sum and count of the log-probs of the tokens of prefix + " " + cont after the longest
        common prefix with the prefix's own tokens (the engine's token definition)."""
        p_ids = model.encode([image], [prefix])["input_ids"][0].tolist()
        batch = model.encode([image], [prefix + " " + cont])
        ids = batch["input_ids"][0].tolist()
        n = 0
        while n < len(p_ids) and p_ids[n] == ids[n]:
            n += 1
        with torch.no_grad():
            lp = model.model(**batch).logits[0].float().log_softmax(-1)
        toks = [float(lp[t - 1, ids[t]]) for t in range(n, len(ids))]
        return sum(toks), len(toks)

    assert plain("B")[0] == pytest.approx(recs[1]["logprob_letter"][1], abs=1e-4)
    s, m = plain(q.options[2])
    assert s == pytest.approx(recs[1]["logprob_text_sum"][2], abs=1e-4)
    assert s / m == pytest.approx(recs[1]["logprob_text_mean"][2], abs=1e-4)


def test_likelihood_resumes_after_a_kill(likelihood_run, qa_world, llava, tmp_path, monkeypatch):
    from vlmprobe.wikiqa.likelihood import LikelihoodScorer

    out = tmp_path / "killed"
    real = LikelihoodScorer.run_batch
    calls = []

    def dies_on_second_batch(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(LikelihoodScorer, "run_batch", dies_on_second_batch)
    args = ["--model", llava, "--data", qa_world["data"], "--images", qa_world["images"], "--method", "likelihood",
            "--batch-size", 3, "--out", out]
    assert _cli(*args) == 130
    assert len(_records(out)) == 3
    with open(out / "samples.jsonl", "a") as f:
        f.write('{"id": "L4", "half')  # a record cut off by the kill
    monkeypatch.setattr(LikelihoodScorer, "run_batch", real)
    assert _cli(*args) == 0
    assert _records(out) == _records(likelihood_run)
    np.testing.assert_array_equal(np.load(out / "scores.npy"), np.load(likelihood_run / "scores.npy"))
    assert _cli(*args) == 0 and len(_records(out)) == 7  # a finished run is not redone or duplicated
    assert _cli(*args[:-2], "--select", "text_mean", "--out", out) == 2  # different config: refused


def test_baselines_oracle_no_image_and_split(qa_world, llava, generate_run, tmp_path):
    # a classification run of the same images: 3 right, 2 wrong, 1 skipped (eval's record format)
    cls_run = tmp_path / "cls"
    cls_run.mkdir()
    (cls_run / "config.json").write_text(json.dumps({"model": {"spec": llava}, "method": {"name": "likelihood"}}))
    outcomes = ["right", "wrong", "right", "wrong", "right", "skipped"]
    with open(cls_run / "samples.jsonl", "w") as f:
        for i, o in enumerate(outcomes):
            cls = CLASSES[i % 3]
            f.write(json.dumps({"id": str(i), "image": f"/elsewhere/{cls}/ILSVRC2012_val_{i + 1:08d}.JPEG",
                                "label_name": cls, "prediction_name": None if o == "skipped" else
                                (cls if o == "right" else "other"), "skipped": o == "skipped"}) + "\n")
    out = tmp_path / "oracle"
    # no image: --images is not needed and no question is skipped
    assert _cli("--model", llava, "--data", qa_world["data"], "--method", "generate", "--oracle-class", "--no-image",
                "--max-new-tokens", 4, "--classification-run", cls_run, "--out", out) == 0
    recs = _records(out)
    res = json.loads((out / "results.json").read_text())
    assert res["condition"] == "oracle_class+no_image" and res["num_skipped"] == 0 and len(recs) == 7
    split = res["split"]
    right = [recs[i] for i in (0, 2, 4)]  # L7's image is not in the classification run
    wrong = [recs[i] for i in (1, 3)]
    assert split["classified_correct"]["n"] == 3 and split["classified_wrong"]["n"] == 2
    assert split["classified_correct"]["accuracy"] == pytest.approx(np.mean([r["correct"] for r in right]))
    assert split["classified_wrong"]["accuracy"] == pytest.approx(np.mean([r["correct"] for r in wrong]))
    assert split["skipped_or_ambiguous_in_classification_run"] == 1 and split["not_in_classification_run"] == 1
    assert split["same_model"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["condition"]["oracle_class"] and not cfg["condition"]["image"]


def test_user_errors_are_one_line(qa_world, llava, tmp_path, capsys, tiny_models):
    base = ["--data", qa_world["data"], "--out", tmp_path / "x"]
    assert _cli("--model", llava, *base, "--method", "generate") == 2  # no --images, no --no-image
    assert _cli("--model", llava, *base, "--images", qa_world["images"], "--method", "likelihood", "--cot") == 2
    assert _cli("--model", f"openclip:local-dir:{tiny_models['openclip']}", *base, "--images", qa_world["images"],
                "--method", "generate") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("vlmprobe wikiqa: error:") for line in err)
    assert "--images" in err[0] and "--cot" in err[1] and "vision-language" in err[2]
    with pytest.raises(VlmprobeError):
        from vlmprobe.wikiqa import LikelihoodScorer

        LikelihoodScorer(Condition(), select="best")
