"""The miniature world: real handwritten digits (scikit-learn), a toy CLIP and a toy
LLaVA-style VLM that shares its vision encoder, built offline in minutes.

A demonstration and a test bed for every vlmprobe command, not evidence about real models.
Modules: ``digits`` (images, split), ``corpus`` (captions, conversations, knowledge,
fine-tuning data), ``vocab`` (word-level tokenizers), ``clip`` / ``vlm`` (training),
``wikiqa`` (toy ImageWikiQA), ``evaluate`` (sanity measurements), ``build`` (cache, entry points).
"""
from .build import WorldConfig, build_world, default_dir, ensure_data, load_toy_dataset, resolve_toy_model
from .digits import CLASSNAMES

__all__ = ["CLASSNAMES", "WorldConfig", "build_world", "default_dir", "ensure_data", "load_toy_dataset",
           "resolve_toy_model"]
