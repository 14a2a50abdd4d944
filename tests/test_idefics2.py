"""Idefics2 (issue 32): its processor writes a space between an image and the text right after
it; the family's ``rendered`` hook writes that space at rendering, so the tokenizer's prompt ids
(and the candidate tokens cut from them) align with the processor's, and likelihood runs."""
from __future__ import annotations

import pytest

import vlmprobe
from vlmprobe.models.families import space_after_image


@pytest.fixture(scope="module")
def idefics2(tmp_path_factory):
    from vlmprobe.testing.families import load_builders

    out = tmp_path_factory.mktemp("idefics2") / "idefics2"
    load_builders()["idefics2"](out)
    return vlmprobe.load_model(f"hf:{out}")


def test_space_after_image_matches_the_processor_rule():
    class P:
        image_token = "<image>"

    assert space_after_image(P, "User:<image>What is it?") == "User:<image> What is it?"
    assert space_after_image(P, "User:<image> Q") == "User:<image> Q"  # an existing space stays
    assert space_after_image(P, "User:<image><image>Q") == "User:<image><image> Q"


def test_idefics2_prompt_ids_align_and_naive_equals_fast(idefics2):
    """The rendered prompt's tokens after the image are the processor's (main: 'cannot align
    candidate tokens'), and the fast path equals the per-candidate forward."""
    from vlmprobe.testing.conformance import images

    text = idefics2.render("What is in the image?")
    assert "<image> What" in text
    ids = idefics2.tokenizer(text).input_ids
    tail = ids[max(i for i, t in enumerate(ids) if t in idefics2.placeholder_token_ids) + 1:]
    got = idefics2.encode(images(1), [text])["input_ids"][0].tolist()
    assert got[-len(tail):] == tail
    naive = idefics2.score(images(2), ["cat", "dog", "red car"], scoring="naive")
    fast = idefics2.score(images(2), ["cat", "dog", "red car"], scoring="fast")
    assert (naive - fast).abs().max() < 1e-4
