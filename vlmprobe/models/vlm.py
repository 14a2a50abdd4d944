"""Vision-language models (LLaVA-1.5, LLaVA-NeXT and any ``AutoModelForImageTextToText`` that
follows the same API) behind the common interface.

Prompts are always rendered with the processor's chat template (``render``); library code
never writes per-family prompt strings. Generation pads on the left so every row's next token
sits at the last position (batch-invariant greedy decoding).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import ModelLoadError, VlmprobeError
from .base import PAPER_QUESTION, LoadOptions, VisionModel
from .families import Family, append_text, family_for_type, family_of, processor_images
from .tokentrie import ContinuationTokenizer


def _quantization_config(options: LoadOptions, family: Family):
    """bitsandbytes config; the family's vision tower, projector and output head stay in full
    precision (``Family.keep_unquantized``), as LLaVA's own QLoRA does."""
    if not (options.load_in_4bit or options.load_in_8bit):
        return None
    if options.load_in_4bit and options.load_in_8bit:
        raise ModelLoadError("choose one of load_in_4bit / load_in_8bit")
    from transformers import BitsAndBytesConfig

    compute = options.torch_dtype()
    compute = torch.float32 if compute == "auto" else compute
    keep = family.keep_unquantized()
    if options.load_in_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute, llm_int8_skip_modules=keep)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep)


def _adapter_as_saved(model, adapter: str) -> None:
    """Undo a key renaming that peft applied to an adapter it saved itself. On load, peft (>= 0.19
    with transformers 5) applies transformers' checkpoint renamings to the adapter's keys. Some
    renamings are not idempotent: Mistral Large 4's ``.shared_experts.`` -> ``.mlp.shared_experts.``
    sends keys peft saved under the module names to ``mlp.mlp.shared_experts``, so those weights
    never load (peft only warns). Where every saved key names a parameter of the loaded model
    exactly (LoRA ``lora_*`` with the adapter name ``default`` inserted, ``modules_to_save``
    copies), the saved tensors are copied in as saved; otherwise (an adapter in another layout)
    peft's own conversion stands."""
    import re
    from pathlib import Path

    path = Path(adapter) / "adapter_model.safetensors"
    if not path.is_file():
        return
    from safetensors.torch import load_file

    params = dict(model.named_parameters())
    wrapped = [n for n, m in model.named_modules() if type(m).__name__ == "ModulesToSaveWrapper"]
    target = {}
    for key, value in load_file(str(path)).items():
        name = re.sub(r"\.(lora_[A-Za-z_]+)\.", r".\1.default.", key)
        owner = next((w for w in wrapped if key.startswith(w + ".")), None)
        if owner is not None:
            name = f"{owner}.modules_to_save.default.{key[len(owner) + 1:]}"
        if name not in params or params[name].shape != value.shape:
            return
        target[name] = value
    with torch.no_grad():
        for name, value in target.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def render_prompt(processor, family: Family, question: str, image: bool = True,
                  answer_prefix: str | None = None) -> str:
    """One user turn (image first, then ``question``) through ``processor``'s chat template with
    the generation prompt, followed by ``answer_prefix`` if given (e.g. ``"The photo features
    a"``). A checkpoint released without a chat template uses its family's ``prompt_format``
    (BLIP-2: ``Question: {question} Answer:``)."""
    if family.uses_prompt_format(processor):
        text = family.render_messages([{"role": "user", "content": question}])  # the processor adds the image tokens
    else:
        content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": question}]
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    if family.rendered is not None:  # Idefics2: the space its processor writes after an image
        text = family.rendered(processor, text)
    if answer_prefix:
        text = append_text(text, answer_prefix)
    return text


class PromptRenderer:
    """A VLM checkpoint's processor and family without its weights: renders prompts as the
    local engine does (``render``) and tokenizes them (``tokenizer``); what an ``sglang:`` API
    model sends to a server running that checkpoint."""

    def __init__(self, processor, family: Family):
        self.processor, self.family = processor, family
        self.tokenizer = getattr(processor, "tokenizer", processor)

    @classmethod
    def load(cls, ref: str, options: LoadOptions | None = None) -> "PromptRenderer":
        """``ref``: a hub id or local directory (or ``hf:`` one; the caller resolved aliases such
        as ``toy:vlm``)."""
        from transformers import AutoConfig, AutoProcessor

        path = ref.removeprefix("hf:").partition("+adapter:")[0]
        remote = bool(options and options.trust_remote_code)
        try:
            processor = AutoProcessor.from_pretrained(path, trust_remote_code=remote)
            model_type = getattr(AutoConfig.from_pretrained(path, trust_remote_code=remote), "model_type", None)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"{ref}: cannot load its processor to render prompts ({str(e).splitlines()[0]}); "
                                 "name the served checkpoint (hub id or local directory)") from None
        return cls(processor, family_for_type(model_type))

    def render(self, question: str, image: bool = True, answer_prefix: str | None = None) -> str:
        return render_prompt(self.processor, self.family, question, image=image, answer_prefix=answer_prefix)


def cast_inputs(batch: dict, model) -> dict:
    """Tensors of a processor batch on ``model``'s device, floating ones in its float dtype
    (Llama 4's image processor returns bfloat16 pixels whatever the model's dtype); non-tensor
    entries pass through."""
    param = next(p for p in model.parameters() if p.is_floating_point())
    return {k: (v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device))
            if torch.is_tensor(v) else v for k, v in batch.items()}


class VisionLanguageModel(VisionModel):
    """``model`` (transformers), ``processor`` (image processor + tokenizer + chat template)."""

    kind = "vlm"

    def __init__(self, spec: str, options: LoadOptions, path: str, fingerprint, adapter: str | None = None):
        super().__init__(spec, options)
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        self.fingerprint = fingerprint
        self.processor = AutoProcessor.from_pretrained(path, trust_remote_code=options.trust_remote_code)
        kwargs = dict(dtype=options.torch_dtype(), trust_remote_code=options.trust_remote_code)
        model_type = getattr(AutoConfig.from_pretrained(path, trust_remote_code=options.trust_remote_code),
                             "model_type", None)
        if not getattr(self.processor, "chat_template", None) and family_for_type(model_type).prompt_format is None:
            raise ModelLoadError(f"{spec}: the processor has no chat template (chat_template.jinja / "
                                 f"chat_template.json) and the {family_for_type(model_type).name} family defines "
                                 "no prompt format; vlmprobe renders every prompt with one of them")
        quant = _quantization_config(options, family_for_type(model_type))
        if quant is not None:
            kwargs["quantization_config"] = quant
        if options.device_map:
            kwargs["device_map"] = options.device_map
        elif quant is not None:
            kwargs["device_map"] = {"": options.device}
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        if not options.device_map and quant is None:
            model = model.to(options.device)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
            _adapter_as_saved(model, adapter)
        self.model = model.eval()
        self.tokenizer = self.processor.tokenizer
        self.continuation_tokenizer = ContinuationTokenizer(self.tokenizer)

    @classmethod
    def from_parts(cls, model, processor, spec: str = "in-memory", options: LoadOptions | None = None,
                   fingerprint=None) -> "VisionLanguageModel":
        """Wrap a model and processor that are already in memory (built in code, or loaded by
        hand) so every vlmprobe method can use them."""
        self = cls.__new__(cls)
        VisionModel.__init__(self, spec, options or LoadOptions(device=str(next(model.parameters()).device)))
        self.model, self.processor, self.tokenizer = model.eval(), processor, processor.tokenizer
        self.continuation_tokenizer = ContinuationTokenizer(self.tokenizer)
        self.fingerprint = fingerprint if fingerprint is not None else [spec]
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def family(self) -> Family:
        """The family adapter (``vlmprobe.models.families``): module paths, image token, fast support."""
        return family_of(self.model)

    @property
    def image_token_id(self) -> int | None:
        """Id of the image placeholder token in ``input_ids`` (expanded to one per image feature)."""
        return self.family.image_token_id(self.model.config)

    @property
    def placeholder_token_ids(self) -> set[int]:
        """Ids that stand for an image in the rendered text before the processor expands it: the
        image token and the processor's placeholder where they differ (Gemma 3 writes
        ``<start_of_image>`` and expands it into ``<image_soft_token>`` runs)."""
        ids = {self.image_token_id}
        for attr in ("image_token", "image_placeholder_token"):  # Qianfan-OCR: "<image>" -> <img>...</img>
            placeholder = getattr(self.processor, attr, None)
            if isinstance(placeholder, str):
                ids.add(self.tokenizer.convert_tokens_to_ids(placeholder))
        return ids - {None}

    def num_layers(self) -> int:
        """Number of decoder layers L of the language model (hidden states are lm.0 .. lm.L)."""
        cfg = self.model.config
        text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else getattr(cfg, "text_config", cfg)
        return int(text.num_hidden_layers)

    def patch_layers(self) -> tuple[str, ...]:
        """``("vision", "projector")`` where the model has a projector module (the features hook
        it), else ``()``: the projector is optional (``Family.find_module``)."""
        from .features import PATCH_LAYERS

        return PATCH_LAYERS if self.family.find_module(self.model, "projector", required=False) else ()

    def preprocessing(self) -> dict:
        """What turns a PIL image into model input (JSON-able), for feature-cache keys."""
        return self.processor.image_processor.to_dict()

    def feature_options(self, layers="all", pooling="last", prompt: str | None = None) -> dict:
        """Validated, canonical ``features`` keyword arguments (layer names, pooling list, prompt)."""
        from .features import resolve_layers, resolve_poolings

        return {"layers": resolve_layers(layers, self.num_layers(), self.patch_layers()),
                "pooling": resolve_poolings(pooling),
                "prompt": prompt or PAPER_QUESTION}

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the floating-point weights (quantised layers hold integers)."""
        return next(p for p in self.model.parameters() if p.is_floating_point()).dtype

    def describe(self) -> dict:
        cfg = self.model.config
        return {**super().describe(), "model_type": getattr(cfg, "model_type", None),
                "architecture": type(self.model).__name__}

    def render(self, question: str, image: bool = True, answer_prefix: str | None = None) -> str:
        """One user turn (image first, then ``question``) through the chat template with the
        generation prompt, followed by ``answer_prefix`` if given (``render_prompt``)."""
        return render_prompt(self.processor, self.family, question, image=image, answer_prefix=answer_prefix)

    def encode(self, images: Sequence | None, texts: Sequence[str], padding_side: str = "left",
               add_special_tokens: bool | None = None):
        """Processor call for a batch: rendered ``texts`` (one ``<image>`` each when ``images``)
        -> BatchFeature on the model's device (``input_ids`` [B, L], ``attention_mask`` [B, L],
        ``pixel_values`` ...). ``add_special_tokens``: passed to the tokenizer when given (default:
        the processor's, which adds them)."""
        kwargs = dict(text=list(texts), return_tensors="pt", padding=True)
        if add_special_tokens is not None:
            kwargs["add_special_tokens"] = add_special_tokens
        if images is not None:
            kwargs["images"] = processor_images(self.processor, list(images))
        old = self.tokenizer.padding_side
        self.tokenizer.padding_side = padding_side
        try:
            batch = (self.processor(**kwargs) if self.family.encode is None
                     else self.family.encode(self.processor, **kwargs))
        finally:
            self.tokenizer.padding_side = old
        return cast_inputs(dict(batch), self.model)

    @torch.no_grad()
    def generate(self, images: Sequence | None, prompts: Sequence[str], max_new_tokens: int = 64,
                 rendered: bool = False, **gen_kwargs) -> list[str]:
        """Greedy decoding. ``prompts`` are user questions (rendered here) or, with
        ``rendered=True``, full chat-template texts. Returns the decoded new tokens, stripped.
        ``gen_kwargs`` go to transformers' ``generate`` (which rejects unknown ones)."""
        texts = list(prompts) if rendered else [self.render(p, image=images is not None) for p in prompts]
        batch = self.encode(images, texts, padding_side="left")
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=pad_id, **gen_kwargs)
        from .likelihood import is_encoder_decoder

        new = out if is_encoder_decoder(self.model) else out[:, batch["input_ids"].shape[1]:]  # T5: decoder only
        return [s.strip() for s in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def check_scoring(self, scoring: str) -> None:
        """One-line ``VlmprobeError`` unless ``scoring`` (fast | naive) works for this model."""
        from .likelihood import SCORINGS, base_model, check_fast_supported

        if scoring not in SCORINGS:
            raise VlmprobeError(f"unknown scoring {scoring!r}; choose from {SCORINGS}")
        if scoring == "fast":
            check_fast_supported(base_model(self.model))

    def logprobs(self, images: Sequence | None, prefixes: Sequence[str] | str, continuations,
                 reduction: str = "sum", scoring: str = "fast", include_eos: bool = False,
                 separator: str | None = None, batch_size: int = 8, chunk_size: int = 512,
                 progress: bool = False) -> torch.Tensor:
        """log p(continuation | image, rendered prefix): [N, K] (``tokens``: [N, K, L]); see
        ``vlmprobe.models.likelihood.continuation_logprobs`` (the engine) for every argument."""
        from .likelihood import continuation_logprobs

        if images is None:
            self.family.check_text_only(getattr(self.model.config, "model_type", None))
        return continuation_logprobs(self, images, prefixes, continuations, reduction=reduction, scoring=scoring,
                                     include_eos=include_eos, separator=separator, batch_size=batch_size,
                                     chunk_size=chunk_size, progress=progress)

    def score(self, images: Sequence, candidates, prompt: str = PAPER_QUESTION, answer_prefix: str | None = None,
              reduction: str | Sequence[str] = "sum", scoring: str = "fast", include_eos: bool = False,
              batch_size: int = 8, chunk_size: int = 512, progress: bool = False):
        """log p(candidate | image, prompt) [N, K]: the user turn ``prompt`` with the image, the
        assistant turn opened by the chat template, then ``answer_prefix`` (e.g. "The photo
        features a") and the candidate. ``candidates``: one list for all images or one per image.

        ``reduction``: ``sum | mean | first | tokens`` (``vlmprobe.models.tokentrie``) or the
        normalisations ``char`` (sum / characters) and ``pmi`` (sum minus the same text's sum
        without the image, once per distinct name); a sequence of them returns {name: [N, K]}
        from one pass over the images."""
        from .tokentrie import NORMALIZATIONS, normalize_scores

        prefix = self.render(prompt, image=True, answer_prefix=answer_prefix)
        kw = dict(scoring=scoring, include_eos=include_eos, batch_size=batch_size, chunk_size=chunk_size)
        wanted = (reduction,) if isinstance(reduction, str) else tuple(reduction)
        if isinstance(reduction, str) and reduction not in ("char", "pmi"):  # the engine's own reductions
            return self.logprobs(list(images), prefix, candidates, reduction=reduction, progress=progress, **kw)
        for r in wanted:
            if r not in NORMALIZATIONS:
                raise VlmprobeError(f"unknown reduction {r!r}; choose from {NORMALIZATIONS}")
        tokens = self.logprobs(list(images), prefix, candidates, reduction="tokens", progress=progress, **kw)
        N, K = tokens.shape[:2]
        rows = [list(candidates)] * N if len(candidates) == 0 or isinstance(candidates[0], str) else candidates
        chars = torch.full((N, K), float("nan"))
        for i, row in enumerate(rows):
            chars[i, :len(row)] = torch.tensor([float(len(c)) for c in row])
        prior = None
        if "pmi" in wanted:  # log p(name | prompt without image): one text-only row, each name once
            names = list(dict.fromkeys(c for row in rows for c in row))
            text = self.render(prompt, image=False, answer_prefix=answer_prefix)
            by_name = dict(zip(names, self.logprobs(None, [text], [names], reduction="sum", **kw)[0].tolist()))
            prior = torch.full((N, K), float("nan"))
            for i, row in enumerate(rows):
                prior[i, :len(row)] = torch.tensor([by_name[c] for c in row])
        out = {r: normalize_scores(tokens, r, chars=chars, prior=prior) for r in wanted}
        return out[reduction] if isinstance(reduction, str) else out

    def features(self, images: Sequence, layers="all", pooling="last", prompt: str | Sequence[str] = PAPER_QUESTION,
                 rendered: bool = False) -> dict[str, torch.Tensor]:
        """Hidden-state features per layer [N, D]; see ``vlmprobe.models.features``."""
        from .features import vlm_features

        return vlm_features(self, images, layers=layers, pooling=pooling, prompt=prompt, rendered=rendered)
