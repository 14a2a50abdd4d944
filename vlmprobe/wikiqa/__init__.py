"""ImageWikiQA: four-option knowledge questions about ImageNet images that only a model which
recognises the object can answer (is classification the foundation of other abilities?).

``loader`` (released JSONL, options, image resolution) -> ``prompts`` (conditions: image,
no image, oracle class, CoT) -> ``generate`` (greedy + ``parser``) or ``likelihood`` (option
log-probs via ``models.likelihood``) -> ``runner`` (run directory, resume) -> ``report``
(accuracy, unparseable rate, per class) and ``split`` (by classification outcome).
"""
from .generate import GenerateScorer
from .likelihood import LikelihoodScorer
from .loader import LETTERS, Question, QuestionSet, load_questions, parse_options
from .parser import ParsedAnswer, parse_answer
from .prompts import Condition
from .runner import run_wikiqa

__all__ = ["LETTERS", "Condition", "GenerateScorer", "LikelihoodScorer", "ParsedAnswer", "Question", "QuestionSet",
           "load_questions", "parse_answer", "parse_options", "run_wikiqa"]
