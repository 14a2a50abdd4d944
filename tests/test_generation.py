"""Direct generation: prompts, label-space sampling, answer matching, batched greedy decoding
(batch size 1 == 16) and the ``generate`` method end to end through the runner (+ resume)."""
import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlmprobe.classify import generation
from vlmprobe.classify.candidates import parse_num_candidates, sample_candidates
from vlmprobe.classify.matching import match_response
from vlmprobe.classify.prompts import PROMPTS, PromptError, get_prompt, load_prompt_file
from vlmprobe.errors import RunDirError, VlmprobeError

CLASSES = ["airplane", "cat", "dog", "lion", "sea lion", "tabby cat"]  # sorted, as ImageFolder gives them
SIZES = [(32, 32), (48, 32), (32, 64), (64, 64), (40, 96), (96, 40)]  # (h, w): AnyRes tiles differ


# ---------------------------------------------------------------- matching

@pytest.mark.parametrize("response, names, rule, prediction, matches, ambiguous", [
    # the paper's rule: case-insensitive substring, also inside longer words
    ("It is a CATERPILLAR.", ["cat", "dog"], "substring", 0, [0], False),
    ("It is a CATERPILLAR.", ["cat", "dog"], "word", None, [], False),
    ("two cats", ["cat"], "word", None, [], False),
    ("A Tabby Cat, sleeping", ["cat", "tabby cat"], "word", 1, [1, 0], False),  # "cat" only inside "tabby cat"
    ("a sea lion next to a lion", ["lion", "sea lion"], "substring", None, [1, 0], True),
    ("a sea lion next to a lion", ["lion", "sea lion"], "first", 1, [1, 0], True),
    ("a lion next to a sea lion", ["lion", "sea lion"], "first", 0, [0, 1], True),
    ("a lionfish", ["lion", "lionfish"], "substring", 1, [1, 0], False),  # same start: the longer name
    ("cat or dog?", ["dog", "cat"], "substring", None, [1, 0], True),
    ("cat or dog?", ["dog", "cat"], "first", 1, [1, 0], True),
    ("Missile!", ["missile", "missile", "cat"], "first", None, [0, 1], True),  # duplicate names tie
    ("Missile!", ["missile", "cat"], "word", 0, [0], False),
    ("Une crème brûlée.", ["crème brûlée", "crème"], "word", 0, [0, 1], False),
    ("brûléex", ["brûlée"], "word", None, [], False),  # unicode letters are word characters
    ("ÉCLAIR", ["éclair"], "word", 0, [0], False),
    ("a t-shirt.", ["t-shirt", "shirt"], "word", 0, [0, 1], False),
    ("I code in c++ daily", ["c++", "c"], "word", 0, [0, 1], False),  # metacharacters literal; "c" inside "c++"
    ("a jack-o'-lantern (lit)", ["jack-o'-lantern"], "word", 0, [0], False),
    ("", ["cat"], "substring", None, [], False),
    ("nothing here", ["cat", "dog"], "first", None, [], False),
])
def test_matching_rules(response, names, rule, prediction, matches, ambiguous):
    result = match_response(response, names, rule)
    assert (result.prediction, result.matches, result.ambiguous) == (prediction, matches, ambiguous)


def test_matching_substring_is_the_papers_criterion():
    """``matches`` holds exactly the names with ``name.lower() in response.lower()``."""
    names = ["cat", "Tabby Cat", "dog", "hot dog", "at", "bird"]
    for response in ["A tabby cat.", "hot dogs and CATS", "a BIRD", "", "what a sight"]:
        expected = {i for i, n in enumerate(names) if n.lower() in response.lower()}
        assert set(match_response(response, names, "substring").matches) == expected


def test_matching_unknown_rule():
    with pytest.raises(ValueError, match="unknown matching rule"):
        match_response("x", ["x"], "fuzzy")


# ---------------------------------------------------------------- label-space sampling

def test_candidates_contain_true_class_and_are_seeded():
    for n in (1, 2, 5, 20, 100):
        for label in (0, 57, 99):
            a = sample_candidates(label, 100, n, np.random.default_rng([3, label]))
            b = sample_candidates(label, 100, n, np.random.default_rng([3, label]))
            assert a == b and len(a) == n and len(set(a)) == n and label in a
            assert all(0 <= c < 100 for c in a)
    fixed = sample_candidates(4, 10, 5, np.random.default_rng(0), shuffle=False)
    assert fixed == sorted(fixed) and 4 in fixed
    assert sample_candidates(3, 6, None, np.random.default_rng(1), shuffle=False) == list(range(6))
    assert sorted(sample_candidates(3, 6, None, np.random.default_rng(1))) == list(range(6))
    rng = np.random.default_rng
    assert sample_candidates(3, 6, 6, rng(1)) == sample_candidates(3, 6, None, rng(1))


def test_candidates_are_uniform_over_others_and_positions():
    """Every other class gets drawn, and shuffling puts the true class at every position."""
    others, positions = np.zeros(10, int), np.zeros(3, int)
    for seed in range(600):
        cands = sample_candidates(2, 10, 3, np.random.default_rng(seed))
        others[[c for c in cands if c != 2]] += 1
        positions[cands.index(2)] += 1
    assert others[2] == 0 and (others[np.arange(10) != 2] > 100).all()  # expected 1200 / 9 = 133 each
    assert (positions > 150).all()  # expected 200 each


def test_candidates_errors():
    assert parse_num_candidates("all") is None and parse_num_candidates(None) is None
    assert parse_num_candidates("5") == 5
    for bad in ("0", "-2", "many", "2.5"):
        with pytest.raises(VlmprobeError, match="--num-candidates"):
            parse_num_candidates(bad)
    with pytest.raises(VlmprobeError, match="exceeds the dataset's 6 classes"):
        sample_candidates(0, 6, 7, np.random.default_rng(0))


# ---------------------------------------------------------------- prompts

def test_builtin_prompts():
    default = get_prompt("default")
    assert default.format() == "What type of object is in this photo?" and default.max_new_tokens == 64
    assert default.format(["tabby cat", "sea lion"]) == \
        'What type of object is in this photo? Choose one from "tabby cat, sea lion"'
    cot = get_prompt("default", cot=True)
    assert cot.format() == "What type of object is in this photo? Let's think step by step."
    assert cot.max_new_tokens == 512 and get_prompt("cot").format() == cot.format()
    assert cot.format(["a", "b"]).endswith('Choose one from "a, b" Let\'s think step by step.')
    for name in PROMPTS:  # every built-in renders in both worlds
        assert get_prompt(name).format(["x"]).count('"x"') == 1
    with pytest.raises(PromptError, match="neither a prompt name"):
        get_prompt("no-such-prompt")


def test_prompt_files(tmp_path):
    slot = tmp_path / "slot.txt"
    slot.write_text("Which of {classes} is shown? Answer {{briefly}}.\n", encoding="utf-8")
    t = get_prompt(str(slot))
    assert t.format(["cat", "dog"]) == "Which of cat, dog is shown? Answer {briefly}."
    assert t.to_config()["source"] == str(slot) and t.name == "slot"
    with pytest.raises(PromptError, match="open-world"):
        t.format(None)
    plain = tmp_path / "plain.txt"
    plain.write_text("Qu'est-ce que c'est ?", encoding="utf-8")
    assert get_prompt(str(plain)).format(["chat"]) == 'Qu\'est-ce que c\'est ? Choose one from "chat"'
    for text, why in [("", "empty"), ("   \n", "empty"), ("What is {thing}?", "unknown placeholder"),
                      ("Pick {classes", "malformed braces"), ("a } b", "malformed braces"),
                      ("{classes} or {classes}", "at most once"), ("{0} thing", "unknown placeholder")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(PromptError, match=why) as e:
            load_prompt_file(bad)
        assert str(bad) in str(e.value)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PromptError, match=f"{binary}: not UTF-8"):
        get_prompt(str(binary))


def test_method_option_errors(tmp_path):
    with pytest.raises(VlmprobeError, match="needs --closed-world"):
        generation.Method(num_candidates=5)
    slot = tmp_path / "p.txt"
    slot.write_text("Pick one of {classes}.")
    with pytest.raises(VlmprobeError, match="use it with --closed-world"):
        generation.Method(prompt=str(slot))
    with pytest.raises(VlmprobeError, match="--match"):
        generation.Method(match="fuzzy")
    with pytest.raises(VlmprobeError, match="--max-new-tokens"):
        generation.Method(max_new_tokens=0)


def test_cli_flags():
    parser = argparse.ArgumentParser()
    generation.add_arguments(parser.add_argument_group("generate"))
    m = generation.from_args(parser.parse_args([]))
    assert m.config() == {"prompt": get_prompt("default").to_config(), "closed_world": False, "max_new_tokens": 64,
                          "match": "substring", "greedy": True}
    m = generation.from_args(parser.parse_args(["--closed-world", "--num-candidates", "5", "--no-shuffle", "--cot",
                                                "--match", "first", "--prompt", "short"]))
    cfg = m.config()
    assert (cfg["num_candidates"], cfg["shuffle"], cfg["max_new_tokens"], cfg["match"]) == (5, False, 512, "first")
    assert cfg["prompt"]["name"] == "short" and cfg["prompt"]["cot"]
    assert generation.from_args(parser.parse_args(["--cot", "--max-new-tokens", "100"])).max_new_tokens == 100
    assert generation.from_args(parser.parse_args(["--closed-world", "--num-candidates", "all"])).num_candidates is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--closed-world", "--open-world"])


# ---------------------------------------------------------------- models and data

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """ImageFolder with CLASSES (nested names: lion / sea lion, cat / tabby cat), 2 images each,
    of different sizes (LLaVA-NeXT then gives each image a different number of image tokens)."""
    root = tmp_path_factory.mktemp("gen_images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir()
        for j in range(2):
            h, w = SIZES[(c + j) % len(SIZES)]
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name / f"{j}.png")
    return root


@pytest.fixture(scope="module")
def llava(tiny_models):
    from vlmprobe.models import load_model

    return load_model(f"hf:{tiny_models['llava']}")


@pytest.fixture(scope="module")
def llava_next(tiny_models):
    from vlmprobe.models import load_model

    return load_model(f"hf:{tiny_models['llava-next']}")


def _dataset(root):
    from vlmprobe.data import load_dataset

    ds = load_dataset(str(root))
    assert ds.classnames == CLASSES
    return ds


def test_questions_render_through_chat_template(llava, llava_next, image_folder):
    """The paper's LLaVA-1.5 prompt ``USER: <image>\\n{question} ASSISTANT:`` (and the NeXT/Mistral
    one) is what reaches the tokenizer, candidate list included."""
    from vlmprobe.classify.runner import rng_factory

    ds = _dataset(image_folder)
    method = generation.Method(closed_world=True, num_candidates=3)
    method.setup(llava, ds)
    questions, offered = method.questions(ds.samples[:4], rng_factory(0))
    for sample, q, cands in zip(ds.samples[:4], questions, offered):
        assert sample.label in cands and q == method.template.format([CLASSES[c] for c in cands])
        assert llava.render(q) == f"USER: <image>\n{q} ASSISTANT:"
        assert llava_next.render(q) == f"[INST] <image>\n{q} [/INST]"
    enc = llava.encode([ds.load_image(0)], [llava.render(questions[0])])
    image_id = llava.model.config.image_token_id
    assert int((enc["input_ids"] == image_id).sum()) == 16  # (32 / 8)^2 patches, CLS dropped
    text = llava.tokenizer.decode(enc["input_ids"][0][enc["input_ids"][0] != image_id], skip_special_tokens=True)
    assert questions[0] in text


@pytest.mark.parametrize("which", ["llava", "llava-next"])
def test_batch_invariance(which, llava, llava_next, image_folder):
    """Greedy answers at batch size 16 (left padding: prompts and image-token counts differ) equal
    answers at batch size 1."""
    from vlmprobe.classify.runner import rng_factory

    model = llava if which == "llava" else llava_next
    ds = _dataset(image_folder)
    idx = [i % len(ds) for i in range(16)] if which == "llava" else list(range(6))  # NeXT is slower
    samples, images = [ds.samples[i] for i in idx], [ds.load_image(i) for i in idx]
    method = generation.Method(closed_world=True, num_candidates=3, max_new_tokens=6)
    method.setup(model, ds)
    rng_for = rng_factory(1)
    questions, _ = method.questions(samples, rng_for)
    assert len({len(model.tokenizer(q)["input_ids"]) for q in questions}) > 1  # padding really happens
    batched, _ = method.run_batch(model, samples, images, rng_for)
    single = [method.run_batch(model, [s], [im], rng_for)[0][0] for s, im in zip(samples, images)]
    assert batched == single
    assert all(r["response"] for r in batched)


class _SayWords:
    """Forward hook on the LM head: the t-th generated token is words[t % len(words)] (a real
    model, steered); a forward over the whole prompt resets t."""

    def __init__(self, model, words):
        self.ids = [model.tokenizer.encode(" " + w, add_special_tokens=False) for w in words]
        assert all(len(i) == 1 for i in self.ids), self.ids
        self.ids = [i[0] for i in self.ids]
        self.step = 0
        self.handles = [model.model.get_output_embeddings().register_forward_hook(self),
                        model.model.get_input_embeddings().register_forward_pre_hook(self.reset)]

    def reset(self, module, inputs):
        if inputs[0].shape[1] > 1:  # the prompt's forward (decoding steps feed one token)
            self.step = 0

    def __call__(self, module, inputs, logits):
        bias = torch.zeros(logits.shape[-1], dtype=logits.dtype)
        bias[self.ids[self.step % len(self.ids)]] = 1e4
        self.step += 1
        return logits + bias

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def _records(out):
    return [json.loads(line) for line in (Path(out) / "samples.jsonl").read_text().splitlines()]


def test_end_to_end_matching_and_summary(llava, image_folder, tmp_path):
    """Through ``runner.evaluate``: an answer naming "lion" predicts lion (not "sea lion"); one
    naming "cat" and "dog" is ambiguous (no prediction by substring, cat by first mention); the
    unmatched/ambiguous rates and the paper's any-match accuracy reach results.json."""
    from vlmprobe.classify.runner import evaluate

    ds = _dataset(image_folder)
    with _SayWords(llava, ["lion"]):
        res = evaluate(llava, ds, generation.Method(max_new_tokens=3), tmp_path / "lion", batch_size=5, progress=False)
    recs = _records(tmp_path / "lion")
    assert [r["response"] for r in recs] == ["lion lion lion"] * 12
    assert all(r["prediction"] == 3 and r["prediction_name"] == "lion" and r["matches"] == [3] for r in recs)
    assert res["method_summary"]["unmatched_rate"] == 0 and res["method_summary"]["ambiguous_rate"] == 0
    assert res["method_summary"]["accuracy_any_match"] == pytest.approx(2 / 12)
    assert res["top1"] == pytest.approx(2 / 12)  # the shared metrics see the single predictions
    assert json.loads((tmp_path / "lion" / "results.json").read_text())["method_summary"] == res["method_summary"]

    for rule, prediction in [("substring", None), ("first", 1)]:
        with _SayWords(llava, ["cat", "dog"]):
            res = evaluate(llava, ds, generation.Method(max_new_tokens=4, match=rule), tmp_path / rule, batch_size=16,
                           progress=False)
        recs = _records(tmp_path / rule)
        assert all(r["response"] == "cat dog cat dog" and r["prediction"] == prediction for r in recs)
        assert all(r["matches"] == [1, 2] and r["ambiguous"] and r["prompt"] == get_prompt("default").format()
                   for r in recs)
        summary = res["method_summary"]
        assert summary["ambiguous_rate"] == 1 and summary["unmatched_rate"] == 0 and summary["match_rule"] == rule
        assert summary["no_prediction_rate"] == (1 if prediction is None else 0)
        assert summary["accuracy_any_match"] == pytest.approx(4 / 12)  # cat and dog images
        assert res["top1"] == pytest.approx(0 if prediction is None else 2 / 12)


def test_end_to_end_closed_world_resume(llava, image_folder, tmp_path):
    """A run interrupted after two batches and resumed at another batch size ends with the
    samples.jsonl of an uninterrupted run; another config into the same directory is refused."""
    from vlmprobe.classify.runner import evaluate

    ds = _dataset(image_folder)
    options = dict(closed_world=True, num_candidates=3, max_new_tokens=5)
    evaluate(llava, ds, generation.Method(**options), tmp_path / "full", batch_size=12, seed=7, progress=False)
    full = _records(tmp_path / "full")
    assert len(full) == 12
    for r in full:
        assert r["label"] in r["candidates"] and len(set(r["candidates"])) == 3
        assert r["prompt"].endswith(' Choose one from "' + ", ".join(CLASSES[c] for c in r["candidates"]) + '"')
        assert set(r["matches"]) <= set(r["candidates"])
    assert len({tuple(r["candidates"]) for r in full}) > 3  # drawn per image

    class Interrupted(generation.Method):
        calls = 0

        def run_batch(self, *args):
            Interrupted.calls += 1
            if Interrupted.calls > 2:
                raise KeyboardInterrupt
            return super().run_batch(*args)

    with pytest.raises(KeyboardInterrupt):
        evaluate(llava, ds, Interrupted(**options), tmp_path / "resumed", batch_size=4, seed=7, progress=False)
    assert len(_records(tmp_path / "resumed")) == 8
    evaluate(llava, ds, generation.Method(**options), tmp_path / "resumed", batch_size=3, seed=7, progress=False)
    assert _records(tmp_path / "resumed") == full
    assert json.loads((tmp_path / "resumed" / "timing.json").read_text())["samples_computed"] == 4
    config = json.loads((tmp_path / "resumed" / "config.json").read_text())
    assert config["method"]["name"] == "generate" and config["method"]["num_candidates"] == 3
    with pytest.raises(RunDirError, match="different config"):
        evaluate(llava, ds, generation.Method(**options, match="word"), tmp_path / "resumed", progress=False)


def test_method_refuses_clip_and_too_many_candidates(tiny_models, llava, image_folder):
    from vlmprobe.models import load_model

    ds = _dataset(image_folder)
    clip = load_model(f"openclip:local-dir:{tiny_models['openclip']}")
    with pytest.raises(VlmprobeError, match="needs a vision-language model"):
        generation.Method().setup(clip, ds)
    with pytest.raises(VlmprobeError, match="exceeds the dataset's 6 classes"):
        generation.Method(closed_world=True, num_candidates=7).setup(llava, ds)


def test_cli_eval_generate(tiny_models, image_folder, tmp_path, capsys):
    """``vlmprobe eval --method generate`` writes a run directory; a bad option is one line, exit 2."""
    from vlmprobe.cli import main

    base = ["eval", "--model", f"hf:{tiny_models['llava']}", "--data", str(image_folder), "--method", "generate",
            "--workers", "0", "--no-progress", "--max-new-tokens", "3"]
    assert main(base + ["--closed-world", "--num-candidates", "2", "--match", "word", "--out", str(tmp_path / "r")]) == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())["method"]
    assert (config["name"], config["num_candidates"], config["match"], config["max_new_tokens"]) == \
        ("generate", 2, "word", 3)
    recs = _records(tmp_path / "r")
    assert len(recs) == 12 and all(len(r["candidates"]) == 2 for r in recs)
    assert "method_summary" in json.loads((tmp_path / "r" / "results.json").read_text())
    capsys.readouterr()
    assert main(base + ["--num-candidates", "2", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--closed-world" in err
