"""Models behind one interface: CLIP (open_clip, transformers) and VLMs (transformers)."""
from .base import LoadOptions, VisionModel
from .registry import load_model

__all__ = ["LoadOptions", "VisionModel", "load_model"]
