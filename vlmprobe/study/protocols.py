"""The study report's issue-33 sections (kept apart from ``report.build`` so other sections merge
cleanly): open-world scoring of the VLM's answers, random vs hard multiple choice, and 95%
intervals with paired tests for every table of the report.

Everything is read from the run directories (results.json's ``intervals`` and ``open_world``
blocks, samples.jsonl for the paired tests); nothing is recomputed from a model.

- Intervals: as results.json records them (``metrics.intervals``: Clopper-Pearson for
  proportions, seeded bootstrap otherwise).
- Paired tests (``metrics.paired.paired_test``): McNemar's exact p-value and the paired
  bootstrap interval of the difference on the samples both runs scored; a difference is marked
  "n.s." unless p < 0.05 and the interval excludes 0.
"""
from __future__ import annotations

from pathlib import Path

from .collect import _read_json as _read


def _ci(iv) -> str:
    """" [lo, hi]" in percent from {low, high} or [low, high]; "" when absent."""
    if isinstance(iv, dict):
        iv = [iv.get("low"), iv.get("high")]
    if not iv or iv[0] is None or iv[1] is None:
        return ""
    return f" [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _cell(value, iv, run: str, scale: float = 100.0, fmt: str = "{:.1f}"):
    if value is None:
        return ("–", run)
    if scale == 100.0:
        return (f"{_pct(value)}{_ci(iv)}", run)
    iv = [iv.get("low"), iv.get("high")] if isinstance(iv, dict) else iv
    tail = f" [{fmt.format(iv[0])}, {fmt.format(iv[1])}]" if iv and iv[0] is not None else ""
    return (fmt.format(value) + tail, run)


def paired(root: Path, run_a: str, run_b: str) -> dict | None:
    """``paired_test`` of run B against run A (None when they share no sample)."""
    from ..errors import VlmprobeError
    from ..metrics.paired import correct_by_id, paired_test

    try:
        t = paired_test(correct_by_id(root / run_a), correct_by_id(root / run_b))
    except VlmprobeError:
        return None
    return t if t["n"] else None


def _diff_cell(t: dict | None, sign: float = 1.0) -> str:
    """"+12.3 [+5.0, +19.1] (p=0.001)" with " n.s." when not significant; sign -1 flips B - A."""
    if t is None:
        return "–"
    from ..metrics.paired import significance_mark

    d, lo, hi = (sign * 100 * x for x in (t["difference"], t["bootstrap"]["low"], t["bootstrap"]["high"]))
    lo, hi = min(lo, hi), max(lo, hi)
    return f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}] (p={t['mcnemar_exact_p']:.2g}){significance_mark(t).replace(' (n.s.)', ' n.s.')}"


def open_world_rows(data: dict, root: Path) -> list[dict]:
    rows = []
    for rid, run in data["runs"].items():
        if run["measure"] != "open_world":
            continue
        ow = (_read(root / rid / "results.json") or {}).get("open_world")
        if ow:
            rows.append({"run": rid, "model": run["model"], "dataset": run["dataset"], **ow})
    return rows


def hard_rows(data: dict, root: Path) -> list[dict]:
    """Per hard-candidate run: the random-candidate run with otherwise the same options."""
    runs = data["runs"]
    out = []
    for rid, run in runs.items():
        if run["measure"] not in ("generate", "likelihood") or run["params"].get("candidates") != "hard":
            continue
        want = {**run["params"], "candidates": "random", "hard_reference": None}
        twin = next((r for r in runs.values() if r["measure"] == run["measure"] and r["model"] == run["model"]
                     and r["dataset"] == run["dataset"]
                     and {**r["params"], "hard_reference": None} == want), None)
        hard = _read(root / rid / "results.json")
        rand = _read(root / twin["id"] / "results.json") if twin else None
        if not hard or not rand:
            continue
        out.append({"model": run["model"], "measure": run["measure"], "dataset": run["dataset"],
                    "candidates": run["params"].get("num_candidates"), "hard_run": rid, "random_run": twin["id"],
                    "hard": hard.get("top1"), "hard_ci": (hard.get("intervals") or {}).get("top1"),
                    "random": rand.get("top1"), "random_ci": (rand.get("intervals") or {}).get("top1"),
                    "test": paired(root, rid, twin["id"])})
    return out


def section(doc, data: dict, root: Path) -> None:
    """Append the three sections to the report ``doc`` (``report.Doc``)."""
    root = Path(root)
    doc.h(2, "Open-world scoring of the answers", "open-world")
    doc.p("The VLM's open-world generation answers scored beyond string inclusion (vlmprobe metrics RUN --open-world, "
          "from the stored responses): inclusion (the paper's 'label in response'), synonym (a WordNet lemma of the "
          "class or a names-list entry, includes inclusion), hypernym / hyponym (the answer names a more general / "
          "more specific WordNet concept of the true class; separate, not counted as right), semantic (the class "
          "name nearest to the answer under the CLIP text tower), unmatched (names no class and no relative). "
          "Percent of answers, 95% Clopper-Pearson intervals.")
    rows = open_world_rows(data, root)
    if rows:
        keys = ("inclusion", "synonym", "hypernym", "hyponym", "semantic", "unmatched")
        doc.table(["model", "dataset", "answers"] + list(keys),
                  [[r["model"], r["dataset"] or "", str(r["n"])]
                   + [(f"{_pct(r[k]['rate'])}{_ci(r[k]['ci95'])}", r["run"]) if r.get(k) else "–" for k in keys]
                   for r in rows])
        if any(r.get("wordnet") is None for r in rows):
            doc.p("WordNet was not found for some runs: synonyms from the names lists only, no hierarchy "
                  "(install wordnet-base or pass --wordnet DIR).")
    else:
        doc.p("No open-world run in this study (add a measurement {measure: open_world, models: [VLM], text_encoder: CLIP}).")

    doc.h(2, "Random vs hard multiple choice", "hard-candidates")
    doc.p("Top-1 among N candidates: the true class plus N-1 random classes, or the N-1 classes the study's CLIP "
          "zero-shot run scores highest on the same image (hard negatives, as FOCI). Inflation = random - hard, "
          "paired on the same images: 95% paired bootstrap interval and McNemar's exact p; n.s. = not significant.")
    rows = hard_rows(data, root)
    if rows:
        doc.table(["model", "method", "dataset", "candidates", "random", "hard", "inflation by random (points)"],
                  [[r["model"], r["measure"], r["dataset"] or "", str(r["candidates"]),
                    _cell(r["random"], r["random_ci"], r["random_run"]), _cell(r["hard"], r["hard_ci"], r["hard_run"]),
                    _diff_cell(r["test"])] for r in rows])
    else:
        doc.p("No hard-candidate run in this study (add candidates: [hard] and hard_reference: CLIP to a generate or "
              "likelihood measurement with num_candidates).")
    audit_section(doc, data, root)
    intervals_section(doc, data, root)


def audit_section(doc, data: dict, root: Path) -> None:
    """``vlmprobe audit`` runs: per knob, flips and the largest score difference."""
    doc.h(2, "Order and batch audit", "audit")
    doc.p("A seeded sample of a run re-run through the same engine with batch size 1, the images in a shuffled "
          "order, and each image's candidates in a permuted order (vlmprobe audit): predictions that flip and "
          "the largest score difference. A deterministic model with an exact engine gives no flips; "
          "closed-world generation lists the candidates in the question, so their order can change answers.")
    rows = []
    for rid, run in data["runs"].items():
        if run["measure"] != "audit":
            continue
        a = _read(root / rid / "audit.json")
        for knob, r in ((a or {}).get("knobs") or {}).items():
            if not r.get("applicable"):
                continue
            diff = r.get("max_abs_score_diff")
            rows.append([run["model"], f"{a['method']} ({run['deps'].get('run', '')})", knob,
                         (f"{r['num_flips']} of {r['n']}", rid), "–" if diff is None else f"{diff:.2g}",
                         str(r.get("responses_changed", "–"))])
    if rows:
        doc.table(["model", "run", "knob", "flips", "largest score difference", "answers changed"], rows)
    else:
        doc.p("No audit run in this study (add {measure: audit, models: [VLM]}).")


def intervals_section(doc, data: dict, root: Path) -> None:
    """95% intervals of every table's numbers and paired tests between methods on the same images."""
    doc.h(2, "95% intervals and paired tests", "intervals")
    doc.p("Main table with 95% intervals: top-1 (Clopper-Pearson), worst-k (stratified bootstrap over samples), "
          "CMM (bootstrap over classes), ECE (bootstrap over samples); seeded, 1,000 resamples.")
    table = []
    for r in data["main"]:
        iv = (_read(root / r["run"] / "results.json") or {}).get("intervals") or {}
        wk = iv.get("worst_k_accuracy") or {}
        table.append([r["model"], r["method"], r["dataset"] or "", _cell(r["top1"], iv.get("top1"), r["run"]),
                      _cell(r["worst1"], wk.get("1"), r["run"]), _cell(r["worst5"], wk.get("5"), r["run"]),
                      _cell(r["worst10"], wk.get("10"), r["run"]),
                      _cell(r["cmm"], iv.get("cmm_mean"), r["run"], 1.0, "{:.3f}"),
                      _cell(r["ece"], iv.get("ece"), r["run"], 1.0, "{:.3f}")])
    doc.table(["model", "method", "dataset", "top-1", "worst-1", "worst-5", "worst-10", "CMM", "ECE"], table)

    doc.p("Paired differences on the same images (B - A, points): each VLM method against the CLIP zero-shot run of "
          "the same dataset, and direct generation against probability inference of the same model.")
    pairs = []
    clips = [r for r in data["main"] if r["measure"] == "zeroshot"]
    for r in data["main"]:
        if r["measure"] in ("generate", "likelihood"):
            for c in clips:
                if c["dataset"] == r["dataset"]:
                    pairs.append((c, r))
        if r["measure"] == "generate":
            for lk in data["main"]:
                if lk["measure"] == "likelihood" and lk["model"] == r["model"] and lk["dataset"] == r["dataset"]:
                    pairs.append((lk, r))
    doc.table(["A", "B", "dataset", "A top-1", "B top-1", "B - A [95% CI] (McNemar p)"],
              [[f"{a['model']}: {a['method']}", f"{b['model']}: {b['method']}", b["dataset"] or "",
                (_pct(a["top1"]), a["run"]), (_pct(b["top1"]), b["run"]), _diff_cell(paired(root, a["run"], b["run"]))]
               for a, b in pairs])

    doc.p("Label-space, prompt and ImageWikiQA tables with 95% Clopper-Pearson intervals.")
    rest = []
    for r in sorted(data["label_space"], key=lambda x: (x["model"], x["measure"], x["candidates"] or 0)):
        iv = (_read(root / r["run"] / "results.json") or {}).get("intervals") or {}
        rest.append([r["model"], f"{r['measure']} ({r['candidates']} candidates)", _cell(r["top1"], iv.get("top1"),
                                                                                        r["run"])])
    for r in data["prompts"]:
        iv = (_read(root / r["run"] / "results.json") or {}).get("intervals") or {}
        rest.append([r["model"], f"prompt {r['prompt']}" + (" + CoT" if r["cot"] else ""),
                     _cell(r["top1"], iv.get("top1"), r["run"])])
    for q in data["wikiqa"]:
        iv = (_read(root / q["run"] / "results.json") or {}).get("intervals") or {}
        rest.append([q["model"], f"ImageWikiQA {q['method']} ({q['condition']})",
                     _cell(q["accuracy"], iv.get("accuracy"), q["run"])])
    doc.table(["model", "measurement", "top-1 / accuracy [95% CI]"], rest)

    er_rows = _er_rows(data)
    if er_rows:
        doc.p("Effective robustness (points; the distribution-shift section's definition and baseline line) with "
              "95% parametric-bootstrap intervals: each run's ID and shift accuracies resampled, the line fixed.")
        doc.table(["model", "method", "shifted set", "shift accuracy [95% CI]", "ER [95% CI]"], er_rows)


def _er_rows(data: dict) -> list:
    """The shift section's effective robustness per run (line: the reference table's baseline models
    when the study's reference says fit; none otherwise) with ``intervals.effective_robustness_intervals``."""
    from ..metrics.intervals import effective_robustness_intervals
    from ..metrics.robustness import effective_robustness, fittable
    from . import figures
    from . import reference as published

    rows = [r for r in data.get("shift") or [] if r.get("id_n") and r.get("shift_n")]
    ref = published.load(data.get("reference")) if rows else None
    by_set: dict = {}
    for r in rows:
        by_set.setdefault(r["shift_dataset"], []).append(r)
    out = []
    for name, group in by_set.items():
        subset = next((r.get("id_subset_classes") for r in group if r.get("id_subset_classes")), None)
        drawn = {"points": published.points_for(ref, group[0]["dataset"], name, subset)[0],
                 "fit": bool(ref and ref["fit"])}
        base = figures.baseline_points(group, drawn)
        if not fittable([x for x, _ in base], [y for _, y in base]):
            continue
        er = effective_robustness([r["id_accuracy"] for r in group], [r["shift_accuracy"] for r in group],
                                  [x for x, _ in base], [y for _, y in base])["er"]
        ivs = effective_robustness_intervals(
            [round(r["id_accuracy"] * r["id_n"]) for r in group], [r["id_n"] for r in group],
            [round(r["shift_accuracy"] * r["shift_n"]) for r in group], [r["shift_n"] for r in group],
            [x for x, _ in base], [y for _, y in base])
        for r, e, iv in zip(group, er, ivs):
            cell = f"{100 * e:+.1f}" + (f" [{100 * iv['low']:+.1f}, {100 * iv['high']:+.1f}]" if iv else "")
            out.append([r["model"], r["method"], name, (f"{_pct(r['shift_accuracy'])}{_ci(r.get('shift_ci95'))}",
                                                        r["run"]), (cell, r["run"])])
    return out
