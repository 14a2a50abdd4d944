"""The paper's six findings (Zhang et al. 2024, "Why are Visually-Grounded Language Models Bad
at Image Classification?") as numbers computed from a collected study, each with whether the
study shows it. Thresholds are stated in the text of each finding.

Pairs are formed per base VLM (a model without ``finetune``) and the first CLIP zero-shot run
on the same dataset; a finding whose runs are absent is "not measured".
"""
from __future__ import annotations


def _pick(rows, **match):
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def compute(data: dict) -> list[dict]:
    """-> [{n, title, shown (True/False/None), text, runs: [run ids]}]"""
    models = data.get("models") or {}
    vlms = [n for n, m in models.items() if m["kind"] == "vlm" and not m.get("finetune")]
    tuned = {m["finetune"]["from"]: n for n, m in models.items() if m.get("finetune")}
    main, out = data["main"], []
    vlm = vlms[0] if vlms else None
    gen = _pick(main, model=vlm, measure="generate") if vlm else None
    clip = _pick(main, measure="zeroshot", dataset=gen["dataset"]) if gen else _pick(main, measure="zeroshot")
    lik = _pick(main, model=vlm, measure="likelihood") if vlm else None
    probe = _pick(main, model=vlm, measure="probe") if vlm else None

    def add(n, title, shown, text, runs):
        out.append({"n": n, "title": title, "shown": shown, "text": text, "runs": [r for r in runs if r]})

    if clip and gen:
        d = clip["top1"] - gen["top1"]
        add(1, "CLIP is far better than VLM generation", d >= 0.2,
            f"CLIP zero-shot {_pct(clip['top1'])} vs {vlm} generation {_pct(gen['top1'])}: {100 * d:+.1f} points "
            "(shown when >= 20 points)", [clip["run"], gen["run"]])
    else:
        add(1, "CLIP is far better than VLM generation", None, "not measured", [])
    if gen and lik:
        two_g = _pick(data["label_space"], model=vlm, measure="generate", candidates=2)
        two_l = _pick(data["label_space"], model=vlm, measure="likelihood", candidates=2)
        ok = lik["top1"] > gen["top1"]
        text = f"likelihood {_pct(lik['top1'])} vs generation {_pct(gen['top1'])}"
        if two_g and two_l:
            ok = ok and two_l["top1"] > two_g["top1"]
            text += f"; with 2 candidates: likelihood {_pct(two_l['top1'])} vs generation {_pct(two_g['top1'])}"
        else:
            text += "; the 2-candidate runs were not measured"
        add(2, "probability inference beats generation, also with 2 candidates", ok if two_g and two_l else None,
            text, [lik["run"], gen["run"], two_g and two_g["run"], two_l and two_l["run"]])
    else:
        add(2, "probability inference beats generation, also with 2 candidates", None, "not measured", [])
    if probe and clip:
        d = clip["top1"] - probe["top1"]
        add(3, "the VLM's hidden states hold the class (probe close to CLIP)", d <= 0.1,
            f"probe on {vlm} {_pct(probe['top1'])} vs CLIP zero-shot {_pct(clip['top1'])} ({100 * -d:+.1f} points; "
            "shown when within 10 points or above)", [probe["run"], clip["run"]])
    else:
        add(3, "the VLM's hidden states hold the class (probe close to CLIP)", None, "not measured", [])
    freq = next((f for f in data["frequency"] if f["model"] == vlm), None)
    if freq and freq.get("spearman") is not None:
        add(4, "per-class generation accuracy tracks how often the class is named in training", freq["spearman"] >= 0.5,
            f"Spearman {freq['spearman']:.2f} between class-name mentions and per-class accuracy (shown when >= 0.5)",
            [freq["run"]])
    else:
        add(4, "per-class generation accuracy tracks how often the class is named in training", None, "not measured", [])
    ft = tuned.get(vlm)
    ft_gen = _pick(main, model=ft, measure="generate") if ft else None
    if ft_gen and gen and clip:
        gap = clip["top1"] - gen["top1"]
        closed = (ft_gen["top1"] - gen["top1"]) / gap if gap > 0 else None
        add(5, "fine-tuning on classification data closes most of the gap", closed is not None and closed >= 0.5,
            f"generation {_pct(gen['top1'])} -> {_pct(ft_gen['top1'])} after fine-tuning ({ft}); closes "
            f"{'n/a' if closed is None else f'{100 * closed:.0f}%'} of the gap to CLIP (shown when >= 50%)",
            [gen["run"], ft_gen["run"], clip["run"]])
    else:
        add(5, "fine-tuning on classification data closes most of the gap", None, "not measured", [])
    qa = _pick(data["wikiqa"], model=vlm, condition="image")
    oracle = next((q for q in data["wikiqa"] if q["model"] == vlm and "oracle_class" in q["condition"]), None)
    qa_ft = _pick(data["wikiqa"], model=ft, condition="image") if ft else None
    if qa and qa.get("right_acc") is not None and qa.get("wrong_acc") is not None:
        parts = [f"ImageWikiQA {_pct(qa['accuracy'])}: {_pct(qa['right_acc'])} on images {vlm} classifies correctly "
                 f"(n={qa['right_n']}) vs {_pct(qa['wrong_acc'])} on the others (n={qa['wrong_n']})"]
        ok = qa["right_acc"] - qa["wrong_acc"] >= 0.2
        if oracle:
            parts.append(f"told the class: {_pct(oracle['accuracy'])} (chance {_pct(oracle['chance'])})")
            ok = ok and oracle["accuracy"] >= (oracle["chance"] or 0.25) + 0.25
        if qa_ft:
            parts.append(f"after fine-tuning on classification: {_pct(qa_ft['accuracy'])}")
            ok = ok and qa_ft["accuracy"] > qa["accuracy"]
        add(6, "classification is the foundation of knowledge questions", ok if oracle and qa_ft else None,
            "; ".join(parts) + " (shown when the split differs by >= 20 points, the oracle is >= 25 points above "
            "chance and fine-tuning raises QA accuracy)",
            [qa["run"], oracle and oracle["run"], qa_ft and qa_ft["run"]])
    else:
        add(6, "classification is the foundation of knowledge questions", None, "not measured", [])
    return out
