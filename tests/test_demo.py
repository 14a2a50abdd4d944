"""The README's main job (`vlmprobe demo` = the default study) end to end on the session's
miniature world: every run writes its directory, the report shows all six findings, and a
second demo reuses every run."""
import json

from vlmprobe.cli import main


def test_demo_runs_the_default_study_and_shows_the_findings(toy_world, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "$ vlmprobe eval --model toy:clip" in printed and f"demo report: {out / 'report.html'}" in printed
    for run in ("clip/test/zeroshot", "vlm/test/generate", "vlm/test/likelihood-answer_prefix=paper",
                "vlm/test/probe", "vlm/test/wikiqa", "vlm-ft/test/generate", "vlm-ft/test/wikiqa"):
        assert (out / run / "results.json").exists(), run
    assert (out / "vlm-ft" / "finetune" / "train_log.csv").exists()
    assert (out / "vlm-ft" / "finetune" / "train_curve.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    findings = {f["n"]: f for f in summary["findings"]}
    assert [n for n in range(1, 7) if findings[n]["shown"] is not True] == [], summary["findings"]
    qa = {(q["model"], q["condition"]): q for q in summary["wikiqa"]}
    assert qa["vlm", "image"]["right_acc"] - qa["vlm", "image"]["wrong_acc"] >= 0.2
    assert qa["vlm", "oracle_class+no_image"]["accuracy"] >= 0.5
    assert qa["vlm-ft", "image"]["accuracy"] > qa["vlm", "image"]["accuracy"]  # fine-tuning raises ImageWikiQA
    # the robustness measurements of the default study, in its report and the demo's summary
    assert {(r["model"], r["method"].split(" (")[0]) for r in summary["shape_bias"]} == {
        ("clip", "CLIP zero-shot"), ("vlm", "direct generation"), ("vlm", "probability inference"),
        ("cnn", "supervised classifier")}
    assert all(r["shape"] + r["texture"] + r["other"] == 180 for r in summary["shape_bias"])
    assert (out / "report_files" / "shape_bias.png").exists() and "shape bias" in printed
    clip_r1 = next(r for r in summary["retrieval"] if r["model"] == "clip")
    assert clip_r1["image_to_text_r1"] > 0.5 and clip_r1["text_to_image_r1"] > 0.5
    drops = {g["model"]: g for g in summary["group_shift"] if g["method"].startswith(("CLIP", "supervised"))}
    assert drops["clip-spurious"]["drop"] > 50 and drops["clip-spurious"]["drop"] > drops["clip"]["drop"] + 30
    clip_ood = next(o for o in summary["ood"] if o["model"] == "clip")
    assert clip_ood["msp_auroc"] > 0.7 and (out / clip_ood["run"] / "roc.png").exists()
    # distribution shift: one effective-robustness figure with the CNN, both CLIPs and the VLM's two methods
    assert {(r["model"], r["method"].split(" (")[0]) for r in summary["shift"]} == {
        ("cnn", "supervised classifier"), ("clip", "CLIP zero-shot"), ("clip-spurious", "CLIP zero-shot"),
        ("vlm", "direct generation"), ("vlm", "probability inference")}
    assert {r["shift_dataset"] for r in summary["shift"]} == {"sketch", "rendition", "corrupted"}
    assert len(summary["shift"]) == 15 and (out / "report_files" / "effective_robustness.png").exists()
    id_acc = {r["model"]: r["id_accuracy"] for r in summary["shift"]}  # the figure's x: above chance (10%)
    assert id_acc["cnn"] > 0.5 and id_acc["clip-spurious"] > 0.2, id_acc
    report = (out / "report.md").read_text()
    assert "## Distribution shift and effective robustness" in report and "## One point per model" in report
    # every robustness section is measured except ImageNet-X factors (the world has no factor annotations)
    assert report.count("Not measured") == 1 and "Not measured in this study (add {measure: factors" in report
    assert "](report_files/roc_0.png)" in report
    # issue 33: open-world rates, random vs hard multiple choice, the audit, intervals on every table
    for section in ("## Open-world scoring of the answers", "## Random vs hard multiple choice",
                    "## Order and batch audit", "## 95% intervals and paired tests"):
        assert section in report, section
    ow = json.loads((out / "vlm/test/open_world/results.json").read_text())["open_world"]
    assert ow["n"] == 450 and ow["synonym"]["rate"] >= ow["inclusion"]["rate"] and ow["semantic"] is not None
    assert "| vlm | likelihood | test | 5 |" in report  # random vs hard likelihood row
    audit = json.loads((out / "vlm/test/audit-answer_prefix=paper/audit.json").read_text())
    assert audit["total_flips"] == 0  # the exact likelihood engine: no knob flips a prediction
    assert json.loads((out / "clip/test/zeroshot/results.json").read_text())["intervals"]["top1"]["low"] > 0.8
    # a second run computes nothing and rebuilds the same report
    assert main(["demo", "--out", str(out)]) == 0
    second = capsys.readouterr().out
    ran = [line for line in second.splitlines() if line.startswith("$ ") and line != "$ vlmprobe toy build"]
    assert ran == [] and "reused (finished, same config)" in second
    assert json.loads((out / "summary.json").read_text())["classification"] == summary["classification"]
