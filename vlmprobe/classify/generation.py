"""Direct generation: ask a VLM what is in the image, then match its answer to class names.

Per image: choose the label space (open world: all K classes, not shown to the model; closed
world: the candidates from ``candidates.sample_candidates``, or the CLIP-mined distractors of
``--candidates hard:CLIP_RUN`` (``candidates.CandidateRule``), listed in the question), build the
question (``prompts.PromptTemplate.format``), render it through the model's chat template and
decode greedily (``VisionLanguageModel.generate``: left padding + attention mask, so a batch
gives the answers batch size 1 gives), then judge the answer (``matching.match_response``).

Record fields (one per sample, besides the runner's): ``prediction`` (class index or None),
``response`` (decoded new tokens, stripped), ``matches`` (class indices mentioned, paper's
criterion), ``matched`` (at least one candidate mentioned), ``ambiguous`` (several effective
matches), ``candidates`` (class indices in displayed order; closed world only), ``prompt``
(the question text before the chat template).

``summarize(records)`` adds to results.json: the unmatched and ambiguous rates, and the
paper's accuracy (``accuracy_any_match``: the true class is among the mentioned ones, even if
other classes are named as well), next to the single-prediction accuracy the metrics report.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import options
from ..errors import VlmprobeError
from ..models.base import require_kind
from .candidates import (CandidateRule, LabelSpace, candidates_option, check_num_candidates, label_space_option,
                         parse_num_candidates)
from .matching import RULES, match_response
from .prompts import OPEN_WORLD_QUESTION, PROMPTS, get_prompt


@dataclass
class GenerateOptions(options.Options):
    """``vlmprobe eval --method generate`` options."""

    prompt: str = options.option(
        "default", f"question asked: a built-in name ({', '.join(PROMPTS)}; default is the paper's "
                   f"'{OPEN_WORLD_QUESTION}') or a UTF-8 text file ({{classes}} marks where the closed-world "
                   "candidate list goes)", metavar="NAME|FILE")
    closed_world: bool = options.option(
        False, "list the candidates in the question (' Choose one from \"c1, c2, ...\"')", negative="--open-world",
        negative_help="ask without listing classes; match the answer against all classes")
    num_candidates: int | str | None = options.option(
        None, "closed world: true class + N-1 random other classes per image (seeded), or all", metavar="N|all")
    shuffle: bool = options.option(True, "shuffle the candidate order per image (seeded)", negative="--no-shuffle",
                                   negative_help="list candidates in dataset class order")
    cot: bool = options.option(False, "append \"Let's think step by step.\" (default budget 512 new tokens "
                                      "instead of 64)")
    max_new_tokens: int | None = options.option(None, "generation budget (default 64, or 512 with --cot)", type=int,
                                                check=lambda n: n >= 1, requirement="must be at least 1")
    match: str = options.option("substring", "answer matching: substring (the paper's case-insensitive 'label in "
                                "response'), word (whole-word mention), first (earliest mentioned candidate)",
                                choices=RULES)
    label_space: str | None = label_space_option()
    candidates: str = candidates_option()


class Method:
    name = "generate"
    Options = GenerateOptions

    def __init__(self, prompt: str = "default", closed_world: bool = False, num_candidates: int | str | None = None,
                 shuffle: bool = True, cot: bool = False, max_new_tokens: int | None = None,
                 match: str = "substring", label_space: str | None = None, candidates: str = "random"):
        self.options = GenerateOptions(prompt=prompt, closed_world=bool(closed_world), num_candidates=num_candidates,
                                       shuffle=bool(shuffle), cot=bool(cot), max_new_tokens=max_new_tokens,
                                       match=match, label_space=label_space, candidates=candidates or "random")
        self.rule = CandidateRule(candidates)
        self.space = LabelSpace.parse(label_space)
        if self.space.restricted and (num_candidates is not None or not closed_world):
            raise VlmprobeError("--label-space lists each image's class and its confusers in the question: it needs "
                                "--closed-world and no --num-candidates")
        self.template = get_prompt(prompt, cot=cot)
        self.closed_world = bool(closed_world)
        self.num_candidates = parse_num_candidates(num_candidates)
        if self.num_candidates is not None and not self.closed_world:
            raise VlmprobeError("--num-candidates sets the label space listed in the question; it needs "
                                "--closed-world (open-world answers are matched against all classes)")
        if self.template.has_classes_slot and not self.closed_world:
            raise VlmprobeError(f"prompt {self.template.name!r} ({self.template.source}) has a {{classes}} "
                                "slot; use it with --closed-world")
        if self.rule.kind == "hard" and (self.num_candidates is None or self.space.restricted):
            raise VlmprobeError("--candidates hard:CLIP_RUN picks the distractors of --closed-world --num-candidates N")
        self.shuffle = bool(shuffle)
        self.max_new_tokens = int(max_new_tokens) if max_new_tokens is not None else self.template.max_new_tokens
        self.match = match
        self.classnames: list[str] = []

    def config(self) -> dict:
        cfg = {"prompt": self.template.to_config(), "closed_world": self.closed_world,
               "max_new_tokens": self.max_new_tokens, "match": self.match, "greedy": True}
        if self.closed_world:  # label-space options only matter when classes are listed
            cfg.update(num_candidates=self.num_candidates or "all", shuffle=self.shuffle)
            if self.rule.kind != "random":  # absent for random: earlier runs' configs (and their ids) stay the same
                cfg["candidates"] = self.rule.config()
            if self.space.restricted:
                cfg["label_space"] = self.space.config()
        elif self.space.subset is not None:  # answers matched against the dataset's class subset
            cfg["label_space"] = self.space.config()
        return cfg

    def setup(self, model, dataset) -> None:
        require_kind(model, "vlm", "--method generate",
                     "use --method zeroshot for CLIP, classifier for a supervised model", api=True)
        self.classnames = list(dataset.classnames)
        check_num_candidates(self.num_candidates, len(self.classnames))
        self.space.setup(dataset, self.num_candidates)
        self.rule.setup(dataset, self.num_candidates)

    def num_scores(self, dataset) -> None:
        return None

    def questions(self, samples, rng_for) -> tuple[list[str], list[list[int] | None]]:
        """Per sample: the question and its candidate class indices (None in open world)."""
        questions, offered = [], []
        for sample in samples:
            cands = None
            if self.rule.kind == "fixed":  # vlmprobe audit: the run's own candidates in a permuted order
                cands = self.rule.choose(sample, len(self.classnames), None, None, False)
                questions.append(self.template.format([self.classnames[c] for c in cands]))
                offered.append(cands)
                continue
            if self.space.subset is not None and not self.closed_world:
                # a dataset's class subset (ImageNet-R/-A): the open question stays open; the answer
                # is matched against the subset's names only
                questions.append(self.template.format(None))
                offered.append(list(self.space.subset))
                continue
            if self.space.restricted:
                cands = self.space.candidates(sample)
                cands = [int(c) for c in rng_for(sample).permutation(cands)] if self.shuffle else cands
            elif self.closed_world:
                cands = self.rule.choose(sample, len(self.classnames), self.num_candidates, rng_for(sample),
                                         shuffle=self.shuffle)
            names = [self.classnames[c] for c in cands] if cands is not None else None
            questions.append(self.template.format(names))
            offered.append(cands)
        return questions, offered

    def judge(self, response: str, cands: list[int] | None) -> dict:
        """Match one answer against the label space; indices mapped back to class indices."""
        space = cands if cands is not None else list(range(len(self.classnames)))
        result = match_response(response, [self.classnames[c] for c in space], self.match)
        return {"prediction": space[result.prediction] if result.prediction is not None else None,
                "matches": [space[i] for i in result.matches], "matched": bool(result.matches),
                "ambiguous": result.ambiguous}

    def run_batch(self, model, samples, images, rng_for):
        """PIL images -> records (no score matrix)."""
        questions, offered = self.questions(samples, rng_for)
        responses = model.generate(images, questions, max_new_tokens=self.max_new_tokens)
        records = []
        subset_open = self.space.subset is not None and not self.closed_world
        for question, cands, response in zip(questions, offered, responses):
            rec = {**self.judge(response, cands), "response": response, "prompt": question}
            if subset_open:  # the same answer matched against every class: the 1000-way prediction
                rec["prediction_all"] = self.judge(response, None)["prediction"]
            elif cands is not None:
                rec["candidates"] = cands
            records.append(rec)
        return records, None

    def summarize(self, records: list[dict]) -> dict:
        """results.json's ``method_summary`` (see ``summarize_records``)."""
        return {**summarize_records(records), "match_rule": self.match}


def summarize_records(records: list[dict]) -> dict:
    """Answer-level rates over answered records (those with a ``response``; skipped images are
    counted by the runner): ``unmatched_rate`` (no candidate mentioned), ``ambiguous_rate``
    (several effective matches), ``no_prediction_rate`` (either, unless ``first`` resolved it),
    ``accuracy_any_match`` (the paper's criterion: true class among the mentioned ones)."""
    done = [r for r in records if "response" in r]
    n = len(done)

    def rate(pred) -> float | None:
        return sum(1 for r in done if pred(r)) / n if n else None

    return {"answered": n,
            "unmatched_rate": rate(lambda r: not r["matched"]),
            "ambiguous_rate": rate(lambda r: r["ambiguous"]),
            "no_prediction_rate": rate(lambda r: r["prediction"] is None),
            "accuracy_any_match": rate(lambda r: r["label"] in r["matches"]),
            "mean_response_chars": sum(len(r["response"]) for r in done) / n if n else None}


def add_arguments(parser) -> None:
    """``vlmprobe eval --method generate`` options (``parser``: an argparse parser or group)."""
    options.add_arguments(parser, GenerateOptions)


def from_args(args) -> Method:
    return Method(**options.from_args(GenerateOptions, args).as_dict())
