"""The README's main job (`vlmprobe demo`) end to end on the session's miniature world: every
step writes its run directory and the summary shows the paper's shape."""
import json

from vlmprobe.cli import main


def test_demo_runs_every_step_and_shows_the_study(toy_world, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "$ vlmprobe eval --model toy:clip" in printed and f"{out}/summary.md" in printed
    for run in ("clip-zeroshot", "vlm-generate", "vlm-likelihood", "vlm-probe", "wikiqa-generate",
                "vlm-finetuned-generate"):
        assert (out / run / "results.json").exists(), run
    assert (out / "frequency" / "frequency.png").exists() and (out / "vlm-probe" / "accuracy_vs_layer.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    top1 = {row["method"].split(" (")[0]: row["top1"] for row in summary["classification"]}
    assert top1["CLIP zero-shot"] > top1["VLM direct generation"] + 0.3
    assert top1["VLM probability inference"] > top1["VLM direct generation"]
    assert top1["VLM linear probe"] > top1["VLM direct generation"] + 0.3
    assert top1["VLM after LoRA fine-tuning, direct generation"] > top1["VLM direct generation"] + 0.2
    assert summary["frequency_vs_generation_accuracy"]["spearman"] > 0.5
    assert {r["model"] for r in summary["shape_bias"]} == {"CLIP zero-shot", "VLM direct generation",
                                                          "VLM probability inference"}
    assert all(r["shape"] + r["texture"] + r["other"] == 180 for r in summary["shape_bias"])
    assert (out / "shape_bias.png").exists()
    assert "shape bias" in printed and "image->text R@1" in printed
    clip_r1 = next(r for r in summary["retrieval"] if r["model"].startswith("CLIP"))
    assert clip_r1["image_to_text_r1"] > 0.5 and clip_r1["text_to_image_r1"] > 0.5
    # a second run reuses everything (resume) and reproduces the same table
    assert main(["demo", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["classification"] == summary["classification"]
