"""The demo's shape-bias and retrieval lines (issue 14), run after the default study: shape bias
of the toy CLIP, the toy VLM and the toy supervised CNN on the toy cue-conflict set (a large digit made of small copies
of another), their per-category dot plot (``vlmprobe compare --shape-bias``), and zero-shot
retrieval R@1 on the toy digit captions. Each step is the ``vlmprobe`` command a user would type
(printed before it runs); a step whose output exists is reused without running."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from ..errors import VlmprobeError

SHAPE_RUNS = {"shape-clip": "CLIP zero-shot", "shape-vlm-generate": "VLM direct generation",
              "shape-vlm-likelihood": "VLM probability inference", "shape-cnn": "supervised CNN"}
RETRIEVAL_RUNS = {"retrieval-clip": "CLIP (cosine)", "retrieval-vlm": "VLM (caption log-likelihood)"}


def steps(out: Path, seed: int, root: Path) -> dict[str, list[str]]:
    cc = ["--data", "toy:cue-conflict", "--seed", str(seed), "--no-progress"]
    caps = ["--data", "toy:captions", "--seed", str(seed), "--no-progress"]
    return {
        "shape-clip": ["eval", "--model", "toy:clip", *cc, "--method", "zeroshot",
                       "--templates", str(root / "templates.json"), "--out", str(out / "shape-clip")],
        "shape-vlm-generate": ["eval", "--model", "toy:vlm", *cc, "--method", "generate",
                               "--out", str(out / "shape-vlm-generate")],
        "shape-vlm-likelihood": ["eval", "--model", "toy:vlm", *cc, "--method", "likelihood", "--answer-prefix",
                                 "paper", "--out", str(out / "shape-vlm-likelihood")],
        "shape-cnn": ["eval", "--model", "toy:cnn", *cc, "--method", "classifier", "--out", str(out / "shape-cnn")],
        "shape-compare": ["compare", *[str(out / n) for n in SHAPE_RUNS], "--shape-bias", str(out / "shape_bias.png"),
                          "--labels", ",".join(SHAPE_RUNS.values()), "--out", str(out / "shape_bias.json")],
        "retrieval-clip": ["retrieval", "--model", "toy:clip", *caps, "--out", str(out / "retrieval-clip")],
        "retrieval-vlm": ["retrieval", "--model", "toy:vlm", *caps, "--out", str(out / "retrieval-vlm")],
    }


def run_steps(out: Path, seed: int, skip: set[str] = frozenset()) -> dict:
    """Run (or reuse) every step not in ``skip``; returns ``{"shape_bias": rows, "retrieval": rows}``."""
    from ..cli import main
    from ..toy import build_world

    root = Path(build_world(seed=seed, progress=False)["dir"])
    for name, argv in steps(out, seed, root).items():
        done = out / "shape_bias.json" if name == "shape-compare" else out / name / "results.json"
        if name in skip or done.exists():  # finished earlier: reused as is
            continue
        print("\n$ vlmprobe " + " ".join(shlex.quote(a) for a in argv), flush=True)
        code = main(argv)
        if code:
            raise VlmprobeError(f"demo step failed (exit {code}): vlmprobe {' '.join(argv)}")
    return summarize(out)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def summarize(out: Path) -> dict:
    shape, retrieval = [], []
    for name, label in SHAPE_RUNS.items():
        res = _read(out / name / "results.json").get("shape_bias")
        if res:
            o = res["overall"]
            shape.append({"model": label, "run": str(out / name), "shape_bias": o["shape_bias"], "shape": o["shape"],
                          "texture": o["texture"], "other": o["other"]})
    for name, label in RETRIEVAL_RUNS.items():
        res = _read(out / name / "results.json").get("retrieval")
        if res:
            retrieval.append({"model": label, "run": str(out / name),
                              "image_to_text_r1": res["image_to_text"]["recall"]["1"],
                              "text_to_image_r1": res["text_to_image"]["recall"]["1"]})
    return {"shape_bias": shape, "retrieval": retrieval}


def markdown(summary: dict) -> list[str]:
    fmt = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = []
    if summary.get("shape_bias"):
        lines += ["", "| toy cue-conflict (digit made of another digit) | shape bias | shape / texture / other |",
                  "| --- | ---: | ---: |"]
        for r in summary["shape_bias"]:
            sb = "-" if r["shape_bias"] is None else f"{r['shape_bias']:.2f}"
            lines.append(f"| {r['model']} | {sb} | {r['shape']} / {r['texture']} / {r['other']} |")
    if summary.get("retrieval"):
        lines += ["", "| toy digit captions retrieval | image->text R@1 % | text->image R@1 % |", "| --- | ---: | ---: |"]
        for r in summary["retrieval"]:
            lines.append(f"| {r['model']} | {fmt(r['image_to_text_r1'])} | {fmt(r['text_to_image_r1'])} |")
    return lines
