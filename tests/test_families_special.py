"""Likelihood normalisations (mean, char, pmi) against naive reference computations, and the
special families (BLIP-2, InstructBLIP, PaliGemma, Mllama) built tiny from their own config
classes by ``vlmprobe.testing.families_special`` and loaded back with ``hf:PATH``."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlmprobe
from vlmprobe.cli import main as cli_main
from vlmprobe.errors import VlmprobeError

CANDIDATES = ["tench", "great white shark", "great", "tiger shark", "Ünïcødé 猫", "goldfish"]
TOL = 1e-4
QUESTION = "What type of object is in this photo?"


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (32 + 8 * (i % 2), 32, 3), dtype=np.uint8)) for i in range(n)]


def joined(prefix: str, name: str) -> str:
    """The text the model reads: a space between prompt and name unless the prompt ends in one."""
    return prefix + ("" if prefix[-1:].isspace() else " ") + name


def plain_batch(vlm, image, prefix: str, name: str) -> tuple[dict, int]:
    """The processor's inputs for ``prefix + " " + name`` and the prefix's length in tokens. The
    Q-Former of InstructBLIP reads the prompt only, never the answer (LAVIS' candidate scoring),
    so its text inputs come from the prefix alone."""
    images = None if image is None else [image]
    head = vlm.encode(images, [prefix])
    batch = vlm.encode(images, [joined(prefix, name)])
    for key in ("qformer_input_ids", "qformer_attention_mask"):
        if key in batch:
            batch[key] = head[key]
    P = head["input_ids"].shape[1]
    if "token_type_ids" in batch:  # PaliGemma: the answer is the causal suffix (type 1), as its processor's suffix=
        batch["token_type_ids"][:, P:] = 1
    return batch, P


def plain_sum(vlm, image, prefix: str, name: str) -> float:
    """Reference: one plain forward of ``prefix + " " + name`` (image or text only); the sum of
    the name's token log-probs, read off the logits at the positions before each name token."""
    batch, P = plain_batch(vlm, image, prefix, name)
    with torch.no_grad():
        logp = vlm.model(**batch).logits[0].float().log_softmax(-1)
    ids = batch["input_ids"][0]
    return sum(logp[t - 1, ids[t]].item() for t in range(P, len(ids)))


def plain_tokens(vlm, image, prefix: str, name: str) -> list[float]:
    batch, P = plain_batch(vlm, image, prefix, name)
    with torch.no_grad():
        logp = vlm.model(**batch).logits[0].float().log_softmax(-1)
    ids = batch["input_ids"][0]
    return [logp[t - 1, ids[t]].item() for t in range(P, len(ids))]


@pytest.fixture(scope="module")
def llava(tiny_models):
    return vlmprobe.load_model(f"hf:{tiny_models['llava']}")


@pytest.mark.parametrize("answer_prefix", [None, "The photo features a"])
def test_normalisations_equal_naive_references(llava, answer_prefix):
    """sum, mean, char and pmi (fast and naive) equal the plain-forward reference: mean = sum /
    tokens, char = sum / len(name), pmi = sum - the same name's sum after the text-only prompt."""
    imgs = images(2)
    with_image = llava.render(QUESTION, image=True, answer_prefix=answer_prefix)
    text_only = llava.render(QUESTION, image=False, answer_prefix=answer_prefix)
    prior = {c: plain_sum(llava, None, text_only, c) for c in CANDIDATES}
    ref = {r: torch.zeros(2, len(CANDIDATES)) for r in ("sum", "mean", "char", "pmi")}
    for b, img in enumerate(imgs):
        for k, c in enumerate(CANDIDATES):
            toks = plain_tokens(llava, img, with_image, c)
            ref["sum"][b, k] = sum(toks)
            ref["mean"][b, k] = sum(toks) / len(toks)
            ref["char"][b, k] = sum(toks) / len(c)
            ref["pmi"][b, k] = sum(toks) - prior[c]
    for scoring in ("naive", "fast"):
        got = llava.score(imgs, CANDIDATES, answer_prefix=answer_prefix, reduction=tuple(ref), scoring=scoring,
                          chunk_size=3)
        for r, want in ref.items():
            assert (got[r] - want).abs().max().item() <= TOL, (scoring, r)
            assert torch.equal(got[r].argmax(1), want.argmax(1)), (scoring, r)
        single = llava.score(imgs, CANDIDATES, answer_prefix=answer_prefix, reduction="pmi", scoring=scoring)
        assert (single - got["pmi"]).abs().max().item() <= TOL  # chunking differs: float noise only (3e-5 seen on an AVX-512 CPU)
    # per-image candidate lists (ragged): missing entries stay NaN, the prior is looked up per name
    ragged = [CANDIDATES[:2], CANDIDATES[3:]]
    got = llava.score(imgs, ragged, answer_prefix=answer_prefix, reduction="pmi")
    assert (got[0, :2] - ref["pmi"][0, :2]).abs().max() <= TOL and got[0, 2:].isnan().all()
    assert (got[1, :3] - ref["pmi"][1, 3:]).abs().max() <= TOL
    with pytest.raises(VlmprobeError, match="unknown reduction 'max'"):
        llava.score(imgs, CANDIDATES, reduction=("sum", "max"))


def test_eval_reports_the_normalised_and_the_sum_prediction(tiny_models, digits_folder, tmp_path):
    spec = f"hf:{tiny_models['llava']}"
    args = ["eval", "--model", spec, "--data", str(digits_folder), "--limit", "4", "--method", "likelihood",
            "--batch-size", "4", "--no-progress"]
    assert cli_main(args + ["--out", str(tmp_path / "sum")]) == 0
    assert cli_main(args + ["--reduction", "pmi", "--out", str(tmp_path / "pmi")]) == 0
    plain = [json.loads(x) for x in (tmp_path / "sum" / "samples.jsonl").read_text().splitlines()]
    pmi = [json.loads(x) for x in (tmp_path / "pmi" / "samples.jsonl").read_text().splitlines()]
    assert [r["sum_prediction"] for r in pmi] == [r["prediction"] for r in plain]
    assert all("sum_prediction" not in r for r in plain)
    cfg = json.loads((tmp_path / "pmi" / "config.json").read_text())
    assert json.dumps(cfg).count('"pmi"') >= 1
    model = vlmprobe.load_model(spec)
    data = vlmprobe.load_dataset(str(digits_folder), limit=4)
    want = model.score([data.load_image(i) for i in range(4)], data.classnames, reduction="pmi").numpy()
    assert np.abs(np.load(tmp_path / "pmi" / "scores.npy") - want).max() <= TOL


# ------------------------------------------------------------------------ special families
SPECIAL = ("blip-2", "mllama", "instructblip", "paligemma")
FAST = ("blip-2", "instructblip")  # families whose fast path is allowed (the others refuse it in one line)


@pytest.fixture(scope="module")
def special(tmp_path_factory):
    """model_type -> (path, loaded model), each built once by its registered tiny builder."""
    from vlmprobe.testing.families import TINY_BUILDERS
    from vlmprobe.testing.families_special import SPECIAL_BUILDERS

    builders = {**SPECIAL_BUILDERS, **{k: v for k, v in TINY_BUILDERS.items() if k == "mllama"}}

    root = tmp_path_factory.mktemp("special_families")
    out = {}
    for name in SPECIAL:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            builders[name](root / name)
        out[name] = (root / name, vlmprobe.load_model(f"hf:{root / name}"))
    return out


def test_blip2_loads_without_a_chat_template_and_uses_its_prompt_format(special, monkeypatch):
    path, blip = special["blip-2"]
    assert not (path / "chat_template.jinja").exists() and not (path / "chat_template.json").exists()
    assert blip.family.name == "blip-2"
    assert blip.render(QUESTION, answer_prefix="The photo features a") == (
        f"Question: {QUESTION} Answer: The photo features a")
    from vlmprobe.errors import ModelLoadError
    from vlmprobe.models import families

    # without the family's prompt format (the generic adapter), the old one-line refusal remains
    monkeypatch.setattr(families, "FAMILIES", [f for f in families.FAMILIES if f.name != "blip-2"])
    with pytest.raises(ModelLoadError, match="no chat template.*no prompt format") as err:
        vlmprobe.load_model(f"hf:{path}")
    assert "\n" not in str(err.value)


def test_paligemma_layout_is_its_processors(special):
    """vlmprobe's PaliGemma encoding (rendered prompt ending in "\\n", nothing appended) equals
    the checkpoint's own processor on the bare prompt, which appends the "\\n"."""
    vlm = special["paligemma"][1]
    imgs = images(2)
    prompt = vlm.render(QUESTION)
    assert prompt == f"answer en {QUESTION}\n"
    ours = vlm.encode(imgs, [prompt, prompt])
    theirs = vlm.processor(text=[prompt[:-1]] * 2, images=imgs, return_tensors="pt", padding=True)
    for key in ("input_ids", "attention_mask", "token_type_ids", "pixel_values"):
        assert torch.equal(ours[key].cpu(), theirs[key]), key


@pytest.mark.parametrize("name", SPECIAL)
def test_generation_is_batch_invariant(special, name):
    vlm = special[name][1]
    imgs = images(4)
    questions = [QUESTION, "Describe it.", "What is it?", QUESTION]
    together = vlm.generate(imgs, questions, max_new_tokens=5)
    alone = [vlm.generate([im], [q], max_new_tokens=5)[0] for im, q in zip(imgs, questions)]
    assert together == alone and all(isinstance(t, str) and t for t in together)
    from vlmprobe.classify.matching import MatchResult, match_response

    assert isinstance(match_response(together[0], ["tench", "goldfish"]), MatchResult)  # matchers run on it


@pytest.mark.parametrize("name", SPECIAL)
@pytest.mark.parametrize("answer_prefix", [None, "The photo features a"])
def test_naive_likelihood_is_the_plain_forward(special, name, answer_prefix):
    """naive == one plain full forward per candidate (processor-built inputs: BLIP-2's query
    tokens, Mllama's cross-attention mask), 1e-4 fp32, same argmax; batch size 1 vs 4; fast ==
    naive (batch 4 and 1, small chunks) where allowed, else a one-line refusal."""
    vlm = special[name][1]
    imgs = images(4)
    prefix = vlm.render(QUESTION, answer_prefix=answer_prefix)
    ref = torch.tensor([[plain_sum(vlm, img, prefix, c) for c in CANDIDATES] for img in imgs[:2]])
    got = vlm.score(imgs, CANDIDATES, answer_prefix=answer_prefix, scoring="naive", batch_size=4)
    assert (got[:2] - ref).abs().max().item() <= TOL
    assert torch.equal(got[:2].argmax(1), ref.argmax(1))
    one = torch.cat([vlm.score([im], CANDIDATES, answer_prefix=answer_prefix, scoring="naive", batch_size=1)
                     for im in imgs])
    assert (one - got).abs().max().item() <= TOL and torch.equal(one.argmax(1), got.argmax(1))
    if name in FAST:  # the Q-Former families: candidates run in the language model against the prefix cache
        for bs in (4, 1):
            fast = vlm.score(imgs, CANDIDATES, answer_prefix=answer_prefix, batch_size=bs, chunk_size=3)
            assert (fast - got).abs().max().item() <= TOL and torch.equal(fast.argmax(1), got.argmax(1))
        return
    with pytest.raises(VlmprobeError, match=r"--scoring naive") as err:  # fast: refused with its reason
        vlm.score(imgs, CANDIDATES, answer_prefix=answer_prefix)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_pmi_on_the_special_families(special):
    """Mllama runs text-only (PMI = naive reference); BLIP-2's forward needs an image: one line."""
    mllama = special["mllama"][1]
    imgs = images(2)
    text_only = mllama.render(QUESTION, image=False)
    with_image = mllama.render(QUESTION)
    ref = torch.tensor([[plain_sum(mllama, img, with_image, c) - plain_sum(mllama, None, text_only, c)
                         for c in CANDIDATES] for img in imgs])
    got = mllama.score(imgs, CANDIDATES, reduction="pmi", scoring="naive")
    assert (got - ref).abs().max().item() <= TOL
    with pytest.raises(VlmprobeError, match="cannot score a prompt without an image") as err:
        special["blip-2"][1].score(imgs, CANDIDATES, reduction="pmi", scoring="naive")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", SPECIAL)
def test_features_every_layer_and_batch_invariant(special, name):
    vlm = special[name][1]
    imgs = images(4)
    feats = vlm.features(imgs, layers="all", pooling="last,mean")
    n = vlm.num_layers()
    assert set(feats) == {f"lm.{i}:{p}" for i in range(n + 1) for p in ("last", "mean")} | {"vision", "projector"}
    width = vlm.model.config.get_text_config().hidden_size
    assert all(v.shape == (4, width) for k, v in feats.items() if k.startswith("lm."))
    assert feats["projector"].shape == (4, width) and feats["vision"].shape[0] == 4
    alone = vlm.features(imgs[3:], layers=["vision", "projector", 1], pooling="mean")
    for key, ref in (("vision", "vision"), ("projector", "projector"), ("lm.1", "lm.1:mean")):
        assert (alone[key] - feats[ref][3:]).abs().max().item() <= 1e-4, key


def test_probe_and_likelihood_eval_on_blip2(special, digits_folder, tmp_path):
    path = special["blip-2"][0]
    out = tmp_path / "probe"
    args = ["probe", "--model", f"hf:{path}", "--train", str(digits_folder), "--test", str(digits_folder),
            "--layers=-1,projector", "--pool", "last", "--Cs", "1", "--out", str(out), "--batch-size", "8",
            "--no-progress"]
    assert cli_main(args) == 0
    layers = json.loads((out / "layers.json").read_text())
    assert [r["name"] for r in layers["layers"]] == [f"lm.{special['blip-2'][1].num_layers()}:last", "projector"]
    run = tmp_path / "lik"
    assert cli_main(["eval", "--model", f"hf:{path}", "--data", str(digits_folder), "--limit", "3", "--method",
                     "likelihood", "--scoring", "naive", "--answer-prefix", "paper", "--reduction", "char",
                     "--no-progress", "--out", str(run)]) == 0
    data = vlmprobe.load_dataset(str(digits_folder), limit=3)
    want = special["blip-2"][1].score([data.load_image(i) for i in range(3)], data.classnames, scoring="naive",
                                      answer_prefix="The photo features a", reduction="char").numpy()
    assert np.abs(np.load(run / "scores.npy") - want).max() <= TOL


@pytest.mark.parametrize("name", SPECIAL)
def test_lora_step_and_adapter_reload(special, name, tmp_path):
    """LoRA on the language model only (projector trained in full, vision tower frozen): one
    optimizer step lowers the answer tokens' loss; the saved adapter reloads through
    ``hf:BASE+adapter:PATH`` to the same scores as the trained model in memory."""
    import copy

    from vlmprobe.finetune.config import AdapterArgs
    from vlmprobe.finetune.lora import language_model_path, projector_path, setup_vlm_training
    from vlmprobe.models.vlm import VisionLanguageModel

    path, vlm = special[name]
    imgs = images(2)
    texts = [joined(vlm.render(QUESTION), c) for c in ("tench", "goldfish")]
    batch = vlm.encode(imgs, texts, padding_side="right")
    n_prompt = vlm.encode(imgs[:1], [vlm.render(QUESTION)])["input_ids"].shape[1]
    torch.manual_seed(0)  # LoRA's A matrices start random
    model = setup_vlm_training(copy.deepcopy(vlm.model), AdapterArgs(lora_r=4, lora_alpha=8,
                                                                      target_modules=["q_proj", "v_proj"],
                                                                      train_projector=True))

    def answer_loss():
        logits = model(**batch).logits[:, n_prompt - 1:-1].float()
        target = batch["input_ids"][:, n_prompt:]
        keep = batch["attention_mask"][:, n_prompt:].bool()
        return torch.nn.functional.cross_entropy(logits[keep], target[keep])

    model.eval()  # dropout off (the Q-Former has some): the step is plain gradient descent on one loss
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)  # small: one step lowers it
    before = answer_loss()
    before.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    lm, proj = language_model_path(vlm.model), projector_path(vlm.model)
    assert any("lora_" in n and f"{lm}." in n for n in trained)
    assert any(proj.rsplit(".", 1)[-1] in n for n in trained)
    assert all("lora_" in n or proj.rsplit(".", 1)[-1] in n for n in trained)
    opt.step()
    with torch.no_grad():
        assert answer_loss().item() < before.item()
    model.save_pretrained(tmp_path / "adapter")
    tuned = VisionLanguageModel.from_parts(model, vlm.processor)
    reloaded = vlmprobe.load_model(f"hf:{path}+adapter:{tmp_path / 'adapter'}")
    want = tuned.score(imgs, CANDIDATES, scoring="naive")
    got = reloaded.score(imgs, CANDIDATES, scoring="naive")
    assert (got - want).abs().max().item() <= TOL
    assert (got - vlm.score(imgs, CANDIDATES, scoring="naive")).abs().max().item() > 1e-3  # the adapter matters


@pytest.fixture(scope="module")
def flan_t5(special):
    """BLIP-2 with a Flan-T5 (encoder-decoder) language model, beside the other special families."""
    from vlmprobe.testing.families_special import SPECIAL_BUILDERS

    path = special["blip-2"][0].parent / "blip-2-flan-t5"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        SPECIAL_BUILDERS["blip-2-flan-t5"](path)
    return path, vlmprobe.load_model(f"hf:{path}")


@pytest.mark.parametrize("answer_prefix", [None, "The photo features a"])
def test_encoder_decoder_likelihood_is_the_decoder_loss(flan_t5, answer_prefix):
    """BLIP-2 + Flan-T5: log p(name | encoder(image, prompt)) == -(decoder cross-entropy with
    ``labels`` = the name's tokens) x their count, transformers' own loss path (1e-4, argmax);
    batch 1 vs 4; generation batch-invariant; encoder features for every layer."""
    vlm = flan_t5[1]
    assert vlm.model.config.is_encoder_decoder and vlm.family.name == "blip-2"
    imgs = images(4)
    prefix = vlm.render(QUESTION, answer_prefix=answer_prefix)
    ref = torch.zeros(2, len(CANDIDATES))
    for b, img in enumerate(imgs[:2]):
        batch = vlm.encode([img], [prefix])
        for k, c in enumerate(CANDIDATES):
            labels = torch.tensor([vlm.tokenizer(c, add_special_tokens=False).input_ids])
            with torch.no_grad():
                loss = vlm.model(**batch, labels=labels).loss
            ref[b, k] = -loss * labels.shape[1]
    got = vlm.score(imgs, CANDIDATES, answer_prefix=answer_prefix, scoring="naive")
    assert (got[:2] - ref).abs().max().item() <= TOL and torch.equal(got[:2].argmax(1), ref.argmax(1))
    one = torch.cat([vlm.score([im], CANDIDATES, answer_prefix=answer_prefix, scoring="naive") for im in imgs])
    assert (one - got).abs().max().item() <= TOL
    with pytest.raises(VlmprobeError, match="--scoring naive"):
        vlm.score(imgs, CANDIDATES, answer_prefix=answer_prefix)
    if answer_prefix is None:
        questions = [QUESTION, "Describe it.", "What is it?", QUESTION]
        together = vlm.generate(imgs, questions, max_new_tokens=5)
        assert together == [vlm.generate([im], [q], max_new_tokens=5)[0] for im, q in zip(imgs, questions)]
        feats = vlm.features(imgs, layers="all", pooling="last")
        assert set(feats) == {f"lm.{i}" for i in range(vlm.num_layers() + 1)} | {"vision", "projector"}
        assert all(v.shape == (4, 64) for v in feats.values())


def test_appended_answer_tokens_extend_per_token_inputs():
    """The naive path's per-token inputs: cut to the prefix, extended by repeating its last
    position, or with the family's suffix value; whole-prompt inputs (InstructBLIP's Q-Former
    text) stay as they are even when their length happens to equal the sequence's."""
    from vlmprobe.models.likelihood import _extend_token_inputs

    extra = {"qformer_input_ids": torch.tensor([[5, 6, 7]]), "mm_token_type_ids": torch.tensor([[1, 0, 9]]),
             "token_type_ids": torch.tensor([[0, 0, 0]]), "pixel_values": torch.zeros(1, 3)}
    out = _extend_token_inputs(extra, full=3, length=2, n_new=2, suffix_values={"token_type_ids": 1},
                               prompt_inputs=("qformer_input_ids",))
    assert out["qformer_input_ids"].tolist() == [[5, 6, 7]]
    assert out["mm_token_type_ids"].tolist() == [[1, 0, 0, 0]]
    assert out["token_type_ids"].tolist() == [[0, 0, 1, 1]]
    assert out["pixel_values"] is extra["pixel_values"]


@pytest.mark.parametrize("name", ("blip-2", "instructblip", "paligemma"))
def test_collator_labels_exactly_the_answer_tokens(special, name):
    """Fine-tuning a checkpoint without a chat template: ``ChatCollator`` renders through the
    family's prompt format, and its labels are exactly the answer's tokens + EOS after the very
    prompt the likelihood engine scores (every earlier token -100, padding -100). PaliGemma: the
    batch equals its own processor's ``suffix=`` encoding (input_ids, token_type_ids, labels);
    InstructBLIP: the Q-Former reads the prompt only."""
    from vlmprobe.finetune.collate import IGNORE, ChatCollator
    from vlmprobe.finetune.data import Conversation, ConversationDataset

    vlm = special[name][1]
    imgs, answers = images(2), ["tench", "great white shark"]
    convs = [Conversation(str(i), [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
                                   {"role": "assistant", "content": [{"type": "text", "text": a}]}],
                          (lambda im=im: im)) for i, (im, a) in enumerate(zip(imgs, answers))]
    batch = ChatCollator(vlm.processor, family=vlm.family)(list(ConversationDataset(convs)))
    prompt = vlm.render(QUESTION)
    eos = vlm.tokenizer.eos_token_id
    for r, (im, a) in enumerate(zip(imgs, answers)):
        head = vlm.encode([im], [prompt])["input_ids"][0].cpu()
        full = vlm.encode([im], [joined(prompt, a) + vlm.tokenizer.eos_token])["input_ids"][0].cpu()
        P, n = len(head), len(full)
        assert torch.equal(full[:P], head) and full[-1].item() == eos
        assert torch.equal(batch["input_ids"][r, :n], full)
        want = torch.full_like(batch["labels"][r], IGNORE)
        want[P:n] = full[P:]
        assert torch.equal(batch["labels"][r], want)
    if name == "paligemma":
        theirs = vlm.processor(text=[prompt[:-1]] * 2, images=imgs, suffix=answers, padding=True, return_tensors="pt")
        for r in range(2):  # the processor pads on its tokenizer's side (left): compare the attended tokens
            ours_r, theirs_r = batch["attention_mask"][r].bool(), theirs["attention_mask"][r].bool()
            for key in ("input_ids", "token_type_ids", "labels"):
                assert torch.equal(batch[key][r][ours_r], torch.as_tensor(theirs[key][r])[theirs_r]), key
    if name == "instructblip":
        assert torch.equal(batch["qformer_input_ids"], vlm.encode(imgs, [prompt] * 2)["qformer_input_ids"].cpu())


def test_encoder_decoder_training_batch_and_loss(flan_t5):
    """BLIP-2 + Flan-T5 fine-tuning: the encoder reads image + prompt (the very prompt scored),
    the decoder's labels are tok(answer) + EOS (-100 padded); VLMTask's per-token loss equals
    transformers' own ``labels=`` loss; a second assistant turn is refused in one line."""
    from vlmprobe.finetune.collate import IGNORE, ChatCollator
    from vlmprobe.finetune.data import Conversation, ConversationDataset
    from vlmprobe.finetune.tasks import VLMTask

    vlm = flan_t5[1]
    imgs, answers = images(2), ["tench", "great white shark"]

    def conv(i, turns):
        return Conversation(str(i), turns, (lambda im=imgs[i % 2]: im))

    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    items = ConversationDataset([conv(i, [user, {"role": "assistant", "content": [{"type": "text", "text": a}]}])
                                 for i, a in enumerate(answers)])
    batch = ChatCollator(vlm.processor, family=vlm.family, encoder_decoder=True)(list(items))
    want = vlm.encode(imgs, [vlm.render(QUESTION)] * 2, padding_side="right")
    assert torch.equal(batch["input_ids"], want["input_ids"].cpu())
    for r, a in enumerate(answers):
        target = vlm.tokenizer(a, add_special_tokens=False)["input_ids"] + [vlm.tokenizer.eos_token_id]
        assert batch["labels"][r, :len(target)].tolist() == target
        assert (batch["labels"][r, len(target):] == IGNORE).all()
    task = VLMTask.__new__(VLMTask)
    task.seq2seq = True
    inputs = {k: v for k, v in batch.items() if k != "skipped"}
    with torch.no_grad():
        loss, per = task.forward(vlm.model, batch)
        ref = vlm.model(**inputs).loss
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    assert per["units"].sum() == (batch["labels"] != IGNORE).sum()
    two = conv(0, [user, {"role": "assistant", "content": [{"type": "text", "text": "a"}]}, user,
                   {"role": "assistant", "content": [{"type": "text", "text": "b"}]}])
    with pytest.raises(VlmprobeError, match="single-turn") as err:
        ChatCollator(vlm.processor, family=vlm.family, encoder_decoder=True)(list(ConversationDataset([two])))
    assert "\n" not in str(err.value)
