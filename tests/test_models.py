"""The tiny test models (vlmprobe.testing) loaded back through the public specs, and the model
interface on them: CLIP embeddings, VLM prompts, batch-invariant generation, 8/4-bit loading,
one-line errors."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import vlmprobe
from vlmprobe.errors import ModelLoadError
from vlmprobe.models.clip import HFClipModel, OpenClipModel
from vlmprobe.models.vlm import VisionLanguageModel
from vlmprobe.testing import IMAGE_SIZE, MARKER, PATCH_SIZE, build_tiny_model, build_tiny_models
from vlmprobe.testing.__main__ import main

QUESTIONS = ["What type of object is in this photo?", "zero",
             'Choose one from "golden retriever, tabby cat" — ünïcode 日本', "Is it a nine?"]
IMAGE_SIZES = [(32, 32), (90, 40), (64, 64), (30, 100)]  # (w, h): several AnyRes grids
VLM_SPECS = {"llava": "USER: <image>\n{} ASSISTANT:", "llava-next": "[INST] <image>\n{} [/INST]"}


def _images(sizes=IMAGE_SIZES, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.fixture(scope="module")
def vlms(tiny_models):
    return {name: vlmprobe.load_model(f"hf:{tiny_models[name]}") for name in VLM_SPECS}


# ---------------------------------------------------------------- building


def test_build_is_idempotent_and_detects_half_written(tiny_models, tmp_path, capsys):
    assert sorted(tiny_models) == ["hfclip", "llava", "llava-next", "openclip"]
    root = Path(tiny_models["llava"]).parent
    stamps = {n: (Path(p) / MARKER).stat().st_mtime_ns for n, p in tiny_models.items()}
    assert build_tiny_models(root) == tiny_models  # complete builds are reused, not rewritten
    assert main([str(root)]) == 0 and f"hf:{tiny_models['llava']}" in capsys.readouterr().out
    assert {n: (Path(p) / MARKER).stat().st_mtime_ns for n, p in tiny_models.items()} == stamps

    first = Path(build_tiny_model(tmp_path, "hfclip"))
    (first / MARKER).unlink()  # as if killed before the marker was written
    (first / "model.safetensors").write_bytes(b"truncated")
    rebuilt = Path(build_tiny_model(tmp_path, "hfclip"))
    assert rebuilt == first and (rebuilt / MARKER).exists()
    assert load_file(rebuilt / "model.safetensors").keys()  # a full file again
    # the seeded recipe repeats byte for byte
    for f in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (rebuilt / f).read_bytes() == (Path(tiny_models["hfclip"]) / f).read_bytes(), f
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.mark.parametrize("name", ["openclip", "hfclip", "llava", "llava-next"])
def test_tiny_models_are_tiny_and_load_their_saved_weights(tiny_models, vlms, name, tmp_path):
    path = Path(tiny_models[name])
    assert sum(f.stat().st_size for f in path.iterdir()) < 4e6
    model = vlms[name].model if name in vlms else vlmprobe.load_model(str(path)).model  # bare path: detected
    if name == "openclip":
        saved, loaded = load_file(path / "open_clip_model.safetensors"), model.state_dict()
    else:  # transformers renames keys on load and back on save: compare through a re-save
        model.save_pretrained(tmp_path)
        saved, loaded = load_file(path / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert saved and set(saved) <= set(loaded)
    for key, tensor in saved.items():  # the files' weights, not a fresh random init
        assert torch.equal(loaded[key], tensor), key


# ---------------------------------------------------------------- CLIP


@pytest.mark.parametrize("kind", ["openclip", "hfclip"])
def test_clip_specs_and_embeddings(tiny_models, kind):
    path = tiny_models[kind]
    specs = [f"openclip:local-dir:{path}", path] if kind == "openclip" else [f"hfclip:{path}", path]
    models = [vlmprobe.load_model(s) for s in specs]
    cls = OpenClipModel if kind == "openclip" else HFClipModel
    assert all(isinstance(m, cls) and m.spec == s for m, s in zip(models, specs))
    m = models[0]
    pixels = torch.stack([m.preprocess(im.convert(mode)) for im, mode in zip(_images(), "RGB RGBA L P".split())])
    assert pixels.shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE)
    img = m.encode_images(pixels)
    texts = ["a photo of a zero.", "a photo of a golden retriever.", "日本 ünïcode", ""]
    txt = m.encode_texts(texts, batch_size=3)  # crosses a batch boundary
    assert img.shape[0] == 4 and txt.shape == (4, img.shape[1]) and img.dtype == txt.dtype == torch.float32
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(4))
    assert torch.pdist(txt).min() > 1e-3 and torch.pdist(img).min() > 1e-3  # inputs are told apart
    torch.testing.assert_close(models[1].encode_texts(texts), txt)  # bare path == spec
    torch.testing.assert_close(m.encode_texts(texts[1:2]), txt[1:2], atol=1e-5, rtol=1e-5)  # padding-free
    scores = m.score(_images()[:2], ["zero", "one", "golden retriever"])
    assert scores.shape == (2, 3) and torch.isfinite(scores).all()


def test_hfclip_pools_text_at_eos(tiny_models):
    """GUIDE 6: eos_token_id == 2 makes transformers pool at the largest id; ours pools at EOS."""
    m = vlmprobe.load_model(f"hfclip:{tiny_models['hfclip']}")
    tok, cfg = m.processor.tokenizer, m.model.config.text_config
    assert cfg.eos_token_id == tok.eos_token_id == len(tok) - 1 != 2
    texts = ["a photo of a dog.", "zero"]
    enc = tok(texts, padding=True, return_tensors="pt")
    assert enc["input_ids"][1, -1] == tok.eos_token_id  # padded with EOS, as OpenAI CLIP
    with torch.no_grad():
        hidden = m.model.text_model(**enc).last_hidden_state
    eos_pos = (enc["input_ids"] == tok.eos_token_id).int().argmax(-1)
    manual = m.model.text_projection(hidden[torch.arange(2), eos_pos])
    torch.testing.assert_close(m.encode_texts(texts), torch.nn.functional.normalize(manual, dim=-1))


# ---------------------------------------------------------------- VLMs


@pytest.mark.parametrize("name", list(VLM_SPECS))
def test_vlm_render_and_tokens(tiny_models, vlms, name):
    m = vlms[name]
    assert isinstance(m, VisionLanguageModel) and m.spec == f"hf:{tiny_models[name]}"
    bare = vlmprobe.load_model(tiny_models[name])
    assert isinstance(bare, VisionLanguageModel) and bare.spec == tiny_models[name]
    for q in QUESTIONS:
        text = m.render(q)
        assert text == VLM_SPECS[name].format(q) and text.count("<image>") == 1
    assert m.render(QUESTIONS[0], answer_prefix="The photo features a").endswith("] The photo features a"
                                                                                 if name == "llava-next" else
                                                                                 "ASSISTANT: The photo features a")
    assert "<image>" not in m.render("zero", image=False)
    turns = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "zero"}]}]
    assert m.processor.apply_chat_template(turns) == VLM_SPECS[name].format("q") + " zero</s>"  # fine-tuning
    tok = m.tokenizer
    assert tok.convert_tokens_to_ids("<image>") == m.model.config.image_token_id != tok.unk_token_id
    assert tok.pad_token_id not in (None, tok.eos_token_id) and m.model.generation_config.eos_token_id == tok.eos_token_id
    for text in QUESTIONS + ["The photo features a golden retriever", "🐕 naïve", "zero one two three nine"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids and tok.decode(ids) == text
    assert len(tok(" photo", add_special_tokens=False)["input_ids"]) == 1  # common words are whole tokens
    batch = m.encode(_images()[:1], [m.render("zero")])
    n_image = int((batch["input_ids"] == m.model.config.image_token_id).sum())
    if name == "llava":  # CLS dropped by the "default" strategy
        assert n_image == (IMAGE_SIZE // PATCH_SIZE) ** 2
    else:  # AnyRes: base tile + unpadded high-res grid + one newline per grid row
        assert n_image > (IMAGE_SIZE // PATCH_SIZE) ** 2
    assert batch["input_ids"][0, 0] == tok.bos_token_id


@pytest.mark.parametrize("name", list(VLM_SPECS))
def test_vlm_generate_is_batch_invariant(vlms, name):
    m = vlms[name]
    images = _images()
    singles = [m.generate([im], [q], max_new_tokens=6)[0] for im, q in zip(images, QUESTIONS)]
    batch = m.encode(images, [m.render(q) for q in QUESTIONS])
    assert (batch["attention_mask"] == 0).any() and (batch["attention_mask"][:, -1] == 1).all()  # left padded
    assert m.generate(images, [m.render(q) for q in QUESTIONS], max_new_tokens=6, rendered=True) == singles
    assert len(set(singles)) == len(singles) and all(singles)  # random weights, but input-dependent text
    text_only = m.generate(None, QUESTIONS[:2], max_new_tokens=4)  # no image: no <image> token, no pixels
    assert len(text_only) == 2 and text_only[1] == m.generate(None, QUESTIONS[1:2], max_new_tokens=4)[0]


@pytest.mark.parametrize("mode", ["load_in_8bit", "load_in_4bit"])
def test_bitsandbytes_loading_on_cpu(tiny_models, vlms, mode):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    m = vlmprobe.load_model(f"hf:{tiny_models['llava']}", **{mode: True})
    layer = m.model.model.language_model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear8bitLt if mode == "load_in_8bit" else bnb.nn.Linear4bit)
    ref = vlms["llava"]
    images, texts = _images()[:1], [ref.render("zero")]
    with torch.no_grad():
        logits = m.model(**m.encode(images, texts)).logits.float()
        expected = ref.model(**ref.encode(images, texts)).logits.float()
    assert logits.shape == expected.shape and torch.isfinite(logits).all()
    corr = torch.corrcoef(torch.stack([logits.flatten(), expected.flatten()]))[0, 1]
    assert corr > (0.99 if mode == "load_in_8bit" else 0.8), corr  # quantised, not garbage
    assert len(m.generate(images, ["zero"], max_new_tokens=3)) == 1


# ---------------------------------------------------------------- errors


def _one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg


def test_bad_specs_fail_with_one_line(tiny_models, tmp_path):
    for spec, needle in [("foo:bar", "unknown model spec"), ("nosuchmodel", "unknown model spec"),
                         (f"hf:{tmp_path}/missing", "does not exist"), (str(tmp_path / "missing"), "does not exist"),
                         (f"hfclip:{tmp_path}/missing", "does not exist"),
                         (f"openclip:local-dir:{tmp_path}/missing", "does not exist"),
                         (f"hfclip:{tiny_models['llava']}", "not a CLIP model"),
                         (f"openclip:local-dir:{tiny_models['hfclip']}", "open_clip_config.json is missing"),
                         (f"hf:{tiny_models['llava']}+adapter:{tmp_path}/none", "does not exist")]:
        with pytest.raises(ModelLoadError) as e:
            vlmprobe.load_model(spec)
        _one_line(e, needle)
    with pytest.raises(ModelLoadError) as e:
        vlmprobe.load_model(tiny_models["llava"], no_such_option=1)
    _one_line(e, "no_such_option")


def test_missing_files_fail_with_one_line(tiny_models, tmp_path):
    vlm = Path(shutil.copytree(tiny_models["llava"], tmp_path / "llava"))
    (vlm / "chat_template.jinja").unlink()
    assert "chat_template" not in json.loads((vlm / "tokenizer_config.json").read_text())
    for spec in (f"hf:{vlm}", str(vlm)):
        with pytest.raises(ModelLoadError) as e:
            vlmprobe.load_model(spec)
        _one_line(e, "chat template", str(vlm))
    oc = Path(shutil.copytree(tiny_models["openclip"], tmp_path / "openclip"))
    (oc / "open_clip_model.safetensors").unlink()  # open_clip alone would silently init randomly
    with pytest.raises(ModelLoadError) as e:
        vlmprobe.load_model(f"openclip:local-dir:{oc}")
    _one_line(e, "no weights", str(oc))
    noweights = Path(shutil.copytree(tiny_models["llava"], tmp_path / "llava-noweights"))
    (noweights / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as e:
        vlmprobe.load_model(f"hf:{noweights}")
    _one_line(e, "could not load model")


def test_random_weight_specs_mean_the_same_weights_at_every_load():
    """``openclip:ARCH`` and ``timm:NAME@random`` build their random weights from a fixed seed
    (caches keyed by the spec, e.g. image embeddings, must describe the weights a later load gets),
    and leave the caller's RNG where it was."""
    import torch

    from vlmprobe.models.registry import load_model

    for spec in ("openclip:ViT-S-32", "timm:resnet18@random"):
        torch.manual_seed(123)
        expected = torch.rand(1)
        torch.manual_seed(123)
        a = load_model(spec)
        assert torch.equal(torch.rand(1), expected), spec  # the caller's RNG state is restored
        b = load_model(spec)
        sa, sb = (getattr(m, "model", None) or m.net for m in (a, b))
        sa, sb = sa.state_dict(), sb.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), spec
