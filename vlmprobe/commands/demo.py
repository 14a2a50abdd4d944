"""``vlmprobe demo``: the main job -- the built-in default study (``vlmprobe/study/default.yaml``)
on the embedded miniature world, i.e. ``vlmprobe study --out runs/demo``, then where the report is.

It builds (or reuses) the world, then runs CLIP zero-shot, VLM direct generation (open world,
prompt variants, closed world with 2/5 candidates), probability inference (also with 2/5
candidates), linear probes on every layer, class-name frequency vs accuracy, ImageWikiQA (image,
oracle class, no image; split by classification outcome), LoRA fine-tuning and the same
measurements again on the fine-tuned model; then shape bias on the toy cue-conflict set and
retrieval R@1 on the toy digit captions (``commands/demo_shapes.py``; ``--skip shapes``).
Every step prints the command it runs; a second
demo reuses every finished run and only rebuilds the report. Also written: ``summary.json`` /
``summary.md`` (the main table and the findings).
"""
from __future__ import annotations

from pathlib import Path

from ..cache import atomic_write_json, atomic_write_text
from . import demo_shapes


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the whole study on the embedded miniature world (offline, minutes)",
                              description=__doc__)
    p.add_argument("--out", default="runs/demo", help="directory for every run of the demo (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the miniature world and of the runs")
    p.add_argument("--skip", default="", metavar="MEASURE[,MEASURE]",
                   help="measurements to leave out: zeroshot, generate, likelihood, probe, frequency, wikiqa, finetune, "
                        "shapes (shape bias and retrieval)")
    p.set_defaults(func=run)


def demo_study(seed: int = 0, skip: set[str] = frozenset()):
    """The default study with ``seed`` and without the ``skip`` measurements ("finetune" drops
    the fine-tuned models, "generate" also the runs that need it)."""
    from ..study import load_study

    study = load_study(None, seed=seed)
    if "generate" in skip:
        skip = set(skip) | {"frequency", "wikiqa"}
    if "finetune" in skip:
        tuned = {n for n, m in study.models.items() if m.finetune}
        study.models = {n: m for n, m in study.models.items() if n not in tuned}
        for e in study.measurements:
            if e.models:
                e.models = [m for m in e.models if m not in tuned]
        study.measurements = [e for e in study.measurements if e.models is None or e.models]
    study.measurements = [e for e in study.measurements if e.measure not in skip]
    return study


def run(args) -> int:
    from ..study import read_study, run_study
    from ..study.findings import compute

    out = Path(args.out)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    code = run_study(demo_study(args.seed, skip), out)
    data = read_study(out)
    extra = {} if "shapes" in skip else demo_shapes.run_steps(out / "shapes", args.seed)
    summary = {"world": data.get("world"), "classification": [
        {"method": f"{r['model']}: {r['method']}", "run": r["run"], "top1": r["top1"], "worst1": r["worst1"],
         "worst1_class": r["worst1_class"]} for r in data["main"]],
        "frequency_vs_generation_accuracy": next(({"spearman": f["spearman"], "pearson_log": f["pearson_log"]}
                                                  for f in data["frequency"]), None),
        "wikiqa": [{k: q[k] for k in ("model", "condition", "accuracy", "right_acc", "wrong_acc", "run")}
                   for q in data["wikiqa"]],
        "findings": compute(data), **extra}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    print("\n" + summary_markdown(summary))
    print(f"demo report: {out / 'report.html'}  (summary: {out}/summary.md; one run directory per step beside it)")
    return code


def summary_markdown(summary: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = ["| method (toy:digits test) | top-1 % | worst class % |", "| --- | ---: | ---: |"]
    for r in summary["classification"]:
        worst = "-" if r["worst1"] is None else f"{fmt(r['worst1'])} ({r['worst1_class']})"
        lines.append(f"| {r['method']} | {fmt(r['top1'])} | {worst} |")
    lines.append("")
    for f in summary["findings"]:
        shown = {True: "shown", False: "NOT shown", None: "not measured"}[f["shown"]]
        lines.append(f"- finding {f['n']} ({f['title']}): {shown}. {f['text']}")
    lines += demo_shapes.markdown(summary)
    return "\n".join(lines) + "\n"
