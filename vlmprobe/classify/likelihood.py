"""Probability inference: score every class name by its log-probability as the VLM's answer.

Per image, with the question rendered through the model's chat template and an optional answer
prefix (the paper's ``"The photo features a"``)::

    s(x, c) = reduce_t log p(tokens of c | image x, question, answer prefix)    (sum | mean | first)
    s_char(x, c) = s_sum(x, c) / len(c)                                         (characters of c)
    s_pmi(x, c)  = s_sum(x, c) - log p(tokens of c | question, answer prefix)   (no image; once per c)

prediction ``argmax_c s(x, c)`` (ties, e.g. duplicate class names, go to the lowest class index).
The engine is the model's public ``score`` (``vlmprobe.models.likelihood``; ``--scoring fast``:
shared prefix + token trie, exact; ``--scoring naive``: one full forward per class, the
reference). ``--article a/an`` is handled here (``apply_article``), before the model sees the names.

Label space: with ``--num-candidates N`` each image is scored only on the true class plus N-1
random others (``candidates.sample_candidates``, seeded per sample), or with ``--candidates
hard:CLIP_RUN`` the N-1 classes that run scores highest on the image (``candidates.CandidateRule``); the prediction is the
argmax over those. Classes not offered score ``-inf`` in scores.npy (probability 0 in every
metric); each record also holds ``candidates`` (class indices) and ``candidate_scores`` (their
scores, same order). Records always hold ``prediction`` and ``logprob`` (the predicted class's
score); with a reduction other than ``sum`` they also hold ``sum_prediction`` and ``sum_logprob``
(the same images under ``sum``, from the same forwards), so the normalised and the plain
log-likelihood predictions are reported side by side.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import options
from ..errors import VlmprobeError
from ..metrics.nonfinite import nonfinite_rows, prediction_fields, predict
from ..models.base import require_kind
from ..models.likelihood import SCORINGS
from ..models.tokentrie import NORMALIZATIONS
from .candidates import (CandidateRule, LabelSpace, candidates_option, check_num_candidates, label_space_option,
                         parse_num_candidates)
from .prompts import PROMPTS, get_prompt

PAPER_ANSWER_PREFIX = "The photo features a"  # the paper's probability-inference answer start
ARTICLES = ("none", "a/an")
_VOWEL_SOUND = tuple("aeiouAEIOU")


def apply_article(answer_prefix: str | None, candidates) -> tuple[str | None, list[str]]:
    """``a/an`` handling: each candidate gets its own article ("an apple", "a cat"; rule: first
    letter a vowel), and a trailing ``a``/``an`` word is removed from the answer prefix ("The photo
    features a" -> "The photo features"). The article is part of the scored continuation."""
    if answer_prefix:
        words = answer_prefix.rstrip().split(" ")
        if words and words[-1].lower() in ("a", "an"):
            answer_prefix = " ".join(words[:-1]) or None
    return answer_prefix, [("an " if c.startswith(_VOWEL_SOUND) else "a ") + c for c in candidates]
IMAGES_PER_FORWARD = 8  # images whose prefixes share one forward (bounds the prefix KV memory)


@dataclass
class LikelihoodOptions(options.Options):
    """``vlmprobe eval --method likelihood`` options."""

    prompt: str = options.option("default", f"question asked: a built-in name ({', '.join(PROMPTS)}) or a UTF-8 "
                                 "text file", metavar="NAME|FILE")
    num_candidates: int | str | None = options.option(
        None, "label space: true class + N-1 random other classes per image (seeded), or all", metavar="N|all")
    reduction: str = options.option("sum", "likelihood: combine a class name's token log-probs by sum "
                                    "(log-likelihood), mean per token, the first token only, sum per character "
                                    "(char) or pmi (sum minus the name's log-prob without the image)",
                                    choices=NORMALIZATIONS)
    scoring: str = options.option("fast", "likelihood: fast (image+prompt computed once per image, all class names "
                                  "in a token trie; exact) or naive (one full forward per class; the reference)",
                                  choices=SCORINGS)
    answer_prefix: str | None = options.option(
        None, f"likelihood: text that opens the answer before the class name; 'paper' means "
              f"'{PAPER_ANSWER_PREFIX}'; none by default", metavar="TEXT")
    include_eos: bool = options.option(False, "likelihood: also score the end-of-sequence token after the class "
                                       "name", flag="--score-eos")
    article: str = options.option("none", "likelihood: a/an puts 'a' or 'an' before each class name (scored with "
                                  "it) and drops a trailing 'a'/'an' from the answer prefix", choices=ARTICLES)
    chunk_size: int = options.option(512, "likelihood (fast): trie nodes per image per forward; lower it to save "
                                     "memory", check=lambda n: n >= 1, requirement="must be at least 1")
    label_space: str | None = label_space_option()
    candidates: str = candidates_option()


class Method:
    name = "likelihood"
    Options = LikelihoodOptions

    def __init__(self, prompt: str = "default", answer_prefix: str | None = None, reduction: str = "sum",
                 scoring: str = "fast", include_eos: bool = False, article: str | None = None,
                 chunk_size: int = 512, num_candidates: int | str | None = None, label_space: str | None = None,
                 candidates: str = "random"):
        self.options = LikelihoodOptions(prompt=prompt, num_candidates=num_candidates, reduction=reduction,
                                         scoring=scoring, answer_prefix=answer_prefix, include_eos=bool(include_eos),
                                         article=article or "none", chunk_size=chunk_size, label_space=label_space,
                                         candidates=candidates or "random")
        self.rule = CandidateRule(candidates)
        self.template = get_prompt(prompt)
        if self.template.cot or self.template.has_classes_slot:
            raise VlmprobeError(f"--prompt {prompt!r}: likelihood scoring asks an open question without "
                                "chain of thought or a class list; choose another prompt")
        self.question = self.template.format(None)
        if answer_prefix == "paper":
            answer_prefix = PAPER_ANSWER_PREFIX
        self.answer_prefix = answer_prefix or None
        self.reduction, self.scoring, self.include_eos = reduction, scoring, bool(include_eos)
        self.article = None if article in (None, "none") else article
        self.chunk_size = int(chunk_size)
        self.num_candidates = parse_num_candidates(num_candidates)
        self.space = LabelSpace.parse(label_space)
        if self.space.restricted and self.num_candidates is not None:
            raise VlmprobeError("--label-space and --num-candidates both set the label space; give one")
        if self.rule.kind == "hard" and self.num_candidates is None:
            raise VlmprobeError("--candidates hard:CLIP_RUN picks the distractors of --num-candidates N")
        self.classnames: list[str] = []

    def config(self) -> dict:
        """What determines the scores (chunk size only changes memory use, so it is left out)."""
        return {"prompt": self.template.to_config(), "question": self.question, "answer_prefix": self.answer_prefix,
                "reduction": self.reduction, "scoring": self.scoring, "include_eos": self.include_eos,
                "article": self.article or "none", "num_candidates": self.num_candidates or "all",
                **({"label_space": self.space.config()} if self.space.restricted else {}),
                **({"candidates": self.rule.config()} if self.rule.kind != "random" else {})}

    def setup(self, model, dataset) -> None:
        require_kind(model, "vlm", "--method likelihood",
                     "use --method zeroshot for CLIP, classifier for a supervised model", api=True)
        model.check_scoring(self.scoring)  # e.g. fast on Qwen2-VL: one line naming --scoring naive
        self.classnames = list(dataset.classnames)
        check_num_candidates(self.num_candidates, len(self.classnames))
        self.space.setup(dataset, self.num_candidates)
        self.rule.setup(dataset, self.num_candidates)

    def _sampled(self, num_classes: int) -> bool:
        return self.num_candidates is not None and self.num_candidates < num_classes

    def num_scores(self, dataset) -> int:
        """K (with a sampled label space, classes not offered to an image score -inf)."""
        return len(dataset.classnames)

    def run_batch(self, model, samples, images, rng_for):
        """PIL images -> records, scores [B, K] float32 (-inf for classes not offered)."""
        K = len(self.classnames)
        offered = None
        if self.rule.kind == "fixed":  # vlmprobe audit: each image's classes in a permuted order
            offered = [self.rule.choose(s, K, None, None, False) for s in samples]
            candidates = [[self.classnames[c] for c in cands] for cands in offered]
        elif self.space.restricted:
            offered = [self.space.candidates(s) for s in samples]
            candidates = [[self.classnames[c] for c in cands] for cands in offered]
        elif self._sampled(K):
            offered = [self.rule.choose(s, K, self.num_candidates, rng_for(s), shuffle=False) for s in samples]
            candidates = [[self.classnames[c] for c in cands] for cands in offered]
        else:
            candidates = self.classnames
        answer_prefix = self.answer_prefix
        if self.article:  # the article belongs to each class name (scored with it)
            answer_prefix = apply_article(answer_prefix, [])[0]
            candidates = ([apply_article(None, c)[1] for c in candidates] if offered is not None
                          else apply_article(None, candidates)[1])
        wanted = "sum" if self.reduction == "sum" else (self.reduction, "sum")
        both = model.score(images, candidates, prompt=self.question, answer_prefix=answer_prefix,
                           reduction=wanted, scoring=self.scoring, include_eos=self.include_eos,
                           batch_size=IMAGES_PER_FORWARD, chunk_size=self.chunk_size)
        both = both if isinstance(both, dict) else {"sum": both}
        sub = both[self.reduction].numpy().astype(np.float32)
        records, scores = self._records(samples, sub, offered)
        if self.reduction != "sum":  # the plain log-likelihood's prediction, reported beside it
            for rec, plain in zip(records, self._records(samples, both["sum"].numpy().astype(np.float32),
                                                         offered)[0]):
                rec["sum_prediction"], rec["sum_logprob"] = plain["prediction"], plain["logprob"]
        return records, scores

    def _records(self, samples, sub: np.ndarray, offered):
        """Scores of the offered candidates [B, K'] -> records, scores [B, K] (-inf: not offered)."""
        K = len(self.classnames)
        if offered is None:
            scores = sub
        else:
            scores = np.full((len(samples), K), -np.inf, dtype=np.float32)  # argmax over the offered
            for row, cands in enumerate(offered):
                scores[row, cands] = sub[row, :len(cands)]
        # a NaN/inf log-prob (fp16/bf16 overflow) among the offered classes: no prediction, flagged
        bad = nonfinite_rows(sub) if offered is None else np.array(
            [nonfinite_rows(sub[row:row + 1, :len(c)])[0] for row, c in enumerate(offered)], dtype=bool)
        preds, _ = predict(np.where(bad[:, None], np.nan, scores), allow_neg_inf=True)
        records = []
        for row, p in enumerate(preds):
            rec = prediction_fields(p, bad[row])
            rec["logprob"] = None if bad[row] else float(scores[row, p])
            if offered is not None:
                rec["candidates"] = offered[row]
                rec["candidate_scores"] = [float(x) for x in sub[row, :len(offered[row])]]
            records.append(rec)
        return records, scores


def add_arguments(parser) -> None:
    """``vlmprobe eval --method likelihood`` options (``parser``: an argparse parser or group)."""
    options.add_arguments(parser, LikelihoodOptions)


def from_args(args) -> Method:
    if getattr(args, "closed_world", False):
        raise VlmprobeError("--closed-world applies to --method generate; likelihood scores class names "
                            "after an open question (use --num-candidates to restrict the label space)")
    return Method(**options.from_args(LikelihoodOptions, args).as_dict())
