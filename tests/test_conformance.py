"""The conformance suite in CI: every registered family's tiny checkpoint (vlmprobe.testing
.families, ours and families_special's) is built once per session and runs every named check
(vlmprobe.testing.conformance): generation + matcher, naive == a plain per-candidate forward with
and without the answer prefix, fast == naive or a one-line refusal, feature shapes of every layer,
batch 1 vs 4, one LoRA step + adapter reload through hf:BASE+adapter:PATH."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmprobe.testing.conformance import (CHECKS, family_rows, matrix_markdown, run_conformance, update_readme)
from vlmprobe.testing.families import TINY_BUILDERS, load_builders

FAMILIES = sorted(load_builders())
MODELS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "models.md"  # holds the generated family table


@pytest.fixture(scope="session")
def matrix(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return run_conformance(root, others=False, progress=False), root


@pytest.mark.parametrize("model_type", FAMILIES)
def test_family_conforms(matrix, model_type):
    result = {f["model_type"]: f for f in matrix[0]["families"]}[model_type]
    assert result["status"] == "pass", result["reason"] or result
    assert list(result["checks"]) == [n for n, _ in CHECKS]
    for name, outcome in result["checks"].items():
        if outcome["status"] == "skip":  # only the fast path may be refused, in one line naming --scoring naive
            assert name == "fast" and "--scoring naive" in outcome["reason"] and "\n" not in outcome["reason"]
    assert (Path(result["spec"][3:]) / "config.json").exists()  # hf:DIR/<model_type>, a real checkpoint


def test_matrix_files_and_readme_table(matrix, tmp_path):
    """support_matrix.json/.md are written; the docs' table (docs/models.md) is this output
    (regenerate it with ``python -m vlmprobe.testing --families DIR --readme docs/models.md``);
    a file with the older marker text (naming README.md) is rewritten too."""
    m, root = matrix
    assert json.loads((root / "support_matrix.json").read_text())["families"] == m["families"]
    md = (root / "support_matrix.md").read_text()
    assert md == matrix_markdown(m) and len(family_rows(md)) == len(FAMILIES)
    assert family_rows(MODELS_PAGE.read_text()) == family_rows(md), "docs/models.md family table is stale: regenerate it"
    copy = tmp_path / "models.md"
    copy.write_text(MODELS_PAGE.read_text())
    update_readme(copy, m)
    assert family_rows(copy.read_text()) == family_rows(md)
    old = tmp_path / "README.md"
    old.write_text("# x\n<!-- support-matrix:begin (generated: python -m vlmprobe.testing --families DIR --readme "
                   "README.md) -->\nstale\n<!-- support-matrix:end -->\nafter\n")
    update_readme(old, m)
    assert family_rows(old.read_text()) == family_rows(md) and old.read_text().endswith("-->\nafter\n")


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
    from vlmprobe.testing.generic import probe_type

    vip = probe_type("vipllava")
    assert vip["status"] == "partial" and vip["checks"]["build"]["status"] == "pass"
    fuyu = probe_type("fuyu")
    assert fuyu["status"] == "unsupported" and "vision tower" in fuyu["reason"] and "\n" not in fuyu["reason"]


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
        assert module.main(["--family", "llava,gemma3", "--families-dir", str(matrix[1]), "--ks", "10",
                            "--repeats", "1", "--naive-candidates", "3", "--images", "1"]) == 0
    finally:
        sys.path.remove(str(bench))
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["llava", "10"])
    assert row[5].endswith("x") and float(row[6]) <= 1e-4  # ratio, max|fast - naive|
    assert "gemma3  no fast path:" in out and "--scoring naive" in out
