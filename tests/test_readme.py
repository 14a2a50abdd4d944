"""The README's "Extending vlmprobe" examples run as written (a method, a dataset format, a metric)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def extension_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Extending vlmprobe", 1)[1].split("\n## ", 1)[0].split("### A model family", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_extending_examples_run(tiny_models, digits_folder, tmp_path, capsys):
    blocks = extension_blocks()
    assert len(blocks) >= 3
    ns = {"MODEL": f"openclip:local-dir:{tiny_models['openclip']}", "DATA": str(digits_folder), "OUT": str(tmp_path)}
    for block in blocks:
        exec(compile(block, str(README), "exec"), ns)
    out = capsys.readouterr().out
    assert "top-1" in out and "40 images" in out and "balanced error" in out
    assert (tmp_path / "mine" / "results.json").exists() and (tmp_path / "csv" / "scores.npy").exists()
    assert ns["OneTemplate"]().config() == {"template": "a photo of a {}."}
