"""Generation scoring: ask the question through the model's chat template, decode greedily,
parse the answer deterministically (``parser.parse_answer``). Unparseable = wrong.

Record fields: ``response`` (decoded new tokens, stripped), ``parsed`` (letter or None),
``parse_rule`` (how it was found or why not), ``prediction`` (option index or None).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import options
from .loader import Question
from .parser import parse_answer
from .prompts import Condition

PARSER_VERSION = 1  # bump when parse_answer's rules change (part of the run's identity)


@dataclass
class GenerateOptions(options.Options):
    """``vlmprobe wikiqa --method generate`` options."""

    cot: bool = options.option(False, "generate: append \"Let's think step by step.\" (512 new tokens)")
    max_new_tokens: int | None = options.option(None, "generate: budget (default 64, 512 with --cot)", type=int,
                                                check=lambda n: n >= 1, requirement="must be at least 1")


class GenerateScorer:
    name = "generate"
    Options = GenerateOptions

    def __init__(self, condition: Condition, max_new_tokens: int | None = None):
        self.condition = condition
        self.max_new_tokens = max_new_tokens or condition.max_new_tokens

    def config(self) -> dict:
        return {"name": self.name, "decoding": "greedy", "max_new_tokens": self.max_new_tokens,
                "parser_version": PARSER_VERSION}

    def setup(self, model, questions) -> None:
        pass

    def num_scores(self, questions) -> None:
        return None  # no score matrix

    def run_batch(self, model, questions: list[Question], images: list | None,
                  rng_for=None) -> tuple[list[dict], None]:
        """Greedy answers for a batch (``images`` all None when the condition withholds them)."""
        images = None if images and all(im is None for im in images) else images
        prompts = [self.condition.question(q) for q in questions]
        responses = model.generate(images, prompts, max_new_tokens=self.max_new_tokens)
        records = []
        for q, response in zip(questions, responses):
            parsed = parse_answer(response, q.options)
            records.append({"response": response, "parsed": parsed.letter, "parse_rule": parsed.rule,
                            "prediction": parsed.index})
        return records, None
