"""Datasets, class names and prompt templates."""
from .classnames import apply_duplicate_policy, read_classnames
from .datasets import ImageDataset, ImageLoadError, Sample, read_image, to_rgb
from .loading import load_dataset
from .templates import load_templates

__all__ = ["ImageDataset", "ImageLoadError", "Sample", "apply_duplicate_policy", "load_dataset",
           "load_templates", "read_classnames", "read_image", "to_rgb"]
