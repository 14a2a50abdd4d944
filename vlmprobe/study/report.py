"""``report.html`` (one self-contained file: figures embedded as base64 PNG, inline CSS, no
script, no network) and ``report.md`` (figures as PNG files in ``report_files/``) of a study
directory. Every number links to the run directory it came from; the study file and the
package versions are embedded. Only the "generated" line carries a timestamp, so a report
rebuilt from the same runs is byte-identical apart from it.

Sections: findings; main table; label-space size; prompt variants; probes by layer; class
frequency vs accuracy; worst-k classes; CMM vs per-class accuracy; calibration; CLIP's hardest
classes beside the VLM; fine-tuning before/after; ImageWikiQA; group shift; OOD detection;
shape bias; retrieval; ImageNet-X factors; runs that failed or were skipped; study file and versions.
The "samples" section links each run's worst classes and confusions into the sample browser
(``browse/index.html``, written beside the report, see ``vlmprobe.browse``).
"""
from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from ..cache import atomic_write_text
from . import figures
from .collect import read_study
from .findings import compute as compute_findings


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _num(v, fmt="{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


class Doc:
    """Builds the HTML and the Markdown side by side from the same calls."""

    def __init__(self, root: Path):
        self.root = root
        self.html: list[str] = []
        self.md: list[str] = []
        self.images: dict[str, bytes] = {}  # md file name -> PNG bytes
        self.sidecars: dict[str, list] = {}  # report_files/<figure>.json -> the figure's plotted points

    def h(self, level: int, text: str, anchor: str | None = None) -> None:
        aid = f' id="{anchor}"' if anchor else ""
        self.html.append(f"<h{level}{aid}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def p(self, text: str, md: str | None = None) -> None:
        """``text`` is HTML-escaped here; ``md`` defaults to the same text."""
        self.html.append(f"<p>{html.escape(text)}</p>")
        self.md.append((md if md is not None else text) + "\n")

    def raw(self, html_text: str, md_text: str) -> None:
        self.html.append(html_text)
        self.md.append(md_text)

    def table(self, header: list[str], rows: list[list]) -> None:
        """Cells: str, or (text, run id) for a number linked to its run directory."""
        if not rows:
            self.p("(no runs)")
            return
        hs = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = []
        mrows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in rows:
            cells, mcells = [], []
            for c in r:
                if isinstance(c, tuple):
                    text, run = c
                    if run:
                        link = f"{run}/"
                        cells.append(f'<td class="n"><a href="{html.escape(link)}">{html.escape(text)}</a></td>')
                        mcells.append(f"[{text}]({link})")
                        continue
                    c = text
                cells.append(f"<td>{html.escape(str(c))}</td>")
                mcells.append(str(c).replace("|", "\\|"))
            body.append("<tr>" + "".join(cells) + "</tr>")
            mrows.append("| " + " | ".join(mcells) + " |")
        self.html.append(f"<table><thead><tr>{hs}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        self.md.append("\n".join(mrows) + "\n")

    def figure(self, png: bytes | None, name: str, caption: str, panels: list | None = None) -> None:
        """``panels``: the plotted points of a one-point-per-model figure, also written beside the
        PNG as ``report_files/<name>.json`` (``[{title, points, reference, baseline, ...}]``)."""
        if not png:
            return
        if panels is not None:
            self.sidecars[Path(name).stem + ".json"] = panels
        b64 = base64.b64encode(png).decode()
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.images[name] = png
        self.md.append(f"![{caption}](report_files/{name})\n")

    def figure_file(self, path: str | None, name: str, caption: str) -> None:
        if path and Path(path).exists():
            self.figure(Path(path).read_bytes(), name, caption)

    def gallery(self, items: list[tuple[bytes | None, str, str]]) -> None:
        """Small multiples: (png, name, caption) figures side by side in a responsive grid (HTML;
        Markdown puts the images on one line) instead of one tall column."""
        items = [(png, name, cap) for png, name, cap in items if png]
        if not items:
            return
        cells = []
        for png, name, caption in items:
            b64 = base64.b64encode(png).decode()
            cells.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            self.images[name] = png
        self.html.append(f'<div class="grid">{"".join(cells)}</div>')
        self.md.append(" ".join(f"![{cap}](report_files/{name})" for _, name, cap in items) + "\n")


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}td.n{text-align:right}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:12px;color:#555}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:8px}.grid figure{margin:0}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}
.yes{color:#176d2e;font-weight:bold}.no{color:#a01818;font-weight:bold}.na{color:#777}"""


def build(root: str | Path) -> Doc:
    root = Path(root)
    data = read_study(root)
    doc = Doc(root)
    doc.h(1, f"vlmprobe study: {data['name']}")
    from ..runs import environment

    env = environment()
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    doc.p(f"Package versions: {versions}; python {env['python']}. Numbers are percentages unless stated; "
          "each links to the run directory it came from.")
    world = data.get("world")
    if world:
        doc.p(f"Miniature world: {world.get('dir')} (build key {world.get('key')}). It is a demonstration and a "
              "test bed, not evidence about real models; its numbers move with library versions.")

    doc.h(2, "Findings", "findings")
    rows = []
    for f in compute_findings(data, root):
        shown = {True: "yes", False: "NO", None: "not measured"}[f["shown"]]
        rows.append([str(f["n"]), f["title"], (shown, f["runs"][0] if f["runs"] else None), f["text"]])
    doc.table(["#", "finding (Zhang et al. 2024)", "shown", "numbers"], rows)

    doc.h(2, "Main table", "main")
    doc.p("Every model x method on each dataset: top-1, mean accuracy of the worst 1/5/10 classes, mean class-wise "
          "matching margin (CMM, score of the true class minus the best other), expected calibration error (15 "
          "bins, softmax of the scores) and the model's ImageWikiQA accuracy (image condition).")
    doc.table(["model", "method", "dataset", "top-1", "worst-1", "worst-5", "worst-10", "CMM", "ECE", "ImageWikiQA"],
              [[r["model"], r["method"], r["dataset"] or "", (_pct(r["top1"]), r["run"]),
                (_pct(r["worst1"]) + (f" ({r['worst1_class']})" if r["worst1_class"] else ""), r["run"]),
                (_pct(r["worst5"]), r["run"]), (_pct(r["worst10"]), r["run"]),
                (_num(r["cmm"]), r["run"]), (_num(r["ece"]), r["run"]), (_pct(r["wikiqa"]), r["wikiqa_run"])]
               for r in data["main"]])

    doc.h(2, "Label-space size", "label-space")
    doc.p("Top-1 when the model chooses among the true class and N-1 random others (generation: the candidates are "
          "listed in the question, closed world; likelihood: only the candidates are scored). CLIP zero-shot over "
          "all classes is the dashed line.")
    ls = sorted(data["label_space"], key=lambda r: (r["model"], r["measure"], r["candidates"] or 0))
    doc.table(["model", "method", "candidates", "top-1"],
              [[r["model"], r["measure"], str(r["candidates"]), (_pct(r["top1"]), r["run"])] for r in ls])
    doc.figure(figures.label_space(ls, [r for r in data["main"] if r["measure"] == "zeroshot"]),
               "label_space.png", "top-1 vs number of candidate classes")

    doc.h(2, "Prompt variants", "prompts")
    doc.p("Open-world generation with different questions (the same images and matching rule).")
    doc.table(["model", "prompt", "top-1", "worst-1"],
              [[r["model"], str(r["prompt"]) + (" + CoT" if r["cot"] else ""), (_pct(r["top1"]), r["run"]),
                (_pct(r["worst1"]), r["run"])] for r in data["prompts"]])

    doc.h(2, "Linear probes by layer", "probes")
    doc.p("Multinomial logistic regression on each layer's features (poolings: last token, mean of image tokens, "
          "mean of all tokens); L2 strength and the reported feature chosen on the validation split, test reported "
          "once. Horizontal lines: CLIP's own probe and zero-shot.")
    doc.table(["model", "best feature (on val)", "val", "test", "CLIP probe", "CLIP zero-shot"],
              [[p["model"], str(p["best"]), (_pct(p["val"]), p["run"]), (_pct(p["top1"]), p["run"]),
                (_pct(p["clip_probe"]), p["run"]), (_pct(p["clip_zeroshot"]), p["run"])] for p in data["probes"]])
    for i, p in enumerate(data["probes"]):
        doc.figure_file(p["png"], f"probe_{i}.png", f"{p['model']}: test accuracy by layer")

    doc.h(2, "Class frequency vs per-class accuracy", "frequency")
    doc.p("Mentions of each class name (word boundary, case-insensitive) in the model's training conversations "
          "against its per-class accuracy, with a least-squares fit on log10(1 + mentions).")
    doc.table(["model", "accuracy of", "Spearman", "Pearson (log)"],
              [[f["model"], f["of"] or "", (_num(f["spearman"], "{:.2f}"), f["run"]),
                (_num(f["pearson_log"], "{:.2f}"), f["run"])] for f in data["frequency"]])
    for i, f in enumerate(data["frequency"]):
        doc.figure(figures.frequency_fit(f), f"frequency_{i}.png", f"{f['model']}: class frequency vs accuracy")

    doc.h(2, "Worst-k classes", "worst-k")
    doc.p("Top-1 beside the mean accuracy of the k worst classes, per run of the main table.")
    doc.figure(figures.worst_k_bars(data["main"]), "worst_k.png", "top-1 and worst-1/5/10 class accuracy")

    samples_section(doc, data)

    doc.h(2, "Class-wise matching margin vs per-class accuracy", "cmm")
    doc.p("CMM_c = mean over class c's images of s(x, c) - max_{j != c} s(x, j); one point per class and run with "
          "a score matrix.")
    doc.figure(figures.cmm_vs_accuracy([r for r in data["main"] if r["measure"] != "probe"]), "cmm.png",
               "per-class CMM vs per-class accuracy")

    doc.h(2, "Calibration", "calibration")
    doc.p("Reliability diagrams (15 equal-width bins, right-closed; confidence = softmax of the scores).")
    cells = []
    from ..metrics.plots import ReliabilityFigure

    drawer = ReliabilityFigure(compress_level=1)  # one figure redrawn per run: hundreds of runs stay fast
    try:
        for i, r in enumerate(x for x in data["main"] if x["ece"] is not None):
            rel = figures.reliability(root / r["run"], f"{r['model']}: {r['measure']}", drawer)
            if rel:
                cells.append((rel[0], f"reliability_{i}.png", f"{r['model']} {r['method']}: ECE {rel[1]:.3f}"))
    finally:
        drawer.close()
    doc.gallery(cells)

    doc.h(2, "CLIP's hardest classes beside the VLM", "clip-worst")
    doc.p("CLIP's worst classes (zero-shot) and each VLM method's accuracy on the same classes (Tu et al. report "
          "that VLMs built on a CLIP vision tower can beat that CLIP on its hardest classes).")
    cw = data["clip_worst"]
    if cw:
        methods = [(v["model"], v["method"]) for v in cw[0]["vlm"]]
        doc.table(["class", "CLIP"] + [f"{m}: {meth}" for m, meth in methods],
                  [[c["class"], (_pct(c["clip"]), c["clip_run"])] + [(_pct(v["accuracy"]), v["run"]) for v in c["vlm"]]
                   for c in cw])
    else:
        doc.p("(no CLIP zero-shot run)")

    doc.h(2, "Fine-tuning before / after", "finetune")
    doc.p("Each measurement of the base and the fine-tuned model on the same samples; paired: samples the "
          "fine-tuned model gets right that the base got wrong (gained) and the reverse (lost), with McNemar's "
          "exact two-sided p-value.")
    ft_rows = []
    for f in data["finetune"]:
        pairs = [(before["method"], before, next((r for r in data["main"] if r["model"] == f["model"]
                                                  and r["method"] == before["method"]), None))
                 for before in data["main"] if before["model"] == f["base"] and before["measure"] != "probe"]
        pairs.append(("ImageWikiQA", *(next((q for q in data["wikiqa"] if q["model"] == m and q["condition"] == "image"),
                                            None) for m in (f["base"], f["model"]))))
        for what, before, after in pairs:
            if before and after:
                a, b = (before.get("top1", before.get("accuracy")), after.get("top1", after.get("accuracy")))
                ft_rows.append([f"{f['base']} -> {f['model']}", what, (_pct(a), before["run"]), (_pct(b), after["run"]),
                                f"{100 * (b - a):+.1f}", _paired_cell(root, before["run"], after["run"])])
    doc.table(["models", "measurement", "before", "after", "change (points)", "paired: gained / lost (p)"], ft_rows)
    for i, f in enumerate(data["finetune"]):
        doc.figure_file(f["curve"], f"finetune_{i}.png", f"{f['model']}: training loss and validation accuracy")

    doc.h(2, "ImageWikiQA", "wikiqa")
    doc.p("Four-option knowledge questions about the image's class (chance 25%). Split: accuracy on images the same "
          "model classified correctly vs wrongly (its classification run). Conditions: image; oracle class (the "
          "class name stated in the prompt); no image (language prior).")
    doc.table(["model", "method", "condition", "accuracy", "unparseable", "classified right", "classified wrong",
               "gap (points)"],
              [[q["model"], q["method"], q["condition"], (_pct(q["accuracy"]), q["run"]),
                (_pct(q["unparseable_rate"]), q["run"]),
                (f"{_pct(q['right_acc'])} (n={q['right_n']})" if q["right_n"] is not None else "–", q["run"]),
                (f"{_pct(q['wrong_acc'])} (n={q['wrong_n']})" if q["wrong_n"] is not None else "–", q["run"]),
                ("–" if q["gap"] is None else f"{100 * q['gap']:+.1f}", q["run"])] for q in data["wikiqa"]])

    robustness(doc, data)
    from .protocols import section as protocol_sections  # issue 33: open world, hard MC, intervals

    protocol_sections(doc, data, root)

    doc.h(2, "Runs", "runs")
    doc.p(f"{len(data['runs'])} runs planned; failed or blocked: {', '.join(data['failed']) or 'none'}.")
    for s in data.get("skips") or []:
        doc.p(s)
    doc.table(["run", "measure", "model", "dataset", "status"],
              [[(r["id"], r["id"]), r["measure"], r["model"], r["dataset"] or "",
                "finished" if r["status"] in ("done", "reused") else r["status"]]
               for r in data["runs"].values()])

    doc.h(2, "Study file", "study-file")
    doc.raw(f"<pre>{html.escape(data.get('study_text') or '')}</pre>",
            "```yaml\n" + (data.get("study_text") or "") + "\n```\n")
    return doc


SHOWN_WORST, SHOWN_CONFUSIONS = 3, 3  # per run: worst classes and confusion cells linked to the samples


def samples_section(doc: Doc, data: dict) -> None:
    """Links into the sample browser (``browse/index.html``, written beside the report by
    ``write_report``): per run of the main table its worst classes (the class's wrong samples)
    and its most frequent confusions (true class -> predicted class: those samples)."""
    from ..browse import link

    doc.h(2, "Samples behind the numbers", "samples")
    doc.raw('<p>The <a href="browse/index.html">sample browser</a> shows every image with each run\'s prediction, '
            "answer or top-5 scores, with filters (class, wrong for one run and right for another, all wrong, "
            "unmatched / skipped / api_error, text in the answers). Each class and confusion below opens its "
            "samples there.</p>",
            "The [sample browser](browse/index.html) shows every image with each run's prediction, answer or top-5 "
            "scores, with filters. Each class and confusion below opens its samples there.\n")
    rows = []
    for r in data["main"]:
        res = _read_results(doc.root / r["run"])
        per_class = res.get("per_class_accuracy") if isinstance(res, dict) else None
        if not isinstance(per_class, dict) or not r.get("dataset"):
            continue
        keys = list(per_class)
        counts = res.get("per_class_count") or {}
        worst = sorted((k for k in keys if counts.get(k, 1)), key=lambda k: (per_class[k], keys.index(k)))
        cells_h, cells_m = [], []
        for k in worst[:SHOWN_WORST]:
            url = link(r["dataset"], run=r["run"], cls=keys.index(k), wrong=1)
            cells_h.append(f'<a href="{html.escape(url)}">{html.escape(k)} {_pct(per_class[k])}</a>')
            cells_m.append(f"[{k} {_pct(per_class[k])}]({url})")
        conf_h, conf_m = [], []
        for c in (res.get("confusions") or [])[:SHOWN_CONFUSIONS]:
            if c.get("true") in keys and c.get("predicted") in keys:
                url = link(r["dataset"], run=r["run"], cls=keys.index(c["true"]), pred=keys.index(c["predicted"]))
                text = f"{c['true']} \u2192 {c['predicted']} ({c['count']})"
                conf_h.append(f'<a href="{html.escape(url)}">{html.escape(text)}</a>')
                conf_m.append(f"[{text}]({url})")
        rows.append((r, cells_h, cells_m, conf_h, conf_m))
    if not rows:
        doc.p("(no run with per-class accuracy)")
        return
    head = "".join(f"<th>{h}</th>" for h in ("model", "method", "dataset", "worst classes (accuracy)",
                                              "most frequent confusions (samples)"))
    body = "".join(f"<tr><td>{html.escape(r['model'])}</td><td>{html.escape(r['method'])}</td>"
                   f"<td>{html.escape(r['dataset'])}</td><td>{', '.join(wh)}</td><td>{', '.join(ch) or '–'}</td></tr>"
                   for r, wh, _, ch, _ in rows)
    md = ["| model | method | dataset | worst classes (accuracy) | most frequent confusions (samples) |",
          "|---|---|---|---|---|"]
    md += [f"| {r['model']} | {r['method']} | {r['dataset']} | {', '.join(wm)} | {', '.join(cm) or '–'} |"
           for r, _, wm, _, cm in rows]
    doc.raw(f'<table class="samples"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>', "\n".join(md) + "\n")


def _read_results(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _measured(doc: Doc, title: str, anchor: str, intro: str, rows: list, how: str) -> bool:
    """A section's heading and intro; without rows, how to measure it instead."""
    doc.h(2, title, anchor)
    doc.p(intro)
    if not rows:
        doc.p(f"Not measured in this study ({how}).")
    return bool(rows)


def _linked(run: str, *texts: str) -> list:
    return [(t, run) for t in texts]


def robustness(doc: Doc, data: dict) -> None:
    """Group shift, OOD detection, shape bias, retrieval and ImageNet-X factor sections."""
    if _measured(doc, "Group shift", "groups", "Accuracy on two groups of a dataset's images (a dataset entry with "
                 "groups: FIELD and group_drop: A,B, e.g. CounterAnimal's common vs counter backgrounds); drop = A - B "
                 "in points.", data["groups"], "give a dataset entry groups: FIELD and evaluate on it"):
        doc.table(["model", "method", "dataset", "field", "group A", "group B", "drop (points)"],
                  [[g["model"], g["method"], g["dataset"] or "", g["field"]]
                   + _linked(g["run"], f"{g['a']} {_pct(g['acc_a'])} (n={g['n_a']})",
                             f"{g['b']} {_pct(g['acc_b'])} (n={g['n_b']})",
                             "–" if g["drop"] is None else f"{g['drop']:+.1f}") for g in data["groups"]])
    if _measured(doc, "OOD detection", "ood", "The same model and method on in-distribution (positive) and "
                 "out-of-distribution images: AUROC and false positive rate at 95% true positive rate of the maximum "
                 "softmax probability (MSP) and, with cosine scores, of MCM (softmax of cosines / tau).", data["ood"],
                 "add {measure: ood, ood: DATASET} with an unlabeled: true dataset"):
        doc.table(["model", "method", "ID dataset", "OOD dataset", "MSP AUROC", "MSP FPR@95", "MCM AUROC",
                   "MCM FPR@95"],
                  [[o["model"], o["method"], o["dataset"] or "", o["ood_dataset"]]
                   + _linked(o["run"], *(_num(o[k]) for k in ("msp_auroc", "msp_fpr95", "mcm_auroc", "mcm_fpr95")))
                   for o in data["ood"]])
        doc.gallery([(Path(o["png"]).read_bytes() if o["png"] and Path(o["png"]).exists() else None, f"roc_{i}.png",
                      f"{o['model']} {o['method']}: ROC (ID positive)") for i, o in enumerate(data["ood"])])
    if _measured(doc, "Shape bias", "shape-bias", "Cue-conflict images (shape of one class, texture of another): "
                 "shape bias = shape decisions / (shape + texture decisions) (Geirhos et al. 2019); 'other' = neither.",
                 data["shape_bias"], "add {measure: shape_bias} on a cue-conflict dataset"):
        doc.table(["model", "method", "dataset", "shape bias", "shape", "texture", "other"],
                  [[r["model"], r["method"], r["dataset"] or ""]
                   + _linked(r["run"], _num(r["shape_bias"], "{:.2f}"), str(r["shape"]), str(r["texture"]),
                             str(r["other"])) for r in data["shape_bias"]])
        doc.figure(figures.shape_bias(data["shape_bias"]), "shape_bias.png",
                   "per-category shape bias (dots) and overall (dashed lines)")
    if _measured(doc, "Retrieval", "retrieval", "Zero-shot retrieval on a captions dataset: Recall@K of image -> text "
                 "(any of the image's captions in the top K) and text -> image.", data["retrieval"],
                 "add {measure: retrieval} on a captions dataset"):
        ks = sorted({k for r in data["retrieval"] for k in r["i2t"]}, key=int)
        doc.table(["model", "dataset"] + [f"image->text R@{k}" for k in ks] + [f"text->image R@{k}" for k in ks],
                  [[r["model"], r["dataset"] or ""]
                   + _linked(r["run"], *(_pct(r["i2t"].get(k)) for k in ks), *(_pct(r["t2i"].get(k)) for k in ks))
                   for r in data["retrieval"]])
    factor_section(doc, data["factors"])
    shift_section(doc, data)
    corruption_section(doc, data["shift"])
    per_model_section(doc, data)


def corruption_section(doc: Doc, rows: list[dict]) -> None:
    """mCE of the shift runs on ImageNet-C (Hendrycks & Dietterich; ``metrics.corruption``): the
    paper's mCE and relative mCE only when all 15 corruptions x 5 severities were measured, else
    "n/a" with the partial figure and the cells it covers beside it."""
    rows = [r for r in rows if r.get("mce_cells") is not None]
    if not rows:
        return
    doc.h(3, "Corruption error (ImageNet-C)", "mce")
    doc.p("CE per corruption = summed error over the five severities / AlexNet's (published errors, "
          "google-research/augmix); mCE = mean CE over the 15 corruptions, relative mCE the same on error minus "
          "clean error (the ID run's). Both exist only for the full 15 x 5 benchmark; otherwise the partial figure "
          "over the measured cells is shown beside \"n/a\" and is not the paper's mCE.")
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # noqa: E731
    doc.table(["model", "method", "shifted set", "mCE %", "relative mCE %", "partial mCE %",
               "partial relative mCE %", "cells measured"],
              [[r["model"], r["method"], r["shift_dataset"]]
               + _linked(r["run"], pct(r["mce"]), pct(r["relative_mce"]), pct(r["mce_partial"]),
                         pct(r["relative_mce_partial"]), f"{len(r['mce_cells'])} of 75")
               for r in rows])


def shift_section(doc: Doc, data: dict) -> None:
    """Distribution shift: ID vs shift accuracy per (model, method) with Clopper-Pearson intervals,
    effective robustness against an external baseline only (the reference tables' baseline models
    with ``reference: {fit: true}``; else "n/a: no baseline"), the one-point-per-model probit figure
    (one panel per shifted set) and the published models drawn as grey points, with their ER (the
    same fit, the same function as the runs') and, from imagenet-testbed's table, their mCE
    (``metrics.testbed``, the function a run's ImageNet-C results use)."""
    rows = data["shift"]
    if not _measured(doc, "Distribution shift and effective robustness", "shift",
                     "Accuracy on the in-distribution test set and on a shifted set (sketches, another rendition, "
                     "corrupted images), with 95% Clopper-Pearson intervals. Effective robustness (Taori et al. 2020) "
                     "= shift accuracy minus the logit-linear fit of shift on ID accuracy over baseline models outside "
                     "this study (a reference table with fit: true; from imagenet-testbed's table its standard-training "
                     "models); without one the column says \"n/a: no baseline\" and the figure has no ER line. The "
                     "figure puts one point per model and method on probit axes with y = x and a Huber line (Tu et al.).",
                     rows, "add {measure: shift, shift: DATASET} with a shifted dataset"):
        return
    from ..metrics.robustness import NO_BASELINE, effective_robustness, fittable

    from . import reference as published

    ref = published.load(data.get("reference"))
    by_set: dict = {}
    for r in rows:
        by_set.setdefault(r["shift_dataset"], []).append(r)
    drawn = {}  # shifted set -> published points (and whether the baseline is fitted on them)
    notes, ref_rows = [], []
    for name, group in by_set.items():
        subset = next((r.get("id_subset_classes") for r in group if r.get("id_subset_classes")), None)
        pts, note = published.points_for(ref, group[0]["dataset"], name, subset)
        if note:
            notes.append(note)
        drawn[name] = {"points": pts, "fit": bool(ref and ref["fit"])}
        base = figures.baseline_points(group, drawn[name])
        er = None
        if fittable([x for x, _ in base], [y for _, y in base]):  # runs and published points: one call, one line
            er = effective_robustness([r["id_accuracy"] for r in group] + [p["x"] for p in pts],
                                      [r["shift_accuracy"] for r in group] + [p["y"] for p in pts],
                                      [x for x, _ in base], [y for _, y in base])["er"]
        reason = NO_BASELINE if not base else "n/a: fewer than 2 baseline models"
        for k, r in enumerate(group):
            r["er"], r["er_note"] = (None, reason) if er is None else (float(er[k]), None)
        for k, p in enumerate(pts):
            ref_rows.append({**p, "set": name, "er": None if er is None else float(er[len(group) + k]),
                             "er_note": reason})
    if ref:
        n = sum(len(d["points"]) for d in drawn.values())
        doc.p(f"Published results ({', '.join(Path(f).name for f in ref['files'])}): {n} points drawn as grey "
              "crosses (top-1 on the ID and the shifted set, dataset names "
              + (", ".join(f"{k} = {v}" for k, v in ref["datasets"].items()) or "as in the study") + "); "
              + ("the effective-robustness line is fitted on their baseline models." if ref["fit"] else
                 "not part of the fits (reference: {fit: true} fits the line on them)."))
    for note in notes:
        doc.p(note)
    ci = lambda c: "–" if not c else f"{100 * c[0]:.1f}–{100 * c[1]:.1f}"  # noqa: E731
    erc = lambda r: r["er_note"] if r.get("er") is None else f"{100 * r['er']:+.1f}"  # noqa: E731
    doc.table(["model", "method", "ID dataset", "shifted set", "ID %", "ID 95% CI", "shift %", "shift 95% CI",
               "ER (points)"],
              [[r["model"], r["method"], r["dataset"] or "", r["shift_dataset"]]
               + _linked(r["run"], _pct(r["id_accuracy"]), ci(r["id_ci95"]), _pct(r["shift_accuracy"]),
                         ci(r["shift_ci95"]), erc(r))
               for r in rows])
    if any(r.get("mce_cells") is not None for r in rows):
        doc.p("The ImageNet-C runs' mCE and relative mCE are in the table \"Corruption error (ImageNet-C)\" below.")
    panels = figures.shift_panels(by_set, drawn)
    doc.figure(figures.panels_png(panels), "effective_robustness.png",
               "shift vs ID accuracy, one point per model and method (probit axes, y = x, Huber line; grey: "
               "published models; green: the logit fit on the baseline models that defines effective robustness, "
               "drawn only with an external baseline)", panels)
    if ref_rows:
        _published_table(doc, ref, ref_rows)


def _mce_cells(c: dict | None) -> tuple[str, str]:
    """mCE and relative mCE (percent) of a ``corruption_errors`` result; the partial mean CE, named,
    when not all 15 corruptions x 5 severities are there."""
    from ..metrics.testbed import partial_label, partial_mce

    if not c:
        return "–", "–"
    if c.get("mce") is None:
        return (f"{_pct(partial_mce(c))} (partial: {partial_label(c)})", "–")
    return _pct(c["mce"]), _pct(c.get("relative_mce"))


def _published_table(doc: Doc, ref: dict, ref_rows: list[dict]) -> None:
    """The grey points as a table: ID and shift accuracy, ER (computed with the runs, above) and,
    for models of an imagenet-testbed table, mCE / relative mCE of its on-disk ImageNet-C columns
    (published AlexNet constants; the partial mean CE, named, when a cell is missing)."""
    from ..metrics.testbed import evaluate_table

    mce: dict = {}
    for table in (ref.get("testbed") or {}).values():
        drawn = sorted({r["label"] for r in ref_rows if r["label"] in table.values})
        for row in evaluate_table(table, models=drawn)["rows"]:
            if row["corruption"].get("on-disk"):
                mce[row["model"]] = _mce_cells(row["corruption"]["on-disk"])
    doc.p("Published models drawn above (grey), with effective robustness against the same line as the study's runs"
          + (" and, from imagenet-testbed's table, mCE and relative mCE of its on-disk ImageNet-C columns "
             "(Hendrycks & Dietterich; published AlexNet constants)" if mce else "") + ".")
    doc.table(["model", "shifted set", "baseline", "ID %", "shift %", "ER (points)", "mCE", "relative mCE"],
              [[r["label"], r["set"], "yes" if r.get("baseline") else "", _pct(r["x"]), _pct(r["y"]),
                r["er_note"] if r["er"] is None else f"{100 * r['er']:+.1f}", *mce.get(r["label"], ("–", "–"))]
               for r in ref_rows])


def per_model_section(doc: Doc, data: dict) -> None:
    """Tu et al.'s one-point-per-model figures for the other measurements (when the study has at
    least three models): OOD AUROC and FPR@95 vs ID accuracy, ECE and NLL (before and after temperature
    scaling, when the run fitted one) vs accuracy, shape bias vs
    accuracy (the same model and method on the main test set)."""
    if len(data.get("models") or {}) < figures.MIN_MODELS:
        return
    panels = figures.per_model_panels(data)
    png = figures.panels_png(panels)
    if png is None:
        return
    doc.h(2, "One point per model", "per-model")
    doc.p("Each point is one model and method: OOD detection (MSP AUROC, FPR@95) against ID accuracy, calibration "
          "error (ECE, NLL; after temperature scaling too when a calibration split was fitted) against accuracy and shape bias against accuracy, with Spearman's rho and R² of the Huber "
          "line in each legend (Tu et al. 2024).")
    doc.figure(png, "per_model.png", "one point per model and method", panels)


SHOWN_FACTORS = 6  # factor columns of the table: the ones with most images


def factor_section(doc: Doc, rows: list[dict]) -> None:
    """ImageNet-X: overall accuracy and, per factor (the SHOWN_FACTORS with most images, all when
    fewer), accuracy and error ratio = (1 - acc_f) / (1 - acc); Tu et al.'s probit figure."""
    if not _measured(doc, "ImageNet-X factors", "factors", "Accuracy on the images annotated with each ImageNet-X "
                     "visual factor (Idrissi et al. 2023; pose, background, texture, ...) beside the overall accuracy "
                     "on the annotated images; error ratio = (1 - factor accuracy) / (1 - overall accuracy), above 1: "
                     "the factor hurts more than average. Cells: accuracy (error ratio; images with the factor).", rows,
                     "add {measure: factors, source: imagenet-x} on an ImageNet val dataset, or source: FILE.jsonl "
                     "with annotations of your images"):
        return
    sizes: dict[str, int] = {}
    for r in rows:
        for f, x in r["factors"].items():
            sizes[f] = sizes.get(f, 0) + (x.get("n") or 0)
    names = sorted((f for f in sizes if sizes[f]), key=lambda f: -sizes[f])[:SHOWN_FACTORS]
    names.sort(key=list(sizes).index)  # annotation order
    doc.table(["model", "method", "dataset", "annotation", "images", "overall"]
              + names,
              [[r["model"], r["method"], r["dataset"] or "", f"{r['source']} ({r['variant']})"]
               + _linked(r["run"], str(r["n"]), _pct(r["accuracy"]),
                         *(_factor_cell(r["factors"][f]) for f in names)) for r in rows])
    plotted = [f for f in sizes if sizes[f]]
    png = figures.factors(rows, plotted)
    if png is None:
        doc.p(f"The one-point-per-model figure (factor vs overall accuracy) needs factors runs of at least three "
              f"models; this study has {len({r['model'] for r in rows})}.")
    doc.figure(png, "factors.png",
               "factor accuracy vs overall accuracy on probit axes, one point per model and method in each factor's "
               "panel; y = x, Huber line with Spearman and R² (Tu et al.)")


def _factor_cell(x: dict) -> str:
    return f"{_pct(x['accuracy'])} ({_num(x['error_ratio'], '{:.2f}')}; n={x['n']})"


def _paired_cell(root: Path, run_a: str, run_b: str) -> str:
    """"+27 / -11 (p=0.015)" over the samples both runs scored; "–" when they cannot be paired."""
    from ..errors import VlmprobeError
    from ..metrics.paired import correct_by_id, paired_change

    try:
        pc = paired_change(correct_by_id(root / run_a), correct_by_id(root / run_b))
    except VlmprobeError:
        return "–"
    ns = "" if pc["p_value"] < 0.05 else " n.s."  # issue 33: non-significant differences are marked
    return f"+{pc['gained']} / -{pc['lost']} (p={pc['p_value']:.2g}){ns}" if pc["n"] else "–"


def write_report(root: str | Path, browser: bool = True) -> dict:
    """Write ``root/report.html``, ``root/report.md`` (+ ``report_files/*.png``) and, with
    ``browser``, the sample browser the report links to (``root/browse/``, ``vlmprobe.browse``);
    returns their paths."""
    root = Path(root)
    doc = build(root)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    title = html.escape(doc.html[0][4:-5]) if doc.html else "vlmprobe study"
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{CSS}</style></head><body>\n" + "\n".join(doc.html)
            + f"\n<p class=\"na\">generated {stamp}</p>\n</body></html>\n")
    atomic_write_text(root / "report.html", page)
    files = root / "report_files"
    files.mkdir(exist_ok=True)
    for name, png in doc.images.items():
        if not (files / name).exists() or (files / name).read_bytes() != png:
            (files / name).write_bytes(png)
    for name, panels in doc.sidecars.items():
        atomic_write_text(files / name, json.dumps(panels, indent=1, default=float) + "\n")
    atomic_write_text(root / "report.md", "\n".join(doc.md) + f"\ngenerated {stamp}\n")
    paths = {"html": str(root / "report.html"), "md": str(root / "report.md")}
    if browser:
        from ..browse import write_browser
        from ..errors import VlmprobeError

        try:
            paths["browser"] = write_browser(root, progress=False)["index"]
        except VlmprobeError as e:
            print(f"browse: not written ({e})", flush=True)
    return paths
