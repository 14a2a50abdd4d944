"""Models behind one interface: CLIP (open_clip, transformers) and VLMs (transformers)."""
from .base import LoadOptions, VisionModel
from .registry import load_model
from . import families_hybrid  # noqa: F401,E402 (registers the hybrid families' adapters)

__all__ = ["LoadOptions", "VisionModel", "load_model"]
