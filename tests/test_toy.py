"""The miniature world (vlmprobe.toy): data, corpora, cache behaviour, and the paper's
qualitative shape measured through the public loading path (load_model("toy:..."))."""
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from vlmprobe.toy import CLASSNAMES
from vlmprobe.toy import corpus


# ---------------------------------------------------------------- no build needed

def test_generic_answers_never_contain_a_class_name():
    """The generation judge is a substring rule, so unnamed answers must not contain any
    class name even inside a word ("someone" contains "one", "weight" contains "eight")."""
    generic = [g for _, _, g in corpus.NAMING_QUESTIONS] + ["It is even.", "It is odd.", "It is small.", "It is large."]
    for text in generic:
        assert not [n for n in CLASSNAMES if n in text.lower()], text
    for _, named, _ in corpus.NAMING_QUESTIONS:
        others = named.replace("{}", "").lower()
        assert not [n for n in CLASSNAMES if n in others], named


def test_naming_frequencies_long_tailed_and_seeded():
    f0, f1 = corpus.naming_frequencies(0), corpus.naming_frequencies(1)
    assert sorted(f0.values(), reverse=True) == list(corpus.NAMING_LEVELS)
    assert f0 == corpus.naming_frequencies(0) and f0 != f1
    assert max(f0.values()) >= 0.9 and min(f0.values()) == 0.0


def test_clip_tokenizer_pools_at_eos():
    """EOS id must not be 2 (transformers' CLIP falls back to argmax-id pooling then)."""
    from vlmprobe.toy.vocab import build_tokenizer

    tok = build_tokenizer(["a photo of a seven."], image_token=False, add_eos=True, model_max_length=16)
    ids = tok("a photo of a seven.")["input_ids"]
    assert tok.eos_token_id != 2 and ids[-1] == tok.eos_token_id and ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "a photo of a seven."
    assert tok("a photo of a dragon")["input_ids"][-2] == tok.unk_token_id


# ---------------------------------------------------------------- the session's world

def test_world_metadata(toy_world):
    root = Path(toy_world["dir"])
    assert set(toy_world["naming_frequency"]) == set(CLASSNAMES)
    for name, p in toy_world["naming_probability"].items():  # realised frequency follows the design
        assert abs(toy_world["naming_frequency"][name] - p) < 0.08, name
    assert sum(toy_world["split_sizes"].values()) == 1797
    assert (root / "clip" / "config.json").exists() and (root / "vlm" / "config.json").exists()
    convs = json.loads((root / "corpus" / "conversations.json").read_text())
    assert all(c["conversations"][0]["value"].startswith("<image>\n") for c in convs)
    assert all((root / c["image"]).exists() for c in convs[:50])


def test_toy_dataset_spec_and_export(toy_world):
    from vlmprobe.data import load_dataset

    root = Path(toy_world["dir"])
    test = load_dataset("toy:digits:test")
    assert test.classnames == CLASSNAMES and len(test) == toy_world["split_sizes"]["test"]
    img = test.load_image(0)
    assert img.mode == "RGB" and img.size == (32, 32)
    assert len(load_dataset("toy:digits", split="val")) == toy_world["split_sizes"]["val"]
    # the export reads like user data: a manifest and an ImageFolder per split
    manifest = load_dataset(str(root / "manifest.jsonl"), split="test")
    folder = load_dataset(str(root / "images"), split="test")
    assert len(manifest) == len(folder) == len(test)
    assert sorted(folder.classnames) == sorted(CLASSNAMES)
    rows = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in rows}) == len(rows) == 1797  # each image in exactly one split
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    from vlmprobe.errors import DataError

    with pytest.raises(DataError, match="splits"):
        load_dataset("toy:digits:holdout")


def test_wikiqa_rows_follow_the_reference_format(toy_world, reference_dir):
    root = Path(toy_world["dir"])
    rows = [json.loads(x) for x in (root / "wikiqa.jsonl").read_text().splitlines()]
    ref = json.loads((reference_dir / "imagewikiqa.jsonl").read_text().splitlines()[0])
    assert len(rows) >= 200
    layout = re.compile(r"^[^\n]+\nA\. [^\n]+\nB\. [^\n]+\nC\. [^\n]+\nD\. [^\n]+\nChoose A, B, C, or D\.$")
    assert layout.match(ref["text"])
    for r in rows:
        assert set(ref) <= set(r) and layout.match(r["text"]), r
        assert r["label"] in "ABCD" and (root / r["image"]).exists()
        words = {w.lower() for w in re.findall(r"\w+", r["text"])}
        assert r["classname"] not in words  # the class must come from the image
        assert r["classname"] in r["wiki"].lower()
        assert "/test/" in r["image"]
    assert len({r["label"] for r in rows}) == 4


def test_finetune_data_in_paper_format(toy_world):
    root = Path(toy_world["dir"])
    recs = json.loads((root / "finetune" / "train.json").read_text())
    assert len(recs) == toy_world["split_sizes"]["train"]
    r = recs[0]
    assert set(r) == {"id", "image", "conversations"} and "/train/" in r["image"]
    assert r["conversations"][0] == {"from": "human", "value": "<image>\nWhat type of object is in the photo?"}
    assert r["conversations"][1]["from"] == "gpt" and r["conversations"][1]["value"] in CLASSNAMES


@pytest.fixture(scope="module")
def measured(toy_world):
    """Measure both toy models on the test split through the public loading path only."""
    from vlmprobe.data import load_dataset
    from vlmprobe.models import load_model
    from vlmprobe.toy.evaluate import clip_zeroshot_correct, named_correct, vlm_generate

    ds = load_dataset("toy:digits:test")
    images = [ds.load_image(i) for i in range(len(ds))]
    clip = load_model("toy:clip")
    vlm = load_model("toy:vlm")
    responses = vlm_generate(vlm, images)
    return {"ds": ds, "images": images, "vlm": vlm, "labels": ds.labels(), "responses": responses,
            "clip_ok": clip_zeroshot_correct(clip, ds, images),
            "gen_ok": named_correct(responses, ds.labels(), ds.classnames)}


def test_chat_template_and_vocabulary(measured):
    vlm = measured["vlm"]
    assert vlm.spec == "toy:vlm" and type(vlm.model).__name__ == "LlavaForConditionalGeneration"
    q = corpus.OPEN_WORLD_QUESTION
    assert vlm.render(q) == f"USER: <image>\n{q} ASSISTANT:"
    text = vlm.render(q, answer_prefix="The photo features a") + " seven"
    ids = vlm.tokenizer(text)["input_ids"]
    assert vlm.tokenizer.unk_token_id not in ids
    assert all(r.endswith(".") for r in measured["responses"][:20])


def test_clip_zero_shot_far_above_vlm_generation(toy_world, measured):
    clip_acc, gen_acc = measured["clip_ok"].mean(), measured["gen_ok"].mean()
    assert clip_acc >= 0.85
    assert clip_acc - gen_acc >= 0.3
    # the build's own sanity numbers were measured the same way
    assert clip_acc == pytest.approx(toy_world["metrics"]["clip_zeroshot_accuracy"])
    assert gen_acc == pytest.approx(toy_world["metrics"]["vlm_generation_accuracy"])


def test_generation_accuracy_rises_with_naming_frequency(toy_world, measured):
    from scipy.stats import spearmanr

    labels, ok = measured["labels"], measured["gen_ok"]
    freq = np.array([toy_world["naming_frequency"][n] for n in CLASSNAMES])
    acc = np.array([ok[labels == k].mean() for k in range(len(CLASSNAMES))])
    order = np.argsort(-freq)
    assert spearmanr(freq, acc).statistic > 0.6
    assert acc[order[:5]].mean() - acc[order[5:]].mean() > 0.3
    assert acc[order[-3:]].max() <= 0.1  # (almost) never named -> (almost) never generated


def test_hidden_states_carry_rarely_named_classes(toy_world, measured):
    """A linear probe on the VLM's last-layer hidden states (mean over positions) recovers the
    classes the model almost never names: the information is there, generation hides it."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from vlmprobe.data import load_dataset

    vlm = measured["vlm"]

    def feats(images):
        out = []
        prompt = vlm.render(corpus.OPEN_WORLD_QUESTION)
        for i in range(0, len(images), 64):
            chunk = images[i:i + 64]
            batch = vlm.encode(chunk, [prompt] * len(chunk))
            with torch.no_grad():
                h = vlm.model(**batch, output_hidden_states=True).hidden_states[-1]
            m = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((h * m).sum(1) / m.sum(1)).numpy())
        return np.concatenate(out)

    train = load_dataset("toy:digits:train", limit=500, seed=0)
    x_tr = feats([train.load_image(i) for i in range(len(train))])
    x_te = feats(measured["images"])
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(x_tr, train.labels())
    pred = probe.predict(x_te)
    labels = measured["labels"]
    rare = [CLASSNAMES.index(n) for n in sorted(toy_world["naming_frequency"],
                                                 key=toy_world["naming_frequency"].get)[:3]]
    in_rare = np.isin(labels, rare)
    probe_rare = (pred[in_rare] == labels[in_rare]).mean()
    gen_rare = measured["gen_ok"][in_rare].mean()
    assert probe_rare >= 0.5 and probe_rare - gen_rare >= 0.4  # measured: 0.75 vs 0.0 (chance 0.1)


# ---------------------------------------------------------------- cache behaviour

def test_half_built_cache_is_rebuilt_and_foreign_dirs_refused(tmp_path):
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.toy import WorldConfig, build_world
    from vlmprobe.toy.clip import ClipConfig
    from vlmprobe.toy.vlm import VlmConfig

    cfg = WorldConfig(clip=ClipConfig(steps=2), vlm=VlmConfig(steps=2), wikiqa_questions=20, sanity_eval=False)
    out = tmp_path / "world"
    meta = build_world(out, cfg=cfg, progress=False)
    weights = out / "vlm" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert build_world(out, cfg=cfg, progress=False)["key"] == meta["key"]
    assert weights.stat().st_mtime_ns == stamp  # valid -> reused, not rebuilt
    # a killed build: models half written, no world.json -> rebuilt, never used
    (out / "world.json").unlink()
    weights.write_bytes(b"truncated")
    build_world(out, cfg=cfg, progress=False)
    assert weights.stat().st_size == meta["files"]["vlm/model.safetensors"]
    # a file damaged after a complete build -> detected by the marker's sizes -> rebuilt
    (out / "manifest.jsonl").write_text("")
    rebuilt = build_world(out, cfg=cfg, progress=False)
    assert (out / "manifest.jsonl").stat().st_size == rebuilt["files"]["manifest.jsonl"] > 0
    # a directory that is not a toy build is never deleted
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(VlmprobeError, match="not a vlmprobe toy build"):
        build_world(foreign, cfg=cfg, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_toy_vlm_threads_are_used_only_where_they_give_one_threads_bits(toy_world, tmp_path):
    """The world build trains the toy VLM with the caller's torch threads only where that gives the
    bits of one thread on this machine (``build.vlm_threads``; the world's key names no thread
    count). Real shapes (batch 32, the world's conversations), a few steps: the count it picks
    trains byte-identical weights to one thread."""
    import torch
    from safetensors.torch import load_file

    from vlmprobe.data import read_image
    from vlmprobe.toy.build import vlm_threads
    from vlmprobe.toy.vlm import VlmConfig, train_vlm

    root = Path(toy_world["dir"])
    convs = json.loads((root / "corpus" / "conversations.json").read_text())[:400]
    knowledge = json.loads((root / "corpus" / "knowledge.json").read_text())[:100]
    rel = sorted({c["image"] for c in convs})
    images = [read_image(str(root / p)) for p in rel]
    cfg = VlmConfig()
    picked = vlm_threads(3, root / "clip", images, rel, convs, knowledge, [], cfg, 0)
    assert picked in (1, 3)
    short = dataclasses.replace(cfg, steps=3, warmup=1)
    old = torch.get_num_threads()
    weights = {}
    try:
        for threads in sorted({1, picked}):
            torch.set_num_threads(threads)
            train_vlm(root / "clip", images, rel, convs, knowledge, [], tmp_path / str(threads), short, seed=0)
            weights[threads] = load_file(str(tmp_path / str(threads) / "model.safetensors"))
    finally:
        torch.set_num_threads(old)
    assert not [k for k in weights[1] if not torch.equal(weights[1][k], weights[picked][k])]


def test_vlm_threads_falls_back_to_one_thread_when_the_bits_depend_on_the_count(tmp_path, monkeypatch):
    """A training whose weights change with the thread count (as the toy VLM's do on some CPUs)
    gets one thread; one whose weights do not gets the threads asked for."""
    import torch
    from safetensors.torch import save_file

    import vlmprobe.toy.vlm as toy_vlm
    from vlmprobe.toy.build import vlm_threads

    def fake_train(depends):
        def train(clip_dir, images, rel, convs, knowledge, extra, out_dir, cfg, seed=0):
            Path(out_dir).mkdir(parents=True)
            value = float(torch.get_num_threads()) if depends else 1.0
            save_file({"w": torch.full((2,), value)}, str(Path(out_dir) / "model.safetensors"))
        return train

    for depends, expected in ((True, 1), (False, 3)):
        monkeypatch.setattr(toy_vlm, "train_vlm", fake_train(depends))
        assert vlm_threads(3, tmp_path, [], [], [], [], [], toy_vlm.VlmConfig(), 0) == expected
    assert vlm_threads(1, tmp_path, [], [], [], [], [], toy_vlm.VlmConfig(), 0) == 1


def test_cli_toy_build_reuses_the_session_world(toy_world, capsys):
    from vlmprobe.cli import main

    assert main(["toy", "build"]) == 0
    out = capsys.readouterr().out
    assert toy_world["dir"] in out and "reused a valid build" in out and "CLIP zero-shot" in out


def test_cli_export_is_deterministic(toy_world, tmp_path, capsys):
    """`vlmprobe toy export` writes the data stage only; same seed -> byte-identical files."""
    from vlmprobe.cli import main

    out = tmp_path / "export"
    assert main(["toy", "export", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    world = Path(toy_world["dir"])
    assert not (out / "vlm").exists()
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    for rel in ["manifest.jsonl", "wikiqa.jsonl", "corpus/conversations.json", "corpus/knowledge.json",
                "finetune/train.json"] + [r["image"] for r in rows[::300]]:
        assert (out / rel).read_bytes() == (world / rel).read_bytes(), rel


def test_training_tokenization_matches_the_processor(toy_world, measured):
    """Training pre-tokenises with ``<image>`` expanded by hand; the processor (reference
    path) must give the same ids for the same conversation and image."""
    from vlmprobe.toy.vlm import render_prompt, tokenize_conversations

    vlm = measured["vlm"]
    root = Path(toy_world["dir"])
    conv = json.loads((root / "corpus" / "conversations.json").read_text())[0]
    n_img = int(vlm.model.config.image_seq_length)
    ids, n_prompt, row = tokenize_conversations(vlm.processor, [conv], {conv["image"]: 0}, n_img)[0]
    from vlmprobe.data import read_image

    question = conv["conversations"][0]["value"].replace("<image>\n", "")
    text = render_prompt(vlm.processor, question, True) + " " + conv["conversations"][1]["value"]
    ref = vlm.processor(text=[text], images=[read_image(str(root / conv["image"]))])["input_ids"][0]
    assert row == 0 and list(ref) + [vlm.tokenizer.eos_token_id] == ids
    assert ids[:n_prompt].count(vlm.model.config.image_token_id) == n_img


def test_wikiqa_practice_answers_parse_to_the_right_letter_and_follow_naming():
    """QA practice: the answer names the class then states the text-only fact, ending in the right
    option's words (the parser's text rule gives the letter); image practice only for classes the
    conversations name (never for p_c = 0); the oracle hint is the wikiqa command's template."""
    from vlmprobe.toy.wikiqa import (KINDS, ORACLE_HINT, image_practice, question_for, reasoned_answer,
                                     text_practice, valid_kind)
    from vlmprobe.wikiqa import parse_answer, parse_options
    from vlmprobe.wikiqa.prompts import ORACLE_TEMPLATE

    assert ORACLE_TEMPLATE.format(classname="seven") == ORACLE_HINT.format("seven")
    facts = {a for _, a, _ in corpus.knowledge_facts()}
    rng = np.random.default_rng(0)
    for c in range(10):
        for kind in {valid_kind(c, k) for k in KINDS}:
            text, letter, wiki, answer = question_for(c, kind, rng)
            reply = reasoned_answer(c, kind, answer)
            assert reply.startswith(f"It is {CLASSNAMES[c]}. ") and reply.split(". ", 1)[1] in facts
            assert parse_answer(reply, parse_options(text)[1]).letter == letter
    texts = text_practice(0)
    assert len(texts) == 2 * 3 * sum(len({valid_kind(c, k) for k in KINDS}) for c in range(10))
    freq = corpus.naming_frequencies(0)
    labels = np.repeat(np.arange(10), 30)
    convs = image_practice([str(i) for i in range(300)], [f"images/train/{CLASSNAMES[c]}/{i}.png"
                                                          for i, c in enumerate(labels)], labels, freq, 0)
    per_class = {n: sum(f"/{n}/" in r["image"] for r in convs) for n in CLASSNAMES}
    never = [n for n, p in freq.items() if p == 0]
    assert never and all(per_class[n] == 0 for n in never)
    top = max(freq, key=freq.get)
    assert per_class[top] >= 20
