"""The miniature world: real handwritten digits (scikit-learn), a toy CLIP and a toy
LLaVA-style VLM that shares its vision encoder, built offline in minutes.

A demonstration and a test bed for every vlmprobe command, not evidence about real models.
Modules: ``digits`` (images, split), ``corpus`` (captions, conversations, knowledge,
fine-tuning data), ``prompts`` (CPE template pool and digit descriptions), ``vocab`` (word-level tokenizers), ``clip`` / ``vlm`` (training),
``wikiqa`` (toy ImageWikiQA), ``evaluate`` (sanity measurements), ``build`` (cache, entry points).
"""
from .build import WorldConfig, build_world, default_dir, ensure_data
from .plugin import load_toy_dataset, resolve_toy_model
from .digits import CLASSNAMES

__all__ = ["CLASSNAMES", "WorldConfig", "build_world", "default_dir", "ensure_data", "load_toy_dataset",
           "register", "resolve_toy_model"]


def register() -> None:
    """The ``vlmprobe.plugins`` entry point: put ``toy:`` into the model and dataset spec tables."""
    from ..specs import (CAPTION_SPECS, DATASET_SPECS, DESCRIPTION_SPECS, MODEL_SPECS, TEMPLATE_SPECS, World,
                         register_world)
    from .build import existing_world
    from .captions import load_toy_captions
    from .plugin import DATASET_NAMES, MODEL_NAMES
    from .prompts import resolve_descriptions, resolve_templates
    from .side import build_world_and_side

    MODEL_SPECS.register("toy:", resolve_toy_model, "the miniature world: toy:clip, toy:vlm", alias=True,
                         names=MODEL_NAMES)
    DATASET_SPECS.register("toy:", lambda spec, split: load_toy_dataset(spec, split=split),
                           "the miniature world's digits: toy:digits[:train|val|test], toy:cue-conflict, toy:photos (OOD)",
                           names=DATASET_NAMES)
    TEMPLATE_SPECS.register("toy:", resolve_templates, "the miniature world's CPE pool: toy:cpe-pool")
    DESCRIPTION_SPECS.register("toy:", resolve_descriptions, "the digits' facts: toy:digit-facts")
    CAPTION_SPECS.register("toy:", load_toy_captions, "the miniature world's digit captions: toy:captions",
                           names=("toy:captions",))
    register_world(World("toy", directory=default_dir,
                         build=lambda seed, progress: build_world_and_side(seed=seed, progress=progress),
                         existing=existing_world, help="the miniature world (digits, toy CLIP, toy VLM)"))
