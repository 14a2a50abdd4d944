"""The tiny VLMs built around the REAL tokenizers (LLaVA-1.5: LLaMA-2 SentencePiece; Qwen2-VL:
Qwen2 byte-level BPE; vlmprobe.testing.real): likelihood over all 1,000 ImageNet class names
(fast == naive == a plain forward of the whole text), generation and the matchers, ImageWikiQA
scoring, and the fine-tuning collator's answer mask, token by token."""
import numpy as np
import pytest
import torch
from PIL import Image

import vlmprobe
from vlmprobe.models.likelihood import continuation_logprobs

TOL = 1e-4
QUESTION = "What type of object is in this photo?"
PAPER_PREFIX = "The photo features a"
KINDS = ("llava-real", "qwen2-vl-real")


@pytest.fixture(scope="module")
def vlms(real_models):
    return {k: vlmprobe.load_model(f"hf:{real_models[k]}") for k in KINDS}


@pytest.fixture(scope="module")
def classnames():
    from vlmprobe.data.imagenet_classes import imagenet_names  # what --classes imagenet uses

    return list(imagenet_names())


def image(seed=0, size=(40, 30)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def with_article(prefix, names):
    """The a/an option spelled out here (not the library's): article chosen by the first letter,
    a trailing article word dropped from the answer prefix."""
    if prefix and prefix.split(" ")[-1] in ("a", "an"):
        prefix = prefix.rsplit(" ", 1)[0]
    return prefix, [("an " if n[0] in "aeiouAEIOU" else "a ") + n for n in names]


# ------------------------------------------------------------------- independent reference
def _scored_count(tok, prefix, text):
    """Tokens of ``text`` (= prefix + sep + candidate) after its longest common prefix with
    tok(prefix): the candidate's tokens as the model reads the whole text."""
    P, F = tok(prefix).input_ids, tok(text).input_ids
    n = 0
    while n < min(len(P), len(F)) and P[n] == F[n]:
        n += 1
    return len(F) - n


@torch.no_grad()
def plain_logprobs(vlm, img, prefix, candidates, batch=100, counts=None):
    """Per-candidate token log-probs [K, L] (NaN-padded) from plain forwards of the processor's
    ids for the whole text ``prefix + " " + candidate`` (no cache, no trie, no shared code with
    the engine): the language model's hidden states, the output head at the needed rows
    (log p = logit[target] - logsumexp(logits), one head matmul per batch: 1.3x faster than a
    head call per row with the real 152k Qwen2 vocabulary)."""
    sep = "" if prefix[-1].isspace() else " "
    texts = [prefix + sep + c for c in candidates]
    counts = [_scored_count(vlm.tokenizer, prefix, t) for t in texts] if counts is None else list(counts)
    out = torch.full((len(texts), max(counts)), torch.nan)
    head = vlm.model.get_output_embeddings()
    old = vlm.tokenizer.padding_side
    vlm.tokenizer.padding_side = "right"
    try:
        for s in range(0, len(texts), batch):
            enc = vlm.processor(text=texts[s:s + batch], images=[img] * len(texts[s:s + batch]), padding=True,
                                return_tensors="pt")
            hidden = vlm.model.model(**enc).last_hidden_state
            # the rows (r, t) that predict candidate token t+1, all of the batch at once:
            # log p = logit[target] - logsumexp(logits), one head matmul for the batch
            rows, cols, slots = [], [], []
            for r in range(hidden.shape[0]):
                L, m = int(enc["attention_mask"][r].sum()), counts[s + r]
                rows += [r] * m
                cols += range(L - m - 1, L - 1)
                slots += [(s + r, j) for j in range(m)]
            rows, cols = torch.tensor(rows), torch.tensor(cols)
            logits = head(hidden[rows, cols]).float()
            target = logits.gather(1, enc["input_ids"][rows, cols + 1, None]).squeeze(1)
            logp = target - logits.logsumexp(-1)
            out[tuple(torch.tensor(slots).T)] = logp
    finally:
        vlm.tokenizer.padding_side = old
    return out


CONFIGS = [(None, False), (PAPER_PREFIX, False), (None, True), (PAPER_PREFIX, True)]


@pytest.mark.parametrize("kind", KINDS)
def test_likelihood_all_imagenet_names(vlms, classnames, kind):
    """All 1,000 names, with and without the paper's answer prefix and the a/an article: the
    engine's per-token log-probs equal the plain forward's (1e-4, fp32), sums and means too, same
    argmax. The naive path (one full forward per candidate: ~0.1 s each here) is held to the plain
    forward on 13-15 names per setting (the longest, a spread, the shared-prefix sharks).
    Qwen2-VL's fast path runs with M-RoPE positions (three axes) and is held to the same."""
    vlm, img = vlms[kind], image()
    lengths = {}
    for answer_prefix, article in CONFIGS:
        prefix_text, names = with_article(answer_prefix, classnames) if article else (answer_prefix, classnames)
        prefix = vlm.render(QUESTION, answer_prefix=prefix_text)
        counts = torch.tensor([_scored_count(vlm.tokenizer, prefix, prefix + " " * (not prefix[-1].isspace()) + n)
                               for n in names])
        lengths[(answer_prefix, article)] = counts
        probe = sorted(set(counts.argsort(descending=True)[:3].tolist() + list(range(0, 1000, 111)) + [2, 3, 4]))
        naive = continuation_logprobs(vlm, [img], prefix, [names[i] for i in probe], scoring="naive",
                                      reduction="tokens")[0]
        plain = plain_logprobs(vlm, img, prefix, names, counts=counts.tolist())
        fast = continuation_logprobs(vlm, [img], prefix, names, reduction="tokens")[0]
        assert fast.shape == plain.shape and torch.equal(fast.isnan(), plain.isnan())
        assert (fast - plain).nan_to_num().abs().max().item() <= TOL
        for red in (lambda x: x.nansum(1), lambda x: x.nanmean(1)):
            a, b = red(fast), red(plain)
            assert (a - b).abs().max().item() <= TOL and a.argmax() == b.argmax()
        plain = plain[probe]
        width = naive.shape[1]
        assert torch.equal(naive.isnan(), plain[:, :width].isnan()) and (~plain[:, width:].isnan()).sum() == 0
        assert (naive - plain[:, :width]).nan_to_num().abs().max().item() <= TOL
    if kind == "llava-real":  # real SentencePiece lengths: 3.25 tokens per name on average, 12 at most
        bare = lengths[(None, False)].float()
        assert bare.mean().item() == pytest.approx(3.253, abs=1e-3) and bare.max().item() == 12
        assert (lengths[(PAPER_PREFIX, True)] >= bare + 1).all()  # the article is scored too


# ---------------------------------------------------------------------------- generation
@torch.no_grad()
def greedy_by_hand(vlm, img, prompt, steps):
    """Greedy decoding as repeated plain forwards of the whole text's ids (no cache)."""
    enc = vlm.processor(text=[vlm.render(prompt)], images=[img], return_tensors="pt")
    ids = enc.pop("input_ids")
    enc.pop("attention_mask")
    new = []
    for _ in range(steps):
        extra = {k: (torch.cat([v, v.new_zeros(1, len(new))], 1) if k.endswith("token_type_ids") else v)
                 for k, v in enc.items()}
        full = torch.cat([ids, torch.tensor([new], dtype=torch.long)], 1)
        nxt = int(vlm.model(input_ids=full, attention_mask=torch.ones_like(full), **extra).logits[0, -1].argmax())
        if nxt == vlm.tokenizer.eos_token_id:
            break
        new.append(nxt)
    return vlm.tokenizer.decode(new, skip_special_tokens=True).strip()


@pytest.mark.parametrize("kind", KINDS)
def test_generation_and_matchers(vlms, classnames, kind):
    from vlmprobe.classify.matching import match_response

    vlm = vlms[kind]
    imgs = [image(1, (40, 30)), image(2, (24, 56))]
    batched = vlm.generate(imgs, [QUESTION] * 2, max_new_tokens=6)
    alone = [vlm.generate([im], [QUESTION], max_new_tokens=6)[0] for im in imgs]
    assert batched == alone  # left padding with the real pad token
    assert alone[0] == greedy_by_hand(vlm, imgs[0], QUESTION, 6)
    # a model that names a class generates the answer's tokens after the prompt; they decode
    # (SentencePiece "▁" -> space and its leading-space strip, byte fallback / byte-level BPE) to
    # exactly the answer text, in which the matchers find the class
    tok = vlm.tokenizer
    prefix = vlm.render(QUESTION)
    sep = "" if prefix[-1].isspace() else " "
    P = tok(prefix).input_ids
    for i, name in enumerate(classnames):
        answer = f"The photo features a {name}."
        F = tok(prefix + sep + answer).input_ids
        assert F[:len(P)] == P
        response = tok.decode(F[len(P):], skip_special_tokens=True).strip()
        assert response == answer
        assert tok.decode(tok(prefix + sep + name).input_ids[len(P):], skip_special_tokens=True).strip() == name
        for rule in ("substring", "word"):
            assert i in match_response(response, classnames, rule).matches, (name, rule)


# ----------------------------------------------------------------------------- ImageWikiQA
def _question(i, options, label):
    from vlmprobe.wikiqa.loader import Question

    text = "Which fact about the animal in the photo is true?\n" + "\n".join(
        f"{x}. {o}" for x, o in zip("ABCD", options)) + "\nChoose A, B, C, or D."
    return Question(id=f"L{i}", line=i, image="x.JPEG", text=text, stem=text.split("\n")[0], options=options,
                    label=label, classname="tench")


@pytest.mark.parametrize("kind", KINDS)
def test_wikiqa_letter_and_option_scoring(vlms, kind):
    from vlmprobe.wikiqa.prompts import ANSWER_PREFIX, Condition
    from vlmprobe.wikiqa.likelihood import LikelihoodScorer

    vlm = vlms[kind]
    qs = [_question(1, ["It lives in fresh water", "It can fly", "Ünïcødé 猫 café", "It is a mammal"], 0),
          _question(2, ["Yes", "No", "It eats plankton and small fish", "None of the above"], 2)]
    imgs = [image(3), image(4, (30, 50))]
    scorer = LikelihoodScorer(Condition(), scoring="fast")
    got = scorer.option_scores(vlm, qs, imgs)
    for b, q in enumerate(qs):
        prefix = vlm.render(Condition().question(q), answer_prefix=ANSWER_PREFIX)
        plain = plain_logprobs(vlm, imgs[b], prefix, list("ABCD") + q.options)
        np.testing.assert_allclose(got["letter"][b], plain[:4].nansum(1).numpy(), atol=TOL)
        np.testing.assert_allclose(got["text_sum"][b], plain[4:].nansum(1).numpy(), atol=TOL)
        np.testing.assert_allclose(got["text_mean"][b], plain[4:].nanmean(1).numpy(), atol=TOL)
        assert ((~plain[:4].isnan()).sum(1) == 1).all()  # each letter is one token after the prefix
    naive = LikelihoodScorer(Condition(), scoring="naive").option_scores(vlm, qs, imgs)  # fast == naive too
    for k in got:
        np.testing.assert_allclose(got[k], naive[k], atol=TOL)


# --------------------------------------------------------------------------- fine-tuning
CONVERSATIONS = [
    [("user", "What type of object is in the photo?", True), ("assistant", "tench", False)],
    [("user", "What type of object is in the photo?", True), ("assistant", "great white shark", False),
     ("user", "Is it dangerous?", False), ("assistant", "Yes, it can be.", False)],
    [("user", "Name it in two languages.", True), ("assistant", "Ünïcødé 猫 — café au lait", False)],
]


def _messages(turns):
    return [{"role": r, "content": ([{"type": "image"}] if img else []) + [{"type": "text", "text": t}]}
            for r, t, img in turns]


@pytest.mark.parametrize("kind", KINDS)
def test_collator_masks_exactly_the_answer_tokens(vlms, kind):
    """Labels are -100 except on each assistant answer's tokens (+ the end-of-turn token): the
    labelled runs, in order, are the tokens the answers add after their generation prompts."""
    from vlmprobe.finetune.collate import IGNORE, ChatCollator

    vlm = vlms[kind]
    tok, collator = vlm.tokenizer, ChatCollator(vlm.processor)
    end = tok.eos_token  # LLaVA: </s> appended by the collator; Qwen2-VL: <|im_end|> from the template
    items = [{"id": str(i), "messages": _messages(t), "image": image(10 + i)} for i, t in enumerate(CONVERSATIONS)]
    batch = collator(items)
    for r, turns in enumerate(CONVERSATIONS):
        n = int(batch["attention_mask"][r].sum())
        ids, labels = batch["input_ids"][r, :n].tolist(), batch["labels"][r, :n].tolist()
        assert all(lab in (IGNORE, i) for lab, i in zip(labels, ids))
        runs, cur = [], []
        for i, lab in zip(ids, labels):
            if lab != IGNORE:
                cur.append(i)
            elif cur:
                runs.append(cur)
                cur = []
        runs += [cur] if cur else []
        answers = [t for role, t, _ in turns if role == "assistant"]
        assert len(runs) == len(answers)
        for k, (run, answer) in enumerate(zip(runs, answers)):
            assert run[-1] == tok.convert_tokens_to_ids(end)
            assert tok.decode(run[:-1]).strip() == answer  # whole answer, nothing of the prompt
            # the run is exactly what the answer adds to the rendered prompt, token by token
            msgs = _messages(turns)
            upto = msgs[:2 * k + 1]
            prompt = vlm.processor.apply_chat_template(upto, add_generation_prompt=True)
            P = tok(prompt).input_ids
            T = tok(prompt + (" " if kind == "llava-real" else "") + answer + end).input_ids
            assert T[:len(P)] == P and T[len(P):] == run, (answer, tok.convert_ids_to_tokens(run))
        image_id = getattr(vlm.model.config, "image_token_id", None) or vlm.model.config.image_token_index
        assert ids.count(image_id) > 0 and all(lab == IGNORE for i, lab in zip(ids, labels) if i == image_id)


# ------------------------------------------------------------------------------ end to end
def test_eval_end_to_end_on_real_tokenizers(vlms, real_models, digits_folder, tmp_path):
    """``vlmprobe eval`` (likelihood: paper prefix + a/an, fast, on LLaVA; generation on Qwen2-VL)
    through the one sample loop: stored scores / responses equal the direct calls."""
    import json

    from vlmprobe.classify.generation import Method as Generate
    from vlmprobe.cli import main

    out = tmp_path / "lik"
    assert main(["eval", "--method", "likelihood", "--model", f"hf:{real_models['llava-real']}", "--data",
                 str(digits_folder), "--limit", "2", "--answer-prefix", "paper", "--article", "a/an", "--out",
                 str(out), "--workers", "0", "--no-progress"]) == 0
    data = vlmprobe.load_dataset(str(digits_folder), limit=2)
    imgs = [data.load_image(i) for i in range(2)]
    vlm = vlms["llava-real"]
    prefix_text, names = with_article(PAPER_PREFIX, data.classnames)
    direct = continuation_logprobs(vlm, imgs, vlm.render(QUESTION, answer_prefix=prefix_text), names).numpy()
    assert np.abs(np.load(out / "scores.npy") - direct).max() <= TOL

    qwen = vlms["qwen2-vl-real"]
    vlmprobe.evaluate(qwen, data, Generate(max_new_tokens=5), tmp_path / "gen", batch_size=2, progress=False)
    records = [json.loads(line) for line in open(tmp_path / "gen" / "samples.jsonl")]
    assert [r["response"] for r in records] == qwen.generate(imgs, [QUESTION] * 2, max_new_tokens=5)
