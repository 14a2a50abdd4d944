"""Probability inference: score every class name by its log-probability as the VLM's answer.

Per image, with the question rendered through the model's chat template and an optional answer
prefix (the paper's ``"The photo features a"``)::

    s(x, c) = reduce_t log p(tokens of c | image x, question, answer prefix)    (sum | mean | first)

prediction ``argmax_c s(x, c)`` (ties, e.g. duplicate class names, go to the lowest class index).
The engine is ``vlmprobe.models.likelihood`` (``--scoring fast``: shared prefix + token trie,
exact; ``--scoring naive``: one full forward per class, the reference).

Label space: with ``--num-candidates N`` each image is scored only on the true class plus N-1
random others (``candidates.sample_candidates``, seeded per sample); the prediction is the
argmax over those. Classes not offered score ``-inf`` in scores.npy (probability 0 in every
metric); each record also holds ``candidates`` (class indices) and ``candidate_scores`` (their
scores, same order). Records always hold ``prediction`` and ``logprob`` (the predicted class's
score).
"""
from __future__ import annotations

import argparse

import numpy as np

from ..errors import VlmprobeError
from ..models.base import require_kind
from ..models.likelihood import REDUCTIONS, SCORINGS
from .candidates import (LabelSpace, add_label_space_argument, check_num_candidates, parse_num_candidates,
                         sample_candidates)
from .prompts import PROMPTS, get_prompt

PAPER_ANSWER_PREFIX = "The photo features a"  # the paper's probability-inference answer start
ARTICLES = ("none", "a/an")
IMAGES_PER_FORWARD = 8  # images whose prefixes share one forward (bounds the prefix KV memory)


class Method:
    name = "likelihood"

    def __init__(self, prompt: str = "default", answer_prefix: str | None = None, reduction: str = "sum",
                 scoring: str = "fast", include_eos: bool = False, article: str | None = None,
                 chunk_size: int = 512, num_candidates: int | str | None = None, label_space: str | None = None):
        self.template = get_prompt(prompt)
        if self.template.cot or self.template.has_classes_slot:
            raise VlmprobeError(f"--prompt {prompt!r}: likelihood scoring asks an open question without "
                                "chain of thought or a class list; choose another prompt")
        self.question = self.template.format(None)
        if answer_prefix == "paper":
            answer_prefix = PAPER_ANSWER_PREFIX
        self.answer_prefix = answer_prefix or None
        if reduction not in REDUCTIONS[:3]:
            raise VlmprobeError(f"--reduction {reduction!r}: choose from {', '.join(REDUCTIONS[:3])}")
        if scoring not in SCORINGS:
            raise VlmprobeError(f"--scoring {scoring!r}: choose from {', '.join(SCORINGS)}")
        if article not in (None, *ARTICLES):
            raise VlmprobeError(f"--article {article!r}: choose from {', '.join(ARTICLES)}")
        if chunk_size < 1:
            raise VlmprobeError(f"--chunk-size {chunk_size}: must be at least 1")
        self.reduction, self.scoring, self.include_eos = reduction, scoring, bool(include_eos)
        self.article = None if article in (None, "none") else article
        self.chunk_size = int(chunk_size)
        self.num_candidates = parse_num_candidates(num_candidates)
        self.space = LabelSpace.parse(label_space)
        if self.space.restricted and self.num_candidates is not None:
            raise VlmprobeError("--label-space and --num-candidates both set the label space; give one")
        self.classnames: list[str] = []

    def config(self) -> dict:
        """What determines the scores (chunk size only changes memory use, so it is left out)."""
        return {"prompt": self.template.to_config(), "question": self.question, "answer_prefix": self.answer_prefix,
                "reduction": self.reduction, "scoring": self.scoring, "include_eos": self.include_eos,
                "article": self.article or "none", "num_candidates": self.num_candidates or "all",
                **({"label_space": self.space.config()} if self.space.restricted else {})}

    def setup(self, model, dataset) -> None:
        require_kind(model, "vlm", "--method likelihood",
                     "use --method zeroshot for CLIP, classifier for a supervised model")
        self.classnames = list(dataset.classnames)
        check_num_candidates(self.num_candidates, len(self.classnames))
        self.space.setup(dataset)

    def _sampled(self, num_classes: int) -> bool:
        return self.num_candidates is not None and self.num_candidates < num_classes

    def num_scores(self, dataset) -> int:
        """K (with a sampled label space, classes not offered to an image score -inf)."""
        return len(dataset.classnames)

    def run_batch(self, model, samples, images, rng_for):
        """PIL images -> records, scores [B, K] float32 (-inf for classes not offered)."""
        K = len(self.classnames)
        offered = None
        if self.space.restricted:
            offered = [self.space.candidates(s) for s in samples]
            candidates = [[self.classnames[c] for c in cands] for cands in offered]
        elif self._sampled(K):
            offered = [sample_candidates(s.label, K, self.num_candidates, rng_for(s), shuffle=False)
                       for s in samples]
            candidates = [[self.classnames[c] for c in cands] for cands in offered]
        else:
            candidates = self.classnames
        sub = model.score(images, candidates, prompt=self.question, answer_prefix=self.answer_prefix,
                          reduction=self.reduction, scoring=self.scoring, include_eos=self.include_eos,
                          article=self.article, batch_size=IMAGES_PER_FORWARD,
                          chunk_size=self.chunk_size).numpy().astype(np.float32)
        if offered is None:
            scores = sub
        else:
            scores = np.full((len(samples), K), -np.inf, dtype=np.float32)  # argmax over the offered
            for row, cands in enumerate(offered):
                scores[row, cands] = sub[row, :len(cands)]
        preds = scores.argmax(1)
        records = []
        for row, p in enumerate(preds):
            rec = {"prediction": int(p), "logprob": float(scores[row, p])}
            if offered is not None:
                rec["candidates"] = offered[row]
                rec["candidate_scores"] = [float(x) for x in sub[row, :len(offered[row])]]
            records.append(rec)
        return records, scores


def _add_shared(parser, *flags, **kwargs) -> None:
    """Add a flag unless another method's group already defined it (``--prompt`` and
    ``--num-candidates`` are shared with ``--method generate``; one flag, same meaning)."""
    try:
        parser.add_argument(*flags, **kwargs)
    except argparse.ArgumentError:
        pass


def add_arguments(parser) -> None:
    """``vlmprobe eval --method likelihood`` options (``parser``: an argparse parser or group)."""
    _add_shared(parser, "--prompt", default="default", metavar="NAME|FILE",
                help=f"question asked: a built-in name ({', '.join(PROMPTS)}) or a UTF-8 text file")
    _add_shared(parser, "--num-candidates", default=None, metavar="N|all",
                help="label space: true class + N-1 random other classes per image (seeded), or all")
    add_label_space_argument(parser)
    parser.add_argument("--reduction", default="sum", choices=REDUCTIONS[:3],
                        help="likelihood: combine a class name's token log-probs by sum (log-likelihood), mean "
                             "per token, or the first token only")
    parser.add_argument("--scoring", default="fast", choices=SCORINGS,
                        help="likelihood: fast (image+prompt computed once per image, all class names in a "
                             "token trie; exact) or naive (one full forward per class; the reference)")
    parser.add_argument("--answer-prefix", default=None, metavar="TEXT",
                        help=f"likelihood: text that opens the answer before the class name; 'paper' means "
                             f"'{PAPER_ANSWER_PREFIX}'; none by default")
    parser.add_argument("--score-eos", action="store_true",
                        help="likelihood: also score the end-of-sequence token after the class name")
    parser.add_argument("--article", default="none", choices=ARTICLES,
                        help="likelihood: a/an puts 'a' or 'an' before each class name (scored with it) and drops "
                             "a trailing 'a'/'an' from the answer prefix")
    parser.add_argument("--chunk-size", type=int, default=512,
                        help="likelihood (fast): trie nodes per image per forward; lower it to save memory")


def from_args(args) -> Method:
    if getattr(args, "closed_world", False):
        raise VlmprobeError("--closed-world applies to --method generate; likelihood scores class names "
                            "after an open question (use --num-candidates to restrict the label space)")
    return Method(prompt=getattr(args, "prompt", "default"), answer_prefix=args.answer_prefix,
                  reduction=args.reduction, scoring=args.scoring, include_eos=args.score_eos,
                  article=args.article, chunk_size=args.chunk_size,
                  num_candidates=getattr(args, "num_candidates", None), label_space=getattr(args, "label_space", None))
