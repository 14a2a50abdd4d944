"""results.json of a wikiqa run, computed from its records only (recomputable at any time).

- ``accuracy``: correct / scored questions (``metrics.report.summarize_correct``, the same
  definition ``vlmprobe metrics`` uses) (questions whose image could not be found or read
  are *skipped*: counted in ``num_skipped``, listed in ``skipped``, excluded here);
  ``accuracy_all`` = correct / all questions (skipped counted wrong);
- ``unparseable_rate``: scored questions with no parsed answer (all counted wrong);
- ``chance`` = 0.25 (four options);
- ``per_class_accuracy``: {class name as in the file: {n, accuracy}} (questions are grouped by
  name, so ImageNet's two "sunglasses"/"missile" classes would merge; the released file uses
  "sunglasses" once and "missile" never);
- ``prediction_counts`` / ``label_counts``: letters predicted vs. right (position bias);
- likelihood runs: ``accuracy_by_target`` for letter / text_sum / text_mean.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from ..metrics.report import summarize_correct
from .loader import LETTERS

CHANCE = 0.25


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def summarize(records: list[dict]) -> dict:
    scored = [r for r in records if not r.get("skipped")]
    skipped = [r for r in records if r.get("skipped")]
    n, correct = len(scored), sum(bool(r["correct"]) for r in scored)
    unparseable = sum(r.get("prediction") is None for r in scored)
    accuracy = summarize_correct([r["correct"] for r in scored], len(skipped), no_prediction=unparseable)["accuracy"]
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in scored:
        per_class[r["classname"]][0] += 1
        per_class[r["classname"]][1] += bool(r["correct"])
    out = {
        "num_questions": len(records), "num_scored": n, "num_skipped": len(skipped),
        "accuracy": accuracy, "accuracy_all": _rate(correct, len(records)),
        "chance": CHANCE,
        "unparseable": unparseable, "unparseable_rate": _rate(unparseable, n),
        "prediction_counts": {x: sum(r.get("parsed") == x for r in scored) for x in LETTERS},
        "label_counts": {x: sum(r["label_letter"] == x for r in scored) for x in LETTERS},
        "num_classes": len(per_class),
        "per_class_accuracy": {c: {"n": k, "accuracy": _rate(m, k)} for c, (k, m) in sorted(per_class.items())},
        "skipped": [{"id": r["id"], "image": r["image"], "error": r.get("error")} for r in skipped],
    }
    rules = Counter(r["parse_rule"] for r in scored if "parse_rule" in r)
    if rules:
        out["parse_rules"] = dict(sorted(rules.items()))
    if scored and "predictions" in scored[0]:
        out["accuracy_by_target"] = {t: _rate(sum(r["predictions"][t] == r["label_letter"] for r in scored), n)
                                     for t in scored[0]["predictions"]}
    return out
