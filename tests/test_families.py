"""Model families beyond LLaVA through the same public interface: a tiny Qwen2-VL (built from
its config, loaded with ``hf:PATH``) generates, scores (naive, and fast with its M-RoPE
positions, equal to 1e-4), gives features and probes; the family adapters name each
family's modules; unknown options and missing local paths fail in one line."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlmprobe
from vlmprobe.cli import main as cli_main
from vlmprobe.errors import ModelLoadError, VlmprobeError
from vlmprobe.models.families import FAMILIES, GENERIC, family_of

CANDIDATES = ["tench", "great white shark", "great", "golden retriever", "Ünïcødé 猫", "zero"]
TOL = 1e-4


@pytest.fixture(scope="module")
def qwen_path(tiny_models):
    """The tiny Qwen2-VL, built beside the session's other tiny models."""
    from pathlib import Path

    from vlmprobe.testing import build_tiny_model

    return build_tiny_model(Path(tiny_models["llava"]).parent, "qwen2-vl")


@pytest.fixture(scope="module")
def qwen(qwen_path):
    return vlmprobe.load_model(f"hf:{qwen_path}")


def images(n, seed=0):
    """Random RGB images of different sizes (Qwen2-VL: different numbers of image tokens)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (32 + 16 * (i % 2), 32 - 12 * (i % 3 == 2), 3), dtype=np.uint8))
            for i in range(n)]


def test_family_adapters_name_the_modules(tiny_models, qwen):
    from vlmprobe.finetune.lora import language_model_path, lora_target_regex, projector_path

    llava = vlmprobe.load_model(f"hf:{tiny_models['llava']}")
    assert family_of(llava.model).name == "llava" and family_of(qwen.model).name == "qwen2-vl"
    assert llava.image_token_id == llava.tokenizer.convert_tokens_to_ids("<image>")
    assert qwen.image_token_id == qwen.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert projector_path(qwen.model).endswith("visual.merger")
    assert projector_path(llava.model).endswith("multi_modal_projector")
    pattern = lora_target_regex(qwen.model, ["q_proj", "v_proj"])
    import re

    hits = [n for n, _ in qwen.model.named_modules() if re.fullmatch(pattern, n)]
    assert hits and all(n.startswith(language_model_path(qwen.model) + ".") for n in hits)
    assert not any("visual" in n for n in hits)
    from transformers import PretrainedConfig

    assert family_of(PretrainedConfig()) is GENERIC
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)


def test_generation_is_batch_invariant(qwen):
    imgs = images(3)
    questions = ["What type of object is in this photo?", "Describe it.", "What is it?"]
    together = qwen.generate(imgs, questions, max_new_tokens=5)
    alone = [qwen.generate([im], [q], max_new_tokens=5)[0] for im, q in zip(imgs, questions)]
    assert together == alone and all(isinstance(t, str) for t in together)
    assert len(qwen.generate(None, ["hello"], max_new_tokens=3)) == 1  # text only


def test_likelihood_naive_is_the_plain_forward_and_fast_equals_it(qwen):
    """Every scored token's log-prob equals the one read off a plain forward of the whole text;
    the fast path (shared prefix, trie, M-RoPE positions from get_rope_index) equals it, at any
    batch size and chunking, with images of different token counts in one batch."""
    imgs = images(3)
    tokens = qwen.score(imgs, CANDIDATES, reduction="tokens", scoring="naive")
    prefix = qwen.render("What type of object is in this photo?")
    assert prefix.endswith("assistant\n")
    for b, img in enumerate(imgs[:2]):
        P = qwen.encode([img], [prefix])["input_ids"].shape[1]
        for k, c in enumerate(CANDIDATES):
            batch = qwen.encode([img], [prefix + c])  # the prompt ends in "\n": no separator
            with torch.no_grad():
                logp = qwen.model(**batch).logits[0].float().log_softmax(-1)
            ids = batch["input_ids"][0]
            manual = torch.tensor([logp[t - 1, ids[t]].item() for t in range(P, len(ids))])
            got = tokens[b, k][~tokens[b, k].isnan()]
            assert torch.allclose(got, manual, atol=TOL), c
    fast = qwen.score(imgs, CANDIDATES, reduction="tokens", batch_size=3, chunk_size=4)
    assert torch.equal(fast.isnan(), tokens.isnan())
    assert (fast - tokens).nan_to_num().abs().max().item() <= TOL
    sums = qwen.score(imgs, CANDIDATES, answer_prefix="The photo features a", batch_size=2)
    naive = qwen.score(imgs, CANDIDATES, answer_prefix="The photo features a", scoring="naive")
    assert (sums - naive).abs().max().item() <= TOL
    text = [qwen.render("Name an animal.", image=False)] * 2  # text only: plain positions
    assert (qwen.logprobs(None, text, CANDIDATES) - qwen.logprobs(None, text, CANDIDATES, scoring="naive")
            ).abs().max().item() <= TOL
    cfg = qwen.model.config.text_config
    old = cfg._attn_implementation
    from vlmprobe.models.likelihood import continuation_logprobs, fast_path

    assert fast_path(qwen.model) == "tree"
    try:  # an attention kernel that ignores the 4-D mask: the state path (docs/hybrid-likelihood.md), not the tree mask
        cfg._attn_implementation = "flash_attention_2"
        assert fast_path(qwen.model) == "state"
    finally:
        cfg._attn_implementation = old
    state = continuation_logprobs(qwen, imgs, prefix, CANDIDATES, reduction="tokens", batch_size=3, chunk_size=4,
                                  path="state")  # M-RoPE continued from the prefix's copy, per-image lengths
    assert (state - tokens).nan_to_num().abs().max().item() <= TOL


def test_features_and_probe(qwen, qwen_path, digits_folder, tmp_path):
    imgs = images(3)
    feats = qwen.features(imgs, layers="all", pooling="last,image-mean,mean")
    n = qwen.num_layers()
    assert set(feats) == {f"lm.{i}:{p}" for i in range(n + 1) for p in ("last", "image-mean", "mean")} | {
        "vision", "projector"}
    assert feats["vision"].shape == (3, qwen.model.config.vision_config.embed_dim)
    assert feats["projector"].shape == (3, qwen.model.config.text_config.hidden_size)
    alone = qwen.features(imgs[2:], layers=["vision", "projector", 1], pooling="image-mean")
    for name, ref in (("vision", "vision"), ("projector", "projector"), ("lm.1", "lm.1:image-mean")):
        assert (alone[name] - feats[ref][2:]).abs().max().item() <= 1e-5, name
    out = tmp_path / "probe"
    args = ["probe", "--model", f"hf:{qwen_path}", "--train", str(digits_folder), "--test",
            str(digits_folder), "--layers=-1,projector", "--pool", "last", "--Cs", "1", "--out", str(out),
            "--batch-size", "8", "--no-progress"]
    assert cli_main(args) == 0
    layers = json.loads((out / "layers.json").read_text())
    assert [r["name"] for r in layers["layers"]] == [f"lm.{n}:last", "projector"]
    assert all(0 <= r["test_accuracy"] <= 1 for r in layers["layers"])
    assert np.load(out / "scores.npy").shape == (40, 10)


def test_eval_likelihood_end_to_end(qwen_path, digits_folder, tmp_path):
    spec = f"hf:{qwen_path}"
    base = ["eval", "--model", spec, "--data", str(digits_folder), "--limit", "6", "--method", "likelihood",
            "--batch-size", "3", "--answer-prefix", "paper", "--no-progress"]
    assert cli_main(base + ["--out", str(tmp_path / "fast")]) == 0
    assert cli_main(base + ["--scoring", "naive", "--out", str(tmp_path / "naive")]) == 0
    fast, naive = (np.load(tmp_path / d / "scores.npy") for d in ("fast", "naive"))
    model = vlmprobe.load_model(spec)
    data = vlmprobe.load_dataset(str(digits_folder), limit=6)
    direct = model.score([data.load_image(i) for i in range(6)], data.classnames, scoring="naive",
                         answer_prefix="The photo features a").numpy()
    assert np.abs(naive - direct).max() <= TOL and np.abs(fast - naive).max() <= TOL


def test_unknown_options_are_rejected(tiny_models, qwen):
    clip = vlmprobe.load_model(f"openclip:local-dir:{tiny_models['openclip']}")
    img = images(1)
    with pytest.raises(TypeError, match="prompt"):
        clip.score(img, ["a", "b"], prompt="x")
    with pytest.raises(TypeError, match="article"):
        qwen.score(img, ["a"], article="a/an")
    with pytest.raises(TypeError, match="chunk"):
        clip.features(img, chunk=3)
    # preprocessed tensors (DataLoader workers) and PIL images give the same zero-shot scores
    pil = clip.score(img, ["zero", "one"])
    assert torch.equal(clip.score([clip.preprocess(img[0])], ["zero", "one"]), pil)


def test_missing_local_path_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spec in ("hf:.vlmprobe-tiny/llava", "hf:./nowhere/llava", "hfclip:../nowhere", f"hf:{tmp_path}/x"):
        with pytest.raises(ModelLoadError, match="does not exist") as err:
            vlmprobe.load_model(spec)
        assert "\n" not in str(err.value) and "repo" not in str(err.value).lower()


def test_readme_family_example_runs(tiny_models):
    """The docs' "A model family" block (docs/extending.md), executed; the registered adapter then finds the
    projector of a tiny Qwen2.5-VL built from its config and cuts its rows per image."""
    import re
    from pathlib import Path

    from vlmprobe.models import families

    page = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    block = re.search(r"### A model family\n.*?```python\n(.*?)```", page, re.S).group(1)
    saved = list(families.FAMILIES)
    try:
        scope: dict = {}
        exec(compile(block, "docs/extending.md", "exec"), scope)
        fam = scope["QWEN2_5_VL"]
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        cfg = Qwen2_5_VLConfig(
            text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, bos_token_id=None, eos_token_id=None,
                             rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]}),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                               patch_size=8, fullatt_block_indexes=[0]))
        model = Qwen2_5_VLForConditionalGeneration(cfg)
        assert family_of(model) is fam and fam.find_module(model, "projector").endswith("visual.merger")
        grid = torch.tensor([[1, 4, 4], [1, 2, 4]])
        parts = fam.split_patch_rows(cfg, {"image_grid_thw": grid}, torch.zeros(6, 32), 2)
        assert [p.shape[0] for p in parts] == [4, 2]
        with pytest.raises(VlmprobeError, match="naive"):
            fam.check_fast_likelihood("qwen2_5_vl")
    finally:
        families.FAMILIES[:] = saved


def test_lora_fine_tuning_step(qwen, digits_folder):
    """The collator labels exactly Qwen2-VL's answer tokens (ChatML, <|im_end|> ends the turn);
    LoRA lands in the language model only and the patch merger (projector) trains in full."""
    import copy

    from vlmprobe.finetune.collate import IGNORE, ChatCollator
    from vlmprobe.finetune.config import AdapterArgs
    from vlmprobe.finetune.data import ConversationDataset, classification_conversations
    from vlmprobe.finetune.lora import setup_vlm_training

    ds = vlmprobe.load_dataset(str(digits_folder), limit=3)
    q = "What type of object is in the photo?"
    batch = ChatCollator(qwen.processor)(list(ConversationDataset(classification_conversations(ds, q))))
    for r in range(3):
        n_prompt = qwen.encode([ds.load_image(r)], [qwen.render(q)])["input_ids"].shape[1]
        lab = batch["labels"][r]
        assert (lab[:n_prompt] == IGNORE).all()
        answer = qwen.tokenizer.decode(lab[lab != IGNORE])
        assert answer == ds.classnames[ds.samples[r].label] + "<|im_end|>"
    model = setup_vlm_training(copy.deepcopy(qwen.model), AdapterArgs(lora_r=4, lora_alpha=8,
                                                                       target_modules=["q_proj", "v_proj"],
                                                                       train_projector=True))
    model.train()
    model(**{k: v for k, v in batch.items() if k != "skipped"}).loss.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any("language_model" in n and "lora_" in n for n in trained)
    assert any("merger" in n for n in trained)
    assert all("lora_" in n or "merger" in n for n in trained)
    assert not any("visual.blocks" in n or "patch_embed" in n for n in trained)
