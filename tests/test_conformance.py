"""The conformance suite in CI: the contract families' tiny checkpoints (vlmprobe.testing
.families, ours, families_special's and families_chat's) are built once per session and run every
named check (vlmprobe.testing.conformance): generation + matcher, naive == a plain per-candidate
forward with and without the answer prefix, fast == naive or a one-line refusal, feature shapes
of every layer, batch 1 vs 4, one LoRA step + adapter reload through hf:BASE+adapter:PATH, QLoRA.

CI runs ``CONTRACT_FAMILIES``: one family per code path the engine distinguishes (1-D and M-RoPE
positions, the state fast path (Gemma 3's sliding windows), a refused fast path (PaliGemma, Mllama), a candidate sub-module, encoder-decoder, prefix-LM, cross-attention,
prompt inputs, parts found only through transformers' API, latent-attention MoE). The full matrix
(every registered builder) is ``python -m vlmprobe.testing --families DIR`` and the slow test
``test_full_matrix`` (``VLMPROBE_FULL_MATRIX=1``; its run time is in docs/families-by-role.md)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vlmprobe.testing.conformance import (CHECKS, documented_matrix, family_rows, image_text_to_text_types,
                                          matrix_document, matrix_markdown, run_conformance, update_readme)
from vlmprobe.testing.families import TINY_BUILDERS, load_builders

FAMILIES = sorted(load_builders())
CONTRACT_FAMILIES = ["llava", "qwen2_vl", "gemma3", "blip-2", "blip-2-flan-t5", "paligemma", "mllama",
                     "instructblip", "glm4v", "kimi_k25"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def matrix(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return run_conformance(root, model_types=CONTRACT_FAMILIES, others=False, progress=False), root


def _assert_conforms(result: dict) -> None:
    assert result["status"] == "pass", result["reason"] or result
    assert list(result["checks"]) == [n for n, _ in CHECKS]
    for name, outcome in result["checks"].items():
        if outcome["status"] == "skip":  # only the fast path may be refused, in one line naming --scoring naive
            assert name == "fast" and "--scoring naive" in outcome["reason"] and "\n" not in outcome["reason"]
    assert (Path(result["spec"][3:]) / "config.json").exists()  # hf:DIR/<model_type>, a real checkpoint


@pytest.mark.parametrize("model_type", CONTRACT_FAMILIES)
def test_family_conforms(matrix, model_type):
    _assert_conforms({f["model_type"]: f for f in matrix[0]["families"]}[model_type])


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("VLMPROBE_FULL_MATRIX"), reason="the full matrix: set VLMPROBE_FULL_MATRIX=1")
def test_full_matrix(tmp_path_factory):
    """Every registered family passes every check (the README table's claim), run in one go."""
    m = run_conformance(tmp_path_factory.mktemp("all-families"), others=False, progress=False)
    assert [f["model_type"] for f in m["families"]] == FAMILIES
    for result in m["families"]:
        _assert_conforms(result)


def test_contract_families_are_registered():
    assert set(CONTRACT_FAMILIES) <= set(FAMILIES)


def test_matrix_files_and_documented_table(matrix, tmp_path):
    """support_matrix.json/.md are written; the documented table (README.md or docs/*.md, between
    the markers) shows this run's rows for the contract families (regenerate it with
    ``python -m vlmprobe.testing --families DIR --readme PATH``)."""
    m, root = matrix
    assert json.loads((root / "support_matrix.json").read_text())["families"] == m["families"]
    md = (root / "support_matrix.md").read_text()
    assert md == matrix_markdown(m) and len(family_rows(md)) == len(CONTRACT_FAMILIES)
    doc = matrix_document(REPO).read_text()
    assert set(family_rows(md)) <= set(family_rows(doc)), "documented family table is stale: regenerate it"
    copy = tmp_path / "README.md"
    copy.write_text(doc)
    update_readme(copy, m)
    assert family_rows(copy.read_text()) == family_rows(md)
    old = tmp_path / "old.md"
    old.write_text("# x\n<!-- support-matrix:begin (generated: python -m vlmprobe.testing --families DIR --readme "
                   "README.md) -->\nstale\n<!-- support-matrix:end -->\nafter\n")
    update_readme(old, m)
    assert family_rows(old.read_text()) == family_rows(md) and old.read_text().endswith("-->\nafter\n")


def test_documented_table_agrees_with_the_registry():
    """The generated table lists exactly the registered tiny builders as families (with their
    adapter's name) and every other type of transformers' image-text-to-text mapping below,
    the not-chat ones exactly those of ``generic.NOT_CHAT``."""
    from vlmprobe.models.families import family_for_type
    from vlmprobe.testing.generic import NOT_CHAT

    doc = documented_matrix(matrix_document(REPO).read_text())
    assert set(doc["families"]) == set(FAMILIES), "registry and documented table differ: regenerate the table"
    for model_type, family in doc["families"].items():
        if family_for_type(model_type).name != "generic":  # variants (blip-2-flan-t5) are typed by their config
            assert family == family_for_type(model_type).name, model_type
    assert set(doc["others"]) == set(image_text_to_text_types()) - set(FAMILIES)
    assert {t for t, s in doc["others"].items() if s == "not-chat"} == set(NOT_CHAT) - set(FAMILIES)


def test_the_registry_check_fails_on_a_stale_table(monkeypatch):
    """The registry check is not vacuous: a builder missing from the table is noticed."""
    doc = documented_matrix(matrix_document(REPO).read_text())
    monkeypatch.setitem(TINY_BUILDERS, "brand_new_type", lambda out: None)
    assert set(doc["families"]) != set(load_builders())


def test_a_broken_family_fails_its_checks(tmp_path, monkeypatch):
    """The checks can fail: a family whose chat template is dropped is reported unsupported with
    the reason, and one whose fast path is off by 1e-3 fails ``fast``."""
    from vlmprobe.models import likelihood
    from vlmprobe.testing.conformance import check_family

    def no_template(out: Path) -> None:
        TINY_BUILDERS["llava"](out)
        (out / "chat_template.jinja").unlink()

    monkeypatch.setitem(TINY_BUILDERS, "broken_llava", no_template)
    res = check_family(tmp_path, "broken_llava", checks=["load", "generate"])
    assert res.status == "unsupported" and "chat template" in res.reason
    fast = likelihood._fast_batch
    monkeypatch.setattr(likelihood, "_fast_batch", lambda *a, **k: [lp + 1e-3 for lp in fast(*a, **k)])
    res = check_family(tmp_path, "llava", checks=["fast"])
    assert res.status == "partial" and res.checks["fast"]["status"] == "fail" and "fast vs naive" in res.reason


def test_other_types_are_probed_with_a_reason():
    """Types without a builder: partial when the model builds and its parts resolve by role,
    not-chat with the reason, unsupported only for a cause of the model's."""
    from vlmprobe.testing.generic import probe_type

    aria = probe_type("aria")
    assert aria["status"] == "partial" and aria["checks"]["build"]["status"] == "pass"
    pi0 = probe_type("pi0")
    assert pi0["status"] == "not-chat" and "action" in pi0["reason"]
    plm = probe_type("perception_lm")
    assert plm["status"] == "unsupported" and "default config" in plm["reason"] and "\n" not in plm["reason"]
    idefics = probe_type("idefics")
    assert idefics["status"] == "unsupported" and "no separate language model" in idefics["reason"]
    assert "adapter finds no" not in idefics["reason"]


def test_likelihood_benchmark_per_family(matrix, capsys):
    """``benchmarks/likelihood.py --family``: fast vs naive side by side on the suite's tiny
    checkpoints; a family without a fast path prints its one-line refusal."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("bench_likelihood", bench / "likelihood.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.main(["--family", "llava,paligemma", "--families-dir", str(matrix[1]), "--ks", "10",
                            "--repeats", "1", "--naive-candidates", "3", "--images", "1"]) == 0
    finally:
        sys.path.remove(str(bench))
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["llava", "10"])
    assert row[5].endswith("x") and float(row[6]) <= 1e-4  # ratio, max|fast - naive|
    assert "paligemma  no fast path:" in out and "--scoring naive" in out
