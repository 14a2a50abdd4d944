"""Class descriptions for CPE's enrichment of the worst classes: from a local language model or
from a description file.

Describers (greedy decoding, so a description set is reproducible):

- ``hf:PATH_OR_ID``: any ``AutoModelForCausalLM`` with its tokenizer; the prompt is fed as
  plain text (no chat template) and the continuation is the description.
- ``vlm:SPEC``: a VLM loaded by ``vlmprobe.load_model`` (e.g. ``vlm:toy:vlm``); its language
  model answers the prompt text-only through the model's chat template (``generate(None, ...)``).

For every class c and every describer prompt q (``{}`` = the class name), one description is
``clean(generate(q.format(c)))``: the first line of the generated text, with a leading list dash
and trailing period removed. Empty descriptions are dropped and counted.

A description file is JSON ``{class name: [description, ...]}`` (a string value counts as a
one-element list), the format CuPL / DCLIP description files use; a class it names that is not
in the dataset is an error.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..progress import bar as tqdm

from ..data.templates import check_classes
from ..errors import DataError, ModelLoadError, VlmprobeError

# The stated default prompt: asks for one visual attribute, continued after "which has".
DEFAULT_DESCRIBER_PROMPT = "Describe one visual feature of a {} in a photo. A {} has"
MAX_NEW_TOKENS = 32


def clean(text: str) -> str:
    """First line, leading '-'/'*' and surrounding spaces and a final '.' removed."""
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line.lstrip("-* ").rstrip(" .")


def read_descriptions(path: str | Path, classnames: Sequence[str]) -> dict[str, list[str]]:
    """``{class: [description, ...]}`` from a JSON file (or a prefix registered in
    ``specs.DESCRIPTION_SPECS``, e.g. ``toy:digit-facts``); unknown classes are an error."""
    from ..specs import DESCRIPTION_SPECS

    entry = DESCRIPTION_SPECS.find(str(path)) if not Path(path).expanduser().exists() else None
    if entry is not None:
        obj = entry.resolve(str(path))
    else:
        path = Path(path).expanduser()
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise DataError(f"--descriptions {path}: cannot read ({e.strerror or e})") from None
        except json.JSONDecodeError as e:
            raise DataError(f"--descriptions {path}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f"--descriptions {path}: expected a JSON object {{class: [description, ...]}}")
    check_classes(list(obj), classnames, f"--descriptions {path}", "descriptions")
    out = {}
    for cls, items in obj.items():
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, list) or not all(isinstance(d, str) for d in items):
            raise DataError(f"--descriptions {path}: class {cls!r} must map to a list of strings")
        out[cls] = [d.strip() for d in items if d.strip()]
    return out


def _format(prompt: str, classname: str) -> str:
    return prompt.replace("{}", classname)


def check_describer(spec: str) -> None:
    """Cheap checks before any image is read: the prefix, and for ``hf:`` that the config is
    one ``AutoModelForCausalLM`` knows (reads only config.json)."""
    if not spec.startswith(("hf:", "vlm:")):
        raise VlmprobeError(f"--describer {spec!r}: use hf:PATH_OR_ID (a causal LM) or vlm:SPEC (a VLM's language model)")
    if spec.startswith("hf:"):
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        ref = spec[3:]
        try:
            config = AutoConfig.from_pretrained(ref)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"--describer {spec}: cannot load a model config ({str(e).splitlines()[0]})") from None
        if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise VlmprobeError(f"--describer {spec}: not a causal language model (model_type {config.model_type!r} "
                                "has no AutoModelForCausalLM); give a text-generation checkpoint")


class HFDescriber:
    """``hf:PATH_OR_ID``: an ``AutoModelForCausalLM`` continues the plain-text prompt."""

    def __init__(self, ref: str, device: str = "cpu"):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(ref)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"--describer hf:{ref}: cannot load a model config ({str(e).splitlines()[0]})") from None
        try:
            self.model = AutoModelForCausalLM.from_pretrained(ref).to(device).eval()
        except ValueError:
            raise VlmprobeError(f"--describer hf:{ref}: not a causal language model (model_type "
                                f"{getattr(config, 'model_type', '?')!r} has no AutoModelForCausalLM); give a "
                                "text-generation checkpoint") from None
        self.tokenizer = AutoTokenizer.from_pretrained(ref)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def __call__(self, prompts: list[str]) -> list[str]:
        import torch

        enc = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.model.device)
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


class VLMDescriber:
    """``vlm:SPEC``: a VLM's language model, text-only, through its chat template."""

    def __init__(self, spec: str, device: str = "cpu"):
        from ..models import load_model
        from ..models.base import require_kind

        self.model = load_model(spec, device=device)
        require_kind(self.model, "vlm", f"--describer vlm:{spec}", "use hf:PATH for a plain language model")

    def __call__(self, prompts: list[str]) -> list[str]:
        return self.model.generate(None, prompts, max_new_tokens=MAX_NEW_TOKENS)


def make_describer(spec: str, device: str = "cpu"):
    if spec.startswith("hf:"):
        return HFDescriber(spec[3:], device)
    if spec.startswith("vlm:"):
        return VLMDescriber(spec[4:], device)
    raise VlmprobeError(f"--describer {spec!r}: use hf:PATH_OR_ID (a causal LM) or vlm:SPEC (a VLM's language model)")


def generate_descriptions(spec: str, classnames: Sequence[str], prompts: Sequence[str], device: str = "cpu",
                          batch_size: int = 16, progress: bool = True) -> tuple[dict[str, list[str]], dict]:
    """-> ({class: [description per prompt, empties dropped]}, {"raw": ..., "empty": count})."""
    for q in prompts:
        if "{}" not in q:
            raise VlmprobeError(f"--describer-prompt {q!r}: needs a '{{}}' where the class name goes")
    describer = make_describer(spec, device)
    jobs = [(c, _format(q, c)) for c in classnames for q in prompts]
    raw = []
    for i in tqdm(range(0, len(jobs), batch_size), desc="describing classes", disable=not progress):
        raw += describer([p for _, p in jobs[i:i + batch_size]])
    out: dict[str, list[str]] = {c: [] for c in classnames}
    empty = 0
    for (c, _), text in zip(jobs, raw):
        d = clean(text)
        if d:
            out[c].append(d)
        else:
            empty += 1
    return out, {"raw": {f"{c} | {p}": t for (c, p), t in zip(jobs, raw)}, "empty": empty}
