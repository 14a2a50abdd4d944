"""``vlmprobe demo``: the whole study on the embedded miniature world, as the sequence of
``vlmprobe`` commands a user would type (each printed before it runs), then one summary table.

Steps: build the world; CLIP zero-shot; VLM direct generation; VLM probability inference;
linear probes on every layer (CLIP as reference); class-name frequency vs generation accuracy;
ImageWikiQA split by classification outcome; LoRA fine-tuning on the world's classification
conversations (the recipe of ``recipes/configs/toy.yaml``) and generation again; shape bias of
CLIP and the VLM on the toy cue-conflict set (``vlmprobe compare --shape-bias``) and zero-shot
retrieval R@1 on the toy digit captions. Everything resumes/reuses when run again.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from ..cache import atomic_write_json, atomic_write_text
from ..errors import VlmprobeError


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the whole study on the embedded miniature world (offline, minutes)",
                              description=__doc__)
    p.add_argument("--out", default="runs/demo", help="directory for every run of the demo (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the miniature world and of the runs")
    p.add_argument("--skip", default="", metavar="STEP[,STEP]",
                   help="steps to leave out: zeroshot, generate, likelihood, probe, frequency, wikiqa, finetune, "
                        "shape-clip, shape-vlm-generate, shape-vlm-likelihood, shape-compare, retrieval-clip, "
                        "retrieval-vlm")
    p.set_defaults(func=run)


def _step(argv: list[str]) -> None:
    from ..cli import main

    print("\n$ vlmprobe " + " ".join(shlex.quote(a) for a in argv), flush=True)
    code = main(argv)
    if code:
        raise VlmprobeError(f"demo step failed (exit {code}): vlmprobe {' '.join(argv)}")


def run(args) -> int:
    from ..toy import build_world

    out = Path(args.out)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    print("$ vlmprobe toy build", flush=True)
    world = build_world(seed=args.seed)
    root = Path(world["dir"])
    data = ["--data", "toy:digits:test", "--seed", str(args.seed), "--no-progress"]
    steps = {
        "zeroshot": ["eval", "--model", "toy:clip", *data, "--method", "zeroshot",
                     "--templates", str(root / "templates.json"), "--out", str(out / "clip-zeroshot")],
        "generate": ["eval", "--model", "toy:vlm", *data, "--method", "generate", "--out", str(out / "vlm-generate")],
        "likelihood": ["eval", "--model", "toy:vlm", *data, "--method", "likelihood",
                       "--answer-prefix", "paper", "--out", str(out / "vlm-likelihood")],
        "probe": ["probe", "--model", "toy:vlm", "--train", "toy:digits:train", "--val", "toy:digits:val",
                  "--test", "toy:digits:test", "--layers", "all", "--pool", "last,image-mean,mean",
                  "--reference", "toy:clip", "--seed", str(args.seed), "--out", str(out / "vlm-probe")],
        "frequency": ["frequency", "--corpus", str(root / "corpus" / "conversations.json"), "--roles", "gpt",
                      "--run", str(out / "vlm-generate"), "--out", str(out / "frequency")],
        "wikiqa": ["wikiqa", "--model", "toy:vlm", "--data", str(root / "wikiqa.jsonl"), "--images", str(root),
                   "--method", "generate", "--classification-run", str(out / "vlm-generate"),
                   "--out", str(out / "wikiqa-generate")],
    }
    steps.update(shape_steps(out, args.seed, root))
    if "generate" in skip:
        skip |= {"frequency", "wikiqa"}
    for name, argv in steps.items():
        if name not in skip:
            _step(argv)
    if "finetune" not in skip:
        _finetune_step(out, args.seed)
    summary = summarize_demo(out, world)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    print("\n" + summary_markdown(summary))
    print(f"demo results: {out}/summary.md (one run directory per step beside it)")
    return 0


# recipes/configs/toy.yaml, as overrides (the package does not read files under recipes/)
TOY_FINETUNE = {"model": "toy:vlm", "train": "toy:digits", "train_split": "train", "val": "toy:digits",
                "val_split": "val", "val_limit": 200, "max_length": 256, "method": "lora", "lora_r": 16,
                "lora_alpha": 32, "train_projector": True, "lr": 1.0e-3, "epochs": 4, "per_device_batch_size": 16,
                "warmup_ratio": 0.05, "eval_every": 50, "save_every": 50}


def _finetune_step(out: Path, seed: int) -> None:
    from ..finetune.config import load_config
    from ..finetune.train import finetune

    print("\n$ accelerate launch recipes/finetune.py --config recipes/configs/toy.yaml "
          f"--output_dir {out / 'vlm-finetune'}   (run in-process)", flush=True)
    cfg = load_config(None, {**TOY_FINETUNE, "seed": seed, "output_dir": str(out / "vlm-finetune")})
    spec = finetune(cfg)["model_spec"]
    _step(["eval", "--model", spec, "--data", "toy:digits:test", "--seed", str(seed), "--no-progress",
           "--method", "generate", "--out", str(out / "vlm-finetuned-generate")])


SHAPE_RUNS = {"shape-clip": "CLIP zero-shot", "shape-vlm-generate": "VLM direct generation",
              "shape-vlm-likelihood": "VLM probability inference"}
RETRIEVAL_RUNS = {"retrieval-clip": "CLIP (cosine)", "retrieval-vlm": "VLM (log p(caption | image))"}


def shape_steps(out: Path, seed: int, root: Path) -> dict[str, list[str]]:
    """Shape bias on the toy cue-conflict set (a large digit made of small copies of another)
    and zero-shot retrieval on the toy digit captions."""
    cc = ["--data", "toy:cue-conflict", "--seed", str(seed), "--no-progress"]
    caps = ["--data", "toy:captions", "--seed", str(seed), "--no-progress"]
    return {
        "shape-clip": ["eval", "--model", "toy:clip", *cc, "--method", "zeroshot",
                       "--templates", str(root / "templates.json"), "--out", str(out / "shape-clip")],
        "shape-vlm-generate": ["eval", "--model", "toy:vlm", *cc, "--method", "generate",
                               "--out", str(out / "shape-vlm-generate")],
        "shape-vlm-likelihood": ["eval", "--model", "toy:vlm", *cc, "--method", "likelihood", "--answer-prefix",
                                 "paper", "--out", str(out / "shape-vlm-likelihood")],
        "shape-compare": ["compare", *[str(out / n) for n in SHAPE_RUNS], "--shape-bias", str(out / "shape_bias.png"),
                          "--labels", ",".join(SHAPE_RUNS.values()), "--out", str(out / "shape_bias.json")],
        "retrieval-clip": ["retrieval", "--model", "toy:clip", *caps, "--out", str(out / "retrieval-clip")],
        "retrieval-vlm": ["retrieval", "--model", "toy:vlm", *caps, "--out", str(out / "retrieval-vlm")],
    }


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def summarize_demo(out: Path, world: dict) -> dict:
    """The study's numbers in one place: accuracy of every method on the same test images."""
    rows = []
    for name, label in [("clip-zeroshot", "CLIP zero-shot"), ("vlm-generate", "VLM direct generation"),
                        ("vlm-likelihood", "VLM probability inference"),
                        ("vlm-finetuned-generate", "VLM after LoRA fine-tuning, direct generation")]:
        res = _read(out / name / "results.json")
        if res:
            worst = res.get("worst_k_accuracy", {}).get("1", {})
            rows.append({"method": label, "run": str(out / name), "top1": res.get("top1"),
                         "worst1": worst.get("value"), "worst1_class": (worst.get("classes") or [None])[0]})
    probe = _read(out / "vlm-probe" / "layers.json")
    if probe and probe.get("best"):
        res = _read(out / "vlm-probe" / "results.json") or {}
        worst = res.get("worst_k_accuracy", {}).get("1", {})
        rows.append({"method": f"VLM linear probe ({probe['best']}, chosen on val)", "run": str(out / "vlm-probe"),
                     "top1": probe.get("best_test_accuracy"), "worst1": worst.get("value"),
                     "worst1_class": (worst.get("classes") or [None])[0]})
        clip_probe = (probe.get("reference") or {}).get("probe")
        if clip_probe:
            rows.append({"method": "CLIP linear probe (image embedding)", "run": str(out / "vlm-probe"),
                         "top1": clip_probe.get("test_accuracy"), "worst1": None, "worst1_class": None})
    shape = []
    for name, label in SHAPE_RUNS.items():
        res = (_read(out / name / "results.json") or {}).get("shape_bias")
        if res:
            o = res["overall"]
            shape.append({"model": label, "run": str(out / name), "shape_bias": o["shape_bias"], "shape": o["shape"],
                          "texture": o["texture"], "other": o["other"]})
    retrieval = []
    for name, label in RETRIEVAL_RUNS.items():
        res = (_read(out / name / "results.json") or {}).get("retrieval")
        if res:
            retrieval.append({"model": label, "run": str(out / name),
                              "image_to_text_r1": res["image_to_text"]["recall"]["1"],
                              "text_to_image_r1": res["text_to_image"]["recall"]["1"]})
    freq = _read(out / "frequency" / "frequency.json")
    qa = _read(out / "wikiqa-generate" / "results.json")
    return {"world": {"dir": world["dir"], "naming_probability": world.get("naming_probability"),
                      "build_seconds": world.get("seconds")},
            "classification": rows, "shape_bias": shape, "retrieval": retrieval,
            "frequency_vs_generation_accuracy": {k: freq.get(k) for k in ("spearman", "pearson_log")} if freq else None,
            "wikiqa": qa and {k: qa.get(k) for k in ("accuracy", "unparseable_rate", "by_classification")}}


def summary_markdown(summary: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = ["| method (toy:digits test) | top-1 % | worst class % |", "| --- | ---: | ---: |"]
    for r in summary["classification"]:
        worst = "-" if r["worst1"] is None else f"{fmt(r['worst1'])} ({r['worst1_class']})"
        lines.append(f"| {r['method']} | {fmt(r['top1'])} | {worst} |")
    f = summary.get("frequency_vs_generation_accuracy")
    if f:
        lines.append(f"\nclass-name frequency in the VLM's training conversations vs generation accuracy: "
                     f"Spearman {f['spearman'] if f['spearman'] is None else round(f['spearman'], 3)}")
    qa = summary.get("wikiqa")
    if qa and qa.get("accuracy") is not None:
        lines.append(f"ImageWikiQA (toy) accuracy by generation: {fmt(qa['accuracy'])}% "
                     f"(unparseable {fmt(qa.get('unparseable_rate'))}%)")
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
    return "\n".join(lines) + "\n"
