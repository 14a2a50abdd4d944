"""Parts by role (issue 32): the adapter asks transformers' own API for the language model and the
vision tower, falls back to the family's names only where the API is silent, and treats the
projector as optional; the row-splitting helpers map merger inputs and pixel-shuffle inputs to
images; a processor's image placeholder counts as one."""
from __future__ import annotations

import pytest
import torch

import vlmprobe
from vlmprobe.errors import VlmprobeError
from vlmprobe.models import families
from vlmprobe.models.families import Family, register_family, split_rows_by_grid, split_rows_by_tokens


@pytest.fixture(scope="module")
def llava(tiny_models):
    return vlmprobe.load_model(f"hf:{tiny_models['llava']}")


def test_language_model_and_vision_tower_come_from_the_api(llava):
    """A family record whose names match nothing still finds both parts: get_decoder() and
    get_encoder(modality="image") answer first."""
    fam = Family("renamed", (), language_model=("no_such_lm",), vision_tower=("no_such_tower",), projector=())
    assert fam.find_module(llava.model, "language_model") == "model.language_model"
    assert fam.find_module(llava.model, "vision_tower") == "model.vision_tower"


def test_family_names_answer_where_the_api_is_silent(llava, monkeypatch):
    """get_decoder() returning the model itself (IDEFICS-1, Fuyu-style) is no answer: the
    family's names are used; with no name either, the error is one line naming both."""
    monkeypatch.setattr(type(llava.model), "get_decoder", lambda self: self)
    fam = Family("named", (), language_model=("language_model",))
    assert fam.find_module(llava.model, "language_model") == "model.language_model"
    with pytest.raises(VlmprobeError, match="get_decoder") as err:
        Family("nameless", (), language_model=("nope",)).find_module(llava.model, "language_model")
    assert "\n" not in str(err.value)


def test_the_projector_is_optional(llava, monkeypatch):
    """Without a projector module, features "all" are the LM layers only, naming "projector"
    fails in one line, and likelihood and generation run as before."""
    saved = list(families.FAMILIES)
    monkeypatch.setattr(families, "PROJECTOR_NAMES", ())
    try:
        register_family(Family("llava", ("llava",), projector=()))
        assert llava.family.find_module(llava.model, "projector", required=False) is None
        assert llava.patch_layers() == ()
        from vlmprobe.testing.conformance import images

        feats = llava.features(images(2), layers="all", pooling="last")
        assert sorted(feats) == sorted(f"lm.{i}" for i in range(llava.num_layers() + 1))
        with pytest.raises(VlmprobeError, match="no projector") as err:
            llava.features(images(1), layers=["projector"])
        assert "\n" not in str(err.value)
        assert llava.score(images(2), ["cat", "dog"], scoring="naive").shape == (2, 2)
    finally:
        families.FAMILIES[:] = saved


def test_grid_split_takes_merger_inputs_grouped_per_token():
    """Kimi's merger input is [tokens, merge^2, D]: 18 merged tokens of 4 patches for grids of
    16, 24 and 32 patches split into 16, 24 and 32 patch rows (main split [4, 6, 8] of the
    72 rows: the row count was read before flattening)."""
    grid = torch.tensor([[1, 4, 4], [1, 4, 6], [1, 4, 8]])
    x = torch.arange(18 * 4 * 2, dtype=torch.float).reshape(18, 4, 2)
    parts = split_rows_by_grid(None, {"image_grid_thw": grid}, x, 3)
    assert [p.shape for p in parts] == [(16, 2), (24, 2), (32, 2)]
    assert torch.equal(torch.cat(parts), x.reshape(-1, 2))
    merged = split_rows_by_grid(None, {"image_grid_thw": grid}, torch.zeros(18, 2), 3)  # after the merger
    assert [p.shape[0] for p in merged] == [4, 6, 8]


def test_token_split_takes_pixel_shuffle_inputs():
    """Aya Vision's adapter input has 4 rows per image token (before its 2x2 pixel shuffle):
    per image, 4 x its image-token count (main refused: '176 vision rows for 44 image tokens')."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(image_token_id=7)
    ids = torch.tensor([[7] * 4 + [1] * 8, [7] * 8 + [1] * 4])
    parts = split_rows_by_tokens(cfg, {"input_ids": ids}, torch.zeros(48, 3), 2)
    assert [p.shape[0] for p in parts] == [16, 32]
    assert [p.shape[0] for p in split_rows_by_tokens(cfg, {"input_ids": ids}, torch.zeros(12, 3), 2)] == [4, 8]
    with pytest.raises(VlmprobeError, match="vision rows"):
        split_rows_by_tokens(cfg, {"input_ids": ids}, torch.zeros(13, 3), 2)


def test_a_processor_image_placeholder_counts_as_an_image_token(llava):
    """Qianfan-OCR's template writes "<image>", its processor expands it to <img>...</img>
    (image_placeholder_token): the likelihood aligns prompt tokens after it."""
    tok = llava.tokenizer
    setattr(llava.processor, "image_placeholder_token", tok.eos_token)
    try:
        assert tok.eos_token_id in llava.placeholder_token_ids
    finally:
        delattr(llava.processor, "image_placeholder_token")
    assert tok.eos_token_id not in llava.placeholder_token_ids


def test_training_inputs_take_the_model_dtype(llava):
    """Llama 4's image processor returns bfloat16 pixels whatever the model's dtype: the
    training forward casts floating inputs to the model's dtype (ints stay ints)."""
    from vlmprobe.models.vlm import cast_inputs

    batch = {"pixel_values": torch.zeros(1, 3, 32, 32, dtype=torch.bfloat16), "input_ids": torch.ones(1, 4).long(),
             "note": "kept"}
    out = cast_inputs(batch, llava.model)
    assert out["pixel_values"].dtype == llava.dtype and out["input_ids"].dtype == torch.long and out["note"] == "kept"


def test_a_merger_returning_one_tensor_per_image_gives_projector_features(tmp_path_factory):
    """MiniCPM-V 4.6's ``merger`` returns a list (one tensor per image) over the packed tower output
    [1, patches, D]: ``vision`` / ``projector`` features are per-image means, the projector's equal
    to the mean of ``get_image_features``' tokens (main: AttributeError, 'list' object has no
    attribute 'detach')."""
    from vlmprobe.models.features import vlm_features
    from vlmprobe.testing.conformance import images
    from vlmprobe.testing.families import build_family

    vlm = vlmprobe.load_model(f"hf:{build_family(tmp_path_factory.mktemp('minicpm'), 'minicpmv4_6')}")
    imgs = images(2)
    got = vlm_features(vlm, imgs, layers=["vision", "projector"])
    assert got["vision"].shape == (2, vlm.model.config.vision_config.hidden_size)
    assert got["projector"].shape == (2, vlm.model.config.text_config.hidden_size)
    batch = vlm.encode(imgs, [vlm.render("What is this?", image=True)] * 2, padding_side="right")
    with torch.no_grad():
        tokens = vlm.model.model.get_image_features(batch["pixel_values"], batch["target_sizes"]).pooler_output
    assert torch.allclose(got["projector"], torch.stack([t.float().mean(0) for t in tokens]), atol=1e-5)


def test_an_adapter_reloads_as_saved_where_peft_renames_its_keys(tmp_path_factory):
    """Mistral Large 4: peft applies transformers' non-idempotent renaming ``.shared_experts.`` ->
    ``.mlp.shared_experts.`` to the adapter it saved itself; ``hf:BASE+adapter:PATH`` copies the saved
    tensors in as saved, so the reloaded adapter scores like the in-memory one (the conformance
    ``lora`` check; main: max abs difference 1.92e-01 > 1e-4)."""
    from vlmprobe.testing.conformance import check_lora
    from vlmprobe.testing.families import build_family

    check_lora(str(build_family(tmp_path_factory.mktemp("ml4"), "mistral_large4")), None)
