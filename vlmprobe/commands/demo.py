"""``vlmprobe demo``: the main job -- the built-in default study (``vlmprobe/study/default.yaml``)
on the embedded miniature world, i.e. ``vlmprobe study --out runs/demo``, then where the report is.

It builds (or reuses) the world, then runs CLIP zero-shot, VLM direct generation (open world,
prompt variants, closed world with 2/5 candidates), probability inference (also with 2/5
candidates), linear probes on every layer, class-name frequency vs accuracy, ImageWikiQA (image,
oracle class, no image; split by classification outcome), LoRA fine-tuning and the same
measurements again on the fine-tuned model; and the robustness measurements: group shift on the
toy CounterAnimal split (common vs counter backgrounds; also the spurious-background CLIP and the
supervised toy CNN), OOD detection against crops of photographs (toy:photos), shape bias on the
toy cue-conflict set and retrieval Recall@K on the toy digit captions (``--skip shapes`` leaves
out the last two). Every step prints the command it runs; a second
demo reuses every finished run and only rebuilds the report. Also written: ``summary.json`` /
``summary.md`` (the main table, the findings, shape bias and retrieval).
"""
from __future__ import annotations

from pathlib import Path

from ..cache import atomic_write_json, atomic_write_text

SKIP_GROUPS = {"shapes": {"shape_bias", "retrieval"}}  # --skip names that stand for several measures
DEFAULT_JOBS = 2


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the whole study on the embedded miniature world (offline, minutes)",
                              description=__doc__)
    p.add_argument("--out", default="runs/demo", help="directory for every run of the demo (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the miniature world and of the runs")
    p.add_argument("--skip", default="", metavar="MEASURE[,MEASURE]",
                   help="measurements to leave out: zeroshot, generate, likelihood, probe, frequency, wikiqa, "
                        "finetune, classifier, ood, shape_bias, retrieval, shift, shapes (shape bias and retrieval)")
    p.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="runs in parallel in N worker processes (the study's local executor; default: "
                        f"{DEFAULT_JOBS} on a machine with at least {DEFAULT_JOBS} cores, else 1; 1 = one after "
                        "another in this process)")
    p.set_defaults(func=run)


def default_jobs() -> int:
    """Worker processes of the demo: two runs side by side fill a 2-core machine (one run of the
    tiny models keeps about one core busy); more did not help there (see docs/toy.md, demo wall time)."""
    from ..distributed import usable_cores

    return max(1, min(DEFAULT_JOBS, usable_cores()))


def demo_study(seed: int = 0, skip: set[str] = frozenset()):
    """The default study with ``seed`` and without the ``skip`` measurements ("finetune" drops
    the fine-tuned models, "generate" also the runs that need it)."""
    from ..study import load_study

    from ..errors import VlmprobeError
    from ..study.measures import MEASURES

    known = set(MEASURES) | set(SKIP_GROUPS) | {"finetune"}
    unknown = sorted(set(skip) - known)
    if unknown:
        raise VlmprobeError(f"--skip {','.join(unknown)}: no such measurement; choose from {', '.join(sorted(known))}")
    study = load_study(None, seed=seed)
    skip = set(skip).union(*(SKIP_GROUPS.get(s, ()) for s in skip))
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
    jobs = args.jobs or default_jobs()
    if jobs < 1:
        from ..errors import VlmprobeError

        raise VlmprobeError("--jobs N needs N >= 1")
    code = run_study(demo_study(args.seed, skip), out, executor="serial" if jobs == 1 else "local", jobs=jobs)
    data = read_study(out)
    summary = {"world": data.get("world"), "classification": [
        {"method": f"{r['model']}: {r['method']}", "run": r["run"], "top1": r["top1"], "worst1": r["worst1"],
         "worst1_class": r["worst1_class"]} for r in data["main"]],
        "frequency_vs_generation_accuracy": next(({"spearman": f["spearman"], "pearson_log": f["pearson_log"]}
                                                  for f in data["frequency"]), None),
        "wikiqa": [{k: q[k] for k in ("model", "condition", "accuracy", "right_acc", "wrong_acc", "run")}
                   for q in data["wikiqa"]],
        "findings": compute(data, out),
        "shape_bias": [{k: r[k] for k in ("model", "method", "run", "shape_bias", "shape", "texture", "other")}
                       for r in data["shape_bias"]],
        "retrieval": [{"model": r["model"], "run": r["run"], "image_to_text_r1": r["i2t"].get("1"),
                       "text_to_image_r1": r["t2i"].get("1")} for r in data["retrieval"]],
        "group_shift": [{k: g[k] for k in ("model", "method", "a", "b", "acc_a", "acc_b", "drop", "run")}
                        for g in data["groups"]],
        "ood": [{k: o[k] for k in ("model", "method", "msp_auroc", "msp_fpr95", "mcm_auroc", "run")}
                for o in data["ood"]],
        "shift": [{k: r[k] for k in ("model", "method", "shift_dataset", "id_accuracy", "shift_accuracy", "run")}
                  for r in data["shift"]]}
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
    if summary.get("group_shift"):
        lines += ["", "| group shift (toy:spurious) | common % | counter % | drop (points) |",
                  "| --- | ---: | ---: | ---: |"]
        lines += [f"| {g['model']}: {g['method']} | {fmt(g['acc_a'])} | {fmt(g['acc_b'])} | "
                  f"{'-' if g['drop'] is None else format(g['drop'], '+.1f')} |"
                  for g in summary["group_shift"]]
    if summary.get("ood"):
        lines += ["", "| OOD detection (toy:photos vs digits) | MSP AUROC | MSP FPR@95 | MCM AUROC |",
                  "| --- | ---: | ---: | ---: |"]
        num = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        lines += [f"| {o['model']}: {o['method']} | {num(o['msp_auroc'])} | {num(o['msp_fpr95'])} | "
                  f"{num(o['mcm_auroc'])} |" for o in summary["ood"]]
    if summary.get("shape_bias"):
        lines += ["", "| toy cue-conflict (digit made of another digit) | shape bias | shape / texture / other |",
                  "| --- | ---: | ---: |"]
        for r in summary["shape_bias"]:
            sb = "-" if r["shape_bias"] is None else f"{r['shape_bias']:.2f}"
            lines.append(f"| {r['model']}: {r['method']} | {sb} | {r['shape']} / {r['texture']} / {r['other']} |")
    if summary.get("shift"):
        lines += ["", "| distribution shift (toy:digits test -> shifted set) | set | ID % | shift % |",
                  "| --- | --- | ---: | ---: |"]
        lines += [f"| {r['model']}: {r['method']} | {r['shift_dataset']} | {fmt(r['id_accuracy'])} | "
                  f"{fmt(r['shift_accuracy'])} |" for r in summary["shift"]]
    if summary.get("retrieval"):
        lines += ["", "| toy digit captions retrieval | image->text R@1 % | text->image R@1 % |",
                  "| --- | ---: | ---: |"]
        lines += [f"| {r['model']} | {fmt(r['image_to_text_r1'])} | {fmt(r['text_to_image_r1'])} |"
                  for r in summary["retrieval"]]
    return "\n".join(lines) + "\n"
