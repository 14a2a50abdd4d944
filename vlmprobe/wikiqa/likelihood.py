"""Likelihood scoring: no generation, no parsing. For each question the rendered prompt plus
``answer_prefix`` (``P``) is scored against the four options through the model's public
``logprobs`` (the exact shared-prefix engine, ``vlmprobe.models.likelihood``; the continuation
follows ``P`` after a space; its token definition is the engine's):

- ``letter``:    ``log p(X | P)`` for X in A, B, C, D                     -> [N, 4]
- ``text_sum``:  ``sum_t log p(o_t | P, o_<t)`` over option text o's tokens -> [N, 4]
- ``text_mean``: the same divided by the number of tokens of o             -> [N, 4]

(letters and texts are the 8 continuations of one engine call, ``reduction="tokens"``; the
sums and means are taken from its per-token log-probs)

All three are recorded per question; ``select`` picks the one that makes the prediction
(argmax, ties to the first option) and goes to ``scores.npy``. Every prediction exists, so the
unparseable rate is 0 by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import options
from ..errors import VlmprobeError
from ..metrics.nonfinite import prediction_fields, predict
from .loader import LETTERS, Question
from .prompts import ANSWER_PREFIX, Condition

TARGETS = ("letter", "text_sum", "text_mean")


@dataclass
class LikelihoodOptions(options.Options):
    """``vlmprobe wikiqa --method likelihood`` options."""

    answer_prefix: str = options.option(ANSWER_PREFIX, "likelihood: text after the chat template's generation "
                                        "prompt that the options continue")
    select: str = options.option("letter", "likelihood: which score predicts (all three are recorded and reported)",
                                 choices=TARGETS)
    scoring: str = options.option("fast", "likelihood engine: shared-prefix (fast) or one full forward per option "
                                  "(naive)", choices=("fast", "naive"))


class LikelihoodScorer:
    name = "likelihood"
    Options = LikelihoodOptions

    def __init__(self, condition: Condition, answer_prefix: str = ANSWER_PREFIX, select: str = "letter",
                 scoring: str = "fast"):
        LikelihoodOptions(answer_prefix=answer_prefix, select=select, scoring=scoring)  # validates
        if condition.cot:
            raise VlmprobeError("--cot applies to --method generate only (likelihood scoring decodes nothing)")
        self.condition = condition
        self.answer_prefix = answer_prefix
        self.select = select
        self.scoring = scoring

    def config(self) -> dict:
        return {"name": self.name, "answer_prefix": self.answer_prefix, "select": self.select,
                "targets": list(TARGETS), "scoring": self.scoring}

    def setup(self, model, questions) -> None:
        pass

    def num_scores(self, questions) -> int:
        return 4

    def option_scores(self, model, questions: list[Question], images: list | None) -> dict[str, np.ndarray]:
        """{target: float32 [B, 4]} for the three targets (module docstring)."""
        prefixes = [model.render(self.condition.question(q), image=images is not None,
                                 answer_prefix=self.answer_prefix) for q in questions]
        conts = [list(LETTERS) + list(q.options) for q in questions]  # one prefix pass for all 8
        tokens = model.logprobs(images, prefixes, conts, reduction="tokens", scoring=self.scoring,
                                batch_size=max(1, len(questions)))  # [B, 8, L] scored token log-probs, NaN-padded
        sums = torch.nansum(tokens, -1)
        counts = (~torch.isnan(tokens)).sum(-1).clamp(min=1)
        out = {"letter": sums[:, :4], "text_sum": sums[:, 4:], "text_mean": sums[:, 4:] / counts[:, 4:]}
        return {k: v.float().numpy().astype(np.float32) for k, v in out.items()}

    def run_batch(self, model, questions: list[Question], images: list | None,
                  rng_for=None) -> tuple[list[dict], np.ndarray]:
        """(images: all None when the condition withholds them) -> records, scores [B, 4]."""
        images = None if images and all(im is None for im in images) else images
        scores = self.option_scores(model, questions, images)
        records = []
        predicted = {t: predict(scores[t]) for t in TARGETS}  # -1 where a score is NaN/inf
        for b in range(len(questions)):
            preds = {t: int(predicted[t][0][b]) for t in TARGETS}
            p = preds[self.select]
            records.append({**prediction_fields(p, predicted[self.select][1][b]),
                            "parsed": LETTERS[p] if p >= 0 else None,
                            "predictions": {t: LETTERS[p] if p >= 0 else None for t, p in preds.items()},
                            **{f"logprob_{t}": [round(float(x), 6) for x in scores[t][b]] for t in TARGETS}})
        return records, scores[self.select]
