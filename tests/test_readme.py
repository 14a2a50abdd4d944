"""The documentation's "Extending vlmprobe" examples run as written (a method, a dataset format, a
metric); the family table and the prose agree; pyproject declares every import.

The README moved into the MkDocs site under docs/ (tests/test_docs.py checks the site)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTENDING = ROOT / "docs" / "extending.md"


def docs_text() -> str:
    """The README (the front page) and every page of docs/, as one text."""
    return "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def extension_blocks() -> list[str]:
    text = EXTENDING.read_text(encoding="utf-8")
    section = text.split("## Extending vlmprobe", 1)[1].split("\n## ", 1)[0].split("### A model family", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_extending_examples_run(tiny_models, digits_folder, tmp_path, capsys):
    blocks = extension_blocks()
    assert len(blocks) >= 3
    ns = {"MODEL": f"openclip:local-dir:{tiny_models['openclip']}", "DATA": str(digits_folder), "OUT": str(tmp_path)}
    for block in blocks:
        exec(compile(block, str(EXTENDING), "exec"), ns)
    out = capsys.readouterr().out
    assert "top-1" in out and "40 images" in out and "balanced error" in out
    assert (tmp_path / "mine" / "results.json").exists() and (tmp_path / "csv" / "scores.npy").exists()
    assert ns["OneTemplate"]().config() == {"template": "a photo of a {}."}


def test_readme_family_table_and_prose_agree_on_the_fast_likelihood():
    """A family the support matrix (docs/models.md) marks fast (column ``fast`` = yes) is never
    called "no fast path" in the README or any docs page."""
    import re

    text = docs_text()
    matrix = text.split("<!-- support-matrix:begin", 1)[1].split("<!-- support-matrix:end", 1)[0]
    header = next(line for line in matrix.splitlines() if line.startswith("| model type"))
    col = [c.strip() for c in header.strip("|").split("|")].index("fast")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in matrix.splitlines() if line.startswith("| `")]
    fast = {cells[1].lower() for cells in rows if len(cells) > col and cells[col] == "yes"}
    assert {"qwen2-vl", "llava"} <= fast
    for sentence in re.split(r"(?<=[.;])\s", text.replace("\n", " ")):
        if "no fast path" in sentence:
            assert not [f for f in fast if f in sentence.lower()], sentence


def test_pyproject_declares_each_dependency_once_and_every_third_party_import():
    """One bound per distribution; every third-party top-level import of the package is declared."""
    import ast
    import re
    import sys

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (3.10: skipped)
    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    deps = meta["dependencies"] + [d for extra in meta["optional-dependencies"].values() for d in extra]
    names = [re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower().replace("_", "-") for d in meta["dependencies"]]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    declared = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower().replace("_", "-") for d in deps}
    declared |= {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower()
                 for d in tomllib.loads((root / "pyproject.toml").read_text())["build-system"]["requires"]}
    module_to_dist = {"PIL": "pillow", "yaml": "pyyaml", "sklearn": "scikit-learn", "open_clip": "open-clip-torch",
                      "imagenet_x": "imagenet-x",
                      "pkg_resources": "setuptools"}  # optional: data/corrupt.py shims it when absent
    imported = set()
    for path in (root / "vlmprobe").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    third = {m for m in imported if m not in sys.stdlib_module_names and m != "vlmprobe"}
    missing = sorted(m for m in third if module_to_dist.get(m, m.lower().replace("_", "-")) not in declared)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
