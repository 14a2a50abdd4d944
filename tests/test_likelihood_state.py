"""The ``state`` fast path (vlmprobe.models.likelihood): the image + prompt once, then every
candidate continues from its own copy of the prefix's cache. Exact (== the plain per-candidate
forward) on a hybrid model whose recurrent layers the tree mask cannot address (Qwen3.5's Gated
DeltaNet) and on attention models where the tree path also runs; the shared prefix cache is never
changed (GUIDE section 4), while reusing it in place, as the paper's code does, is wrong."""
import copy

import pytest
import torch

import vlmprobe
from vlmprobe.errors import VlmprobeError
from vlmprobe.models.likelihood import _output_cache, _state_copy, continuation_logprobs, fast_path, state_layers
from vlmprobe.models.tokentrie import plan_rows
from vlmprobe.testing.conformance import images
from vlmprobe.testing.families import build_family

CANDIDATES = ["tench", "great white shark", "great", "great white", "tiger shark", "tiger", "tench", "Ünïcødé 猫",
              "African bush elephant", "goldfish"]
TOL = 1e-4


@pytest.fixture(scope="module")
def qwen3_5(tmp_path_factory):
    return vlmprobe.load_model(f"hf:{build_family(tmp_path_factory.mktemp('hybrid'), 'qwen3_5')}")


@pytest.fixture(scope="module")
def vlms(tiny_models):
    return {k: vlmprobe.load_model(f"hf:{tiny_models[k]}") for k in ("llava", "llava-next")}


def _max_diff(a, b):
    assert torch.equal(a.isnan(), b.isnan())
    return (a - b).nan_to_num().abs().max().item()


def test_plan_rows_share_prefixes():
    rows, row_of = plan_rows([(1, 2, 3), (1, 2), (1,), (1, 2, 4, 5), (7, 8), (7, 8, 9), (1, 2, 3)])
    assert rows == [(1, 2, 4), (7, 8)] and row_of == [0, 0, -1, 0, 1, 1, 0]


def test_hybrid_needs_the_state_path(qwen3_5):
    assert state_layers(qwen3_5.model.config) and fast_path(qwen3_5.model) == "state"
    with pytest.raises(VlmprobeError, match="'tree' is not exact here; this model needs 'state'"):
        continuation_logprobs(qwen3_5, images(1), qwen3_5.render("What?"), ["cat"], path="tree")


@pytest.mark.parametrize("answer_prefix", [None, "The photo features a"])
def test_state_equals_naive_on_a_hybrid(qwen3_5, answer_prefix):
    """Qwen3.5 (Gated DeltaNet + attention): fast == naive token by token at batch 1 and 5, with a
    candidate row per forward and with all of them in one, and with EOS scoring."""
    vlm, imgs = qwen3_5, images(5)  # different sizes: different prefix lengths (rows run one at a time)
    prompt = vlm.render("What type of object is in this photo?", answer_prefix=answer_prefix)
    naive = continuation_logprobs(vlm, imgs, prompt, CANDIDATES, reduction="tokens", scoring="naive")
    for batch_size in (1, 5):
        for chunk_size in (1, 512):
            fast = continuation_logprobs(vlm, imgs, prompt, CANDIDATES, reduction="tokens", batch_size=batch_size,
                                         chunk_size=chunk_size)
            assert _max_diff(fast, naive) <= TOL, (batch_size, chunk_size)
    eos = dict(reduction="sum", include_eos=True)
    assert (continuation_logprobs(vlm, imgs[:2], prompt, CANDIDATES, **eos)
            - continuation_logprobs(vlm, imgs[:2], prompt, CANDIDATES, scoring="naive", **eos)).abs().max() <= TOL


@pytest.mark.parametrize("kind", ["llava", "llava-next"])
def test_state_equals_naive_and_tree_on_attention_models(vlms, kind):
    """Where the tree path runs, the state path gives the same scores (AnyRes: rows of different
    prefix lengths in one batch)."""
    vlm, imgs = vlms[kind], images(4)
    prompt = vlm.render("What type of object is in this photo?", answer_prefix="The photo features a")
    naive = continuation_logprobs(vlm, imgs, prompt, CANDIDATES, reduction="tokens", scoring="naive")
    tree = continuation_logprobs(vlm, imgs, prompt, CANDIDATES, reduction="tokens", batch_size=4)
    for chunk_size in (3, 512):
        state = continuation_logprobs(vlm, imgs, prompt, CANDIDATES, reduction="tokens", batch_size=4,
                                      chunk_size=chunk_size, path="state")
        assert _max_diff(state, naive) <= TOL and _max_diff(state, tree) <= TOL


@torch.no_grad()
def test_the_prefix_cache_is_never_mutated(qwen3_5):
    """A candidate forward on ``_state_copy`` leaves the prefix cache (keys, values, conv and
    recurrent states, token counters) bit-identical; the same forward on the shared cache itself
    changes it, and a second candidate scored against it then gets a wrong log-prob."""
    vlm = qwen3_5
    batch = vlm.encode(images(1), [vlm.render("What is it?", answer_prefix="The photo features a")])
    cache = _output_cache(vlm.model(**batch, use_cache=True))
    snapshot = copy.deepcopy(cache)
    P = batch["input_ids"].shape[1]
    pos = vlm.family.positions(vlm.model, batch)[:, :, -1:] + 1  # [3, 1, 1]
    a, b = vlm.tokenizer(" cat").input_ids[:1], vlm.tokenizer(" dog").input_ids[:1]

    def step(tokens, c):
        ids = torch.tensor([tokens])
        return vlm.model(input_ids=ids, attention_mask=torch.ones(1, P + 1, dtype=torch.long), position_ids=pos,
                         use_cache=True, cache=c).logits[0, -1]

    def same(c1, c2):
        t1 = [t for layer in c1.layers for t in vars(layer).values() if torch.is_tensor(t)]
        t2 = [t for layer in c2.layers for t in vars(layer).values() if torch.is_tensor(t)]
        s1 = [t for layer in c1.layers for d in vars(layer).values() if isinstance(d, dict)
              for t in d.values() if torch.is_tensor(t)]
        s2 = [t for layer in c2.layers for d in vars(layer).values() if isinstance(d, dict)
              for t in d.values() if torch.is_tensor(t)]
        return len(t1 + s1) > 0 and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(t1 + s1, t2 + s2))

    ref_b = step(b, _state_copy(cache, torch.tensor([0])))
    step(a, _state_copy(cache, torch.tensor([0])))
    assert same(cache, snapshot)  # untouched by both candidate forwards
    assert torch.allclose(step(b, _state_copy(cache, torch.tensor([0]))), ref_b, atol=1e-6)
    step(a, cache)  # the pitfall: a candidate written into the shared cache ...
    assert not same(cache, snapshot)
    assert (step(b, cache) - ref_b).abs().max() > 1e-3  # ... and the next candidate sees it


def _family_on_the_state_path(tmp_path_factory, model_type: str):
    """The shipped family's tiny checkpoint takes the state path and fast == naive at batch 1 and 5;
    returns (vlm, images, prompt)."""
    from vlmprobe.testing.conformance import ANSWER_PREFIX, NAMES

    vlm = vlmprobe.load_model(f"hf:{build_family(tmp_path_factory.mktemp(model_type), model_type)}")
    assert fast_path(vlm.model) == "state"
    imgs = images(5)
    prompt = vlm.render("What type of object is in this photo?", answer_prefix=ANSWER_PREFIX)
    naive = continuation_logprobs(vlm, imgs, prompt, NAMES, reduction="tokens", scoring="naive")
    for batch_size in (1, 5):
        fast = continuation_logprobs(vlm, imgs, prompt, NAMES, reduction="tokens", batch_size=batch_size, chunk_size=4)
        assert _max_diff(fast, naive) <= TOL
    return vlm, imgs, prompt


def test_gemma3_scores_fast_on_the_state_path(tmp_path_factory):
    """Gemma 3's family used to refuse fast scoring (the tree mask reproduces neither its sliding
    window nor its bidirectional image attention); the state path reproduces both (its prefix is
    the model's own forward, the candidates its own incremental decoding), so the refusal is
    lifted: fast == naive at batch 1 and 5. (PaliGemma's prefix-LM ``token_type_ids`` and Mllama's
    cross-attention mask are per-token inputs a cached continuation does not get: their refusals stand.)"""
    vlm, _, _ = _family_on_the_state_path(tmp_path_factory, "gemma3")
    assert vlm.model.config.text_config.sliding_window


def test_video_llama3_scores_fast_on_the_state_path(tmp_path_factory):
    """VideoLLaMA 3's trie chunks against the prefix cache were 2.7 nats off the per-candidate
    forward (its family refused fast scoring); each candidate continued from a copy of the prefix
    cache is exact, so the family takes the state path (``Family.tree_mask``) and asking for the
    tree path is refused (main: VlmprobeError, fast likelihood scoring does not support 'video_llama_3')."""
    from vlmprobe.testing.conformance import NAMES

    vlm, imgs, prompt = _family_on_the_state_path(tmp_path_factory, "video_llama_3")
    with pytest.raises(VlmprobeError, match="tree"):
        continuation_logprobs(vlm, imgs[:1], prompt, NAMES, reduction="tokens", path="tree")


def test_the_path_is_read_from_the_config():
    """``state_layers`` names what the tree mask cannot address, from the config alone: recurrent /
    linear-attention / conv / Mamba layer kinds and state-space fields; pure attention stacks have none."""
    from transformers import AutoConfig

    for model_type, marker in (("qwen3_5", "linear_attention"), ("lfm2_vl", "conv_L_cache"),
                               ("nemotron_h_omni", "ssm_state_size"), ("inkling2", "hybrid"), ("lfm3_vl", "conv")):
        reasons = state_layers(AutoConfig.for_model(model_type))
        assert reasons and marker in " ".join(reasons), (model_type, reasons)
    for model_type in ("llava", "qwen2_vl", "llava_onevision"):
        assert state_layers(AutoConfig.for_model(model_type)) == [], model_type
