"""The paper's six findings (Zhang et al. 2024, "Why are Visually-Grounded Language Models Bad
at Image Classification?") as numbers computed from a collected study, each with whether the
study shows it. Thresholds are stated in the text of each finding.

Pairs are formed per base VLM (a model without ``finetune``) and the first CLIP zero-shot run
on the same dataset; a finding whose runs are absent is "not measured".

Each comparison is judged with its test, not by a strict inequality of two accuracies: two runs
on the same images by McNemar's exact test (``metrics.paired``; shown needs p < ALPHA and the
stated size); "probe close to CLIP" by McNemar of the probe against generation (the hidden states
hold what generation misses) with the point gap to CLIP within 10 points, stating the paired
bootstrap interval of CLIP - probe beside it (on the toy world it straddles the margin); two groups of questions by a bootstrap interval of the
difference of their accuracies (shown when it excludes 0 and the point estimate is large enough).
Finding 4 is a rank correlation over classes (Spearman's rho, stated with its class count).
With no study directory (``root=None``) the tests cannot be run and every comparison says so.
"""
from __future__ import annotations

from pathlib import Path

ALPHA = 0.05


def _pick(rows, **match):
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _mcnemar(root, a: str | None, b: str | None) -> dict | None:
    """McNemar's exact test between runs ``a`` and ``b`` (the images both scored), or None."""
    from ..errors import VlmprobeError
    from ..metrics.paired import correct_by_id, paired_change

    if root is None or not a or not b:
        return None
    try:
        pc = paired_change(correct_by_id(Path(root) / a), correct_by_id(Path(root) / b))
    except (VlmprobeError, OSError, ValueError):
        return None
    return pc if pc["n"] else None


def _says(pc: dict | None, better: bool = True) -> tuple[bool, str]:
    """(significant in the stated direction, text) for a McNemar result of before -> after."""
    if pc is None:
        return False, "; no paired test (runs not readable)"
    sig = pc["p_value"] < ALPHA and (pc["gained"] > pc["lost"]) == better
    return sig, f"; McNemar exact p={pc['p_value']:.2g} (+{pc['gained']} / -{pc['lost']} of {pc['n']} paired images)"


def _bootstrap(root, a: str | None, b: str | None) -> dict | None:
    """Paired bootstrap interval of acc(b) - acc(a) over the images both runs scored, or None."""
    from ..errors import VlmprobeError
    from ..metrics.paired import correct_by_id, paired_bootstrap_interval

    if root is None or not a or not b:
        return None
    try:
        return paired_bootstrap_interval(correct_by_id(Path(root) / a), correct_by_id(Path(root) / b))
    except (VlmprobeError, OSError, ValueError):
        return None


def compute(data: dict, root: str | Path | None = None) -> list[dict]:
    """-> [{n, title, shown (True/False/None), text, runs: [run ids], test}] (``root``: the study
    directory, for the paired tests; see the module docstring)."""
    models = data.get("models") or {}
    vlms = [n for n, m in models.items() if m["kind"] == "vlm" and not m.get("finetune")]
    tuned = {m["finetune"]["from"]: n for n, m in models.items() if m.get("finetune")}
    main, out = data["main"], []
    vlm = vlms[0] if vlms else None
    gen = _pick(main, model=vlm, measure="generate") if vlm else None
    clip = _pick(main, measure="zeroshot", dataset=gen["dataset"]) if gen else _pick(main, measure="zeroshot")
    lik = _pick(main, model=vlm, measure="likelihood") if vlm else None
    probe = _pick(main, model=vlm, measure="probe") if vlm else None

    def add(n, title, shown, text, runs, test=None):
        out.append({"n": n, "title": title, "shown": shown, "text": text, "runs": [r for r in runs if r],
                    "test": test})

    if clip and gen:
        d = clip["top1"] - gen["top1"]
        pc = _mcnemar(root, gen["run"], clip["run"])
        sig, why = _says(pc)
        add(1, "CLIP is far better than VLM generation", d >= 0.2 and sig,
            f"CLIP zero-shot {_pct(clip['top1'])} vs {vlm} generation {_pct(gen['top1'])}: {100 * d:+.1f} points"
            f"{why} (shown when >= 20 points and p < {ALPHA})", [clip["run"], gen["run"]], pc)
    else:
        add(1, "CLIP is far better than VLM generation", None, "not measured", [])
    if gen and lik:
        two_g = _pick(data["label_space"], model=vlm, measure="generate", candidates=2)
        two_l = _pick(data["label_space"], model=vlm, measure="likelihood", candidates=2)
        pc = _mcnemar(root, gen["run"], lik["run"])
        ok, why = _says(pc)
        text = f"likelihood {_pct(lik['top1'])} vs generation {_pct(gen['top1'])}{why}"
        tests = {"all": pc}
        if two_g and two_l:
            pc2 = _mcnemar(root, two_g["run"], two_l["run"])
            ok2, why2 = _says(pc2)
            ok, tests["two"] = ok and ok2, pc2
            text += f"; with 2 candidates: likelihood {_pct(two_l['top1'])} vs generation {_pct(two_g['top1'])}{why2}"
        else:
            text += "; the 2-candidate runs were not measured"
        add(2, "probability inference beats generation, also with 2 candidates", ok if two_g and two_l else None,
            text + f" (shown when likelihood is better in both, p < {ALPHA})",
            [lik["run"], gen["run"], two_g and two_g["run"], two_l and two_l["run"]], tests)
    else:
        add(2, "probability inference beats generation, also with 2 candidates", None, "not measured", [])
    if probe and clip:
        d = clip["top1"] - probe["top1"]
        ci = _bootstrap(root, probe["run"], clip["run"])  # CLIP - probe, paired over the test images
        where = ("no paired interval (runs not readable)" if ci is None or ci["high"] is None else
                 f"95% paired bootstrap interval of CLIP - probe [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}] "
                 f"points over {ci['n']} images")
        pc = _mcnemar(root, gen["run"], probe["run"]) if gen else None
        sig, why = _says(pc)
        add(3, "the VLM's hidden states hold the class (probe close to CLIP)", d <= 0.1 and sig,
            f"probe on {vlm} {_pct(probe['top1'])} vs CLIP zero-shot {_pct(clip['top1'])} ({100 * -d:+.1f} points; "
            f"{where}); probe vs generation{why or ': not measured'} (shown when within 10 points of CLIP and "
            f"significantly above generation, p < {ALPHA})", [probe["run"], clip["run"], gen and gen["run"]],
            {"clip_minus_probe": ci, "probe_vs_generation": pc})
    else:
        add(3, "the VLM's hidden states hold the class (probe close to CLIP)", None, "not measured", [])
    freq = next((f for f in data["frequency"] if f["model"] == vlm), None)
    if freq and freq.get("spearman") is not None:
        add(4, "per-class generation accuracy tracks how often the class is named in training", freq["spearman"] >= 0.5,
            f"Spearman {freq['spearman']:.2f} between class-name mentions and per-class accuracy, a rank correlation "
            "over classes (no paired test applies; shown when >= 0.5)", [freq["run"]])
    else:
        add(4, "per-class generation accuracy tracks how often the class is named in training", None, "not measured", [])
    ft = tuned.get(vlm)
    ft_gen = _pick(main, model=ft, measure="generate") if ft else None
    if ft_gen and gen and clip:
        gap = clip["top1"] - gen["top1"]
        closed = (ft_gen["top1"] - gen["top1"]) / gap if gap > 0 else None
        pc = _mcnemar(root, gen["run"], ft_gen["run"])
        sig, why = _says(pc)
        add(5, "fine-tuning on classification data closes most of the gap",
            closed is not None and closed >= 0.5 and sig,
            f"generation {_pct(gen['top1'])} -> {_pct(ft_gen['top1'])} after fine-tuning ({ft}){why}; closes "
            f"{'n/a' if closed is None else f'{100 * closed:.0f}%'} of the gap to CLIP (shown when >= 50% and "
            f"p < {ALPHA})", [gen["run"], ft_gen["run"], clip["run"]], pc)
    else:
        add(5, "fine-tuning on classification data closes most of the gap", None, "not measured", [])
    qa = _pick(data["wikiqa"], model=vlm, condition="image")
    oracle = next((q for q in data["wikiqa"] if q["model"] == vlm and "oracle_class" in q["condition"]), None)
    qa_ft = _pick(data["wikiqa"], model=ft, condition="image") if ft else None
    if qa and qa.get("right_acc") is not None and qa.get("wrong_acc") is not None:
        parts = [f"ImageWikiQA {_pct(qa['accuracy'])}: {_pct(qa['right_acc'])} on images {vlm} classifies correctly "
                 f"(n={qa['right_n']}) vs {_pct(qa['wrong_acc'])} on the others (n={qa['wrong_n']})"]
        from ..metrics.paired import two_group_bootstrap_interval

        ci = two_group_bootstrap_interval(round(qa["right_acc"] * qa["right_n"]), qa["right_n"],
                                          round(qa["wrong_acc"] * qa["wrong_n"]), qa["wrong_n"])
        ok = qa["right_acc"] - qa["wrong_acc"] >= 0.2 and ci["low"] is not None and ci["low"] > 0
        if ci["low"] is not None:
            parts.append(f"95% bootstrap interval of the difference [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}] "
                         "points")
        tests = {"split": ci}
        if oracle:
            parts.append(f"told the class: {_pct(oracle['accuracy'])} (chance {_pct(oracle['chance'])})")
            ok = ok and oracle["accuracy"] >= (oracle["chance"] or 0.25) + 0.25
        if qa_ft:
            pc = _mcnemar(root, qa["run"], qa_ft["run"])
            sig, why = _says(pc)
            parts.append(f"after fine-tuning on classification: {_pct(qa_ft['accuracy'])}{why}")
            ok, tests["finetune"] = ok and qa_ft["accuracy"] > qa["accuracy"] and sig, pc
        add(6, "classification is the foundation of knowledge questions", ok if oracle and qa_ft else None,
            "; ".join(parts) + " (shown when the split differs by >= 20 points with an interval above 0, the oracle "
            f"is >= 25 points above chance and fine-tuning raises QA accuracy, p < {ALPHA})",
            [qa["run"], oracle and oracle["run"], qa_ft and qa_ft["run"]], tests)
    else:
        add(6, "classification is the foundation of knowledge questions", None, "not measured", [])
    return out
