"""vlmprobe: why are visually-grounded language models worse than CLIP at image classification?

Public API (the CLI is a thin layer over it)::

    import vlmprobe
    model = vlmprobe.load_model("hf:llava-hf/llava-1.5-7b-hf", device="cuda", dtype="bfloat16")
    data = vlmprobe.load_dataset("path/to/manifest.jsonl", split="val")
    results = vlmprobe.evaluate(model, data, method="likelihood", out="runs/llava-lik")
    report = vlmprobe.cpe("openclip:ViT-B-16@openai", data, "runs/cpe", k=10)  # CPE prompt ensemble
"""
__version__ = "0.1.0"

from .errors import VlmprobeError
from .models import LoadOptions, load_model

__all__ = ["LoadOptions", "VlmprobeError", "load_model", "load_dataset", "evaluate", "cpe", "__version__"]


def __getattr__(name):  # lazy: keep `import vlmprobe` light
    if name == "load_dataset":
        from .data import load_dataset

        return load_dataset
    if name == "evaluate":
        from .classify.runner import evaluate

        return evaluate
    if name == "cpe":
        from .classify.cpe import build

        return build
    raise AttributeError(name)
