"""API vision-language models: ``openai:MODEL[@URL]`` through the official ``openai`` client
(optional extra ``vlmprobe[api]``), for OpenAI and any OpenAI-compatible chat-completions server
(Gemini's and Anthropic's compatibility endpoints, vLLM, SGLang, ``vlmprobe.testing.api_server``).
``generate`` works everywhere; ``score`` (likelihood) where the server returns the
log-probabilities of given prompt tokens (vLLM's ``prompt_logprobs``; see ``ApiModel.score``),
elsewhere a one-line error; ``features`` never (no hidden states).

One request per prompt::

    POST {base}/chat/completions
    {"model": MODEL, "temperature": 0, "seed": SEED, "max_tokens": M,
     "messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,...", "detail": D}},
         {"type": "text", "text": QUESTION}]}]}

The image is sent first, then the question (the order every local chat template renders), as a
PNG (lossless, so a server running a local model sees the pixels a local run sees) or JPEG
data URL, downscaled so its longer side is at most ``image_max_side`` (0 = as stored).

Crash safety and cost. Every answered request is appended (fsynced) to the run directory's
``api_requests.jsonl`` journal keyed by the SHA-256 of its request body (never the key), as
soon as it arrives: a run killed mid-batch, run again, replays finished requests from the
journal and sends only the others, so no finished sample is paid for twice. Failures are
retried (``ApiOptions.max_retries``) with exponential backoff ``min(cap, base * 2^attempt)``
plus uniform jitter, or the server's ``Retry-After``, on 429, 5xx, timeouts, dropped connections
and malformed responses; a request that still fails makes its sample an ``api_error`` record
(``skipped``, no prediction), which the next run of the same command retries alone. A refused
key (401/403) stops the run at once. ``max_requests`` / ``max_cost`` stop the run before a batch
that would exceed the request budget / once the spent cost reached the budget (so within one
batch), with a resumable run directory.

The key is read from the environment (``OPENAI_API_KEY`` or ``key_env``) when the first request
is sent, is never stored on the model's description, and is scrubbed (replaced by ``***``)
from every error message this module raises, including the client's own.
"""
from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch

from ..cache import complete_lines
from ..errors import ModelLoadError, VlmprobeError
from .base import PAPER_QUESTION, LoadOptions, VisionModel

DEFAULT_BASE_URL = "https://api.openai.com/v1"
JOURNAL = "api_requests.jsonl"
IMAGE_DETAILS = ("low", "high", "auto")
IMAGE_FORMATS = ("png", "jpeg")
TAIL = 64  # prompt-token log-probabilities kept per likelihood request (a candidate's tokens)
NO_PROMPT_LOGPROBS = ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com")


class ApiKeyRefused(VlmprobeError):
    """The server answered 401/403: the run stops at once."""


class ApiBudgetReached(VlmprobeError):
    """``--max-requests`` / ``--max-cost`` reached: the run stops cleanly (resumable)."""


@dataclass
class ApiOptions:
    """How to talk to the server (``--api-*`` flags). Only ``request_config()`` is part of a
    run's identity; budgets, concurrency and retries are per invocation."""

    base_url: str | None = None  # --api-base (or @URL in the spec); default https://api.openai.com/v1
    key_env: str = "OPENAI_API_KEY"  # environment variable holding the key
    image_detail: str = "auto"  # low | high | auto (OpenAI's image detail)
    image_max_side: int = 1024  # longer image side sent, px (0: as stored)
    image_format: str = "png"  # png (lossless) | jpeg (quality 90)
    seed: int | None = 0  # sent as the request's `seed` (None: not sent)
    concurrency: int = 4  # requests in flight within one batch
    timeout: float = 60.0  # seconds per request
    max_retries: int = 6  # retries after the first attempt
    backoff: float = 1.0  # base of the exponential backoff, seconds
    backoff_cap: float = 30.0  # longest wait between attempts, seconds
    max_requests: int | None = None  # stop before sending more requests than this (this invocation)
    max_cost: float | None = None  # stop once this invocation spent this many USD
    price_input: float | None = None  # USD per million prompt tokens
    price_output: float | None = None  # USD per million completion tokens
    dry_run: bool = False  # count requests and estimate cost; send nothing

    def request_config(self) -> dict:
        return {"base_url": self.base_url or DEFAULT_BASE_URL, "image_detail": self.image_detail,
                "image_max_side": self.image_max_side, "image_format": self.image_format, "seed": self.seed,
                "temperature": 0}

    def check(self) -> None:
        """One-line errors for impossible values."""
        if self.image_detail not in IMAGE_DETAILS:
            raise VlmprobeError(f"--image-detail {self.image_detail!r}: choose from {', '.join(IMAGE_DETAILS)}")
        if self.image_format not in IMAGE_FORMATS:
            raise VlmprobeError(f"--image-format {self.image_format!r}: choose from {', '.join(IMAGE_FORMATS)}")
        for name in ("concurrency",):
            if getattr(self, name) < 1:
                raise VlmprobeError(f"--{name} must be at least 1")
        flags = {"image_max_side": "--image-max-side", "max_retries": "--api-retries", "max_requests": "--max-requests",
                 "max_cost": "--max-cost", "price_input": "--price-input", "price_output": "--price-output"}
        for name, flag in flags.items():
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise VlmprobeError(f"{flag} must be >= 0 (got {getattr(self, name)})")
        if self.timeout <= 0:
            raise VlmprobeError(f"--api-timeout must be > 0 (got {self.timeout})")
        if self.max_cost is not None and (self.price_input is None or self.price_output is None):
            raise VlmprobeError("--max-cost needs --price-input and --price-output (USD per million tokens)")
        check_base_url(self.base_url or DEFAULT_BASE_URL)


def check_base_url(url: str) -> None:
    """https anywhere; plain http only for loopback addresses (127.0.0.0/8, ::1, localhost)."""
    parsed = urlparse(url)
    if parsed.scheme == "https":
        return
    if parsed.scheme != "http":
        raise VlmprobeError(f"--api-base {url!r}: expected an http(s):// URL")
    host = parsed.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise VlmprobeError(f"--api-base {url!r}: plain http is accepted only for loopback addresses "
                            "(the key would travel unencrypted); use https")


def split_spec(spec: str) -> tuple[str, str | None]:
    """``openai:MODEL[@URL]`` -> (MODEL, URL or None)."""
    ref = spec.split(":", 1)[1]
    model, sep, url = ref.rpartition("@")
    if sep and url.startswith(("http://", "https://")):
        return model, url
    return ref, None


def encode_image(image, max_side: int, fmt: str) -> tuple[str, list[int]]:
    """PIL image -> (data URL, [width, height] sent). Downscaled (Lanczos) so the longer side is
    at most ``max_side`` (0: unchanged)."""
    from PIL import Image

    image = image.convert("RGB")
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format="JPEG", quality=90)
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii"), list(image.size)


def image_tokens(size: Sequence[int], detail: str) -> int:
    """OpenAI's published image token count (for ``--dry-run`` estimates): low = 85; high =
    85 + 170 per 512-px tile after fitting into 2048x2048 and scaling the short side to 768."""
    if detail == "low":
        return 85
    w, h = size
    s = min(1.0, 2048 / max(w, h))
    w, h = w * s, h * s
    s = min(1.0, 768 / min(w, h))
    w, h = w * s, h * s
    return 85 + 170 * (-(-int(w) // 512)) * (-(-int(h) // 512))


def request_key(body: dict) -> str:
    """SHA-256 of the canonical JSON request body: the journal's key for one request."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def usage_totals(records: list[dict]) -> dict | None:
    """results.json's ``api`` section from records: requests answered, api errors, token totals,
    models and system fingerprints reported by the server; None when no record came from an API."""
    api = [r for r in records if "usage" in r or r.get("api_error")]
    if not api:
        return None
    prompt = sum(r.get("usage", {}).get("prompt_tokens", 0) for r in api)
    completion = sum(r.get("usage", {}).get("completion_tokens", 0) for r in api)
    return {"samples": len(api), "api_errors": sum(1 for r in api if r.get("api_error")),
            "prompt_tokens": prompt, "completion_tokens": completion,
            "served_models": sorted({r["served_model"] for r in api if r.get("served_model")}),
            "system_fingerprints": sorted({r["system_fingerprint"] for r in api if r.get("system_fingerprint")})}


class _Journal:
    """Append-only JSONL of answered requests (``{"key", "text", "usage", "model",
    "system_fingerprint"}``), fsynced per line, read back on resume."""

    def __init__(self, path: Path | None, read_only: bool = False):
        self.path, self.read_only = path, read_only
        self.entries: dict[str, dict] = {}
        self.lock = threading.Lock()
        if path is not None:
            for line in complete_lines(path, cut=not read_only).splitlines():  # a line cut by a kill: dropped
                if line.strip():
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry

    def add(self, entry: dict) -> None:
        with self.lock:
            self.entries[entry["key"]] = entry
            if self.path is None or self.read_only:
                return
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
                f.flush()
                os.fsync(f.fileno())


@dataclass
class _Spend:
    requests: int = 0  # sent (attempts included) by this invocation
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replayed: int = 0  # answered from the journal
    estimated_requests: int = 0  # --dry-run
    estimated_prompt_tokens: int = 0
    estimated_completion_tokens: int = 0
    errors: dict = field(default_factory=dict)


class ApiModel(VisionModel):
    """A chat-completions model behind the common interface (``generate``; ``score`` on servers
    with prompt log-probabilities; ``features`` is a one-line error). ``kind = "api"``."""

    kind = "api"

    def __init__(self, spec: str, options: LoadOptions, model_name: str, base_url: str | None,
                 api: ApiOptions | None = None):
        super().__init__(spec, options)
        self.model_name = model_name
        self.spec_url = base_url
        self.api = ApiOptions()
        self.configure(api or ApiOptions())
        self.journal = _Journal(None)
        self.spend = _Spend()
        self._client = None
        self._batch: list[dict] | None = None
        self._batch_lock = threading.Lock()

    # ---- configuration -------------------------------------------------------------------
    def configure(self, api: ApiOptions) -> "ApiModel":
        """Set the API options (``--api-*`` flags); ``@URL`` in the spec wins over a missing
        ``--api-base`` and must agree with a given one."""
        if self.spec_url and api.base_url and api.base_url.rstrip("/") != self.spec_url.rstrip("/"):
            raise VlmprobeError(f"model spec {self.spec!r} names {self.spec_url} but --api-base is {api.base_url}")
        api.base_url = (api.base_url or self.spec_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL)
        api.check()
        self.api = api
        self._client = None
        return self

    @property
    def base_url(self) -> str:
        return self.api.base_url or DEFAULT_BASE_URL

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def describe(self) -> dict:
        """Spec, kind, the model name as requested, base URL, request parameters and client
        version (never the key or its variable's value)."""
        return {"spec": self.spec, "kind": self.kind, "class": type(self).__name__, "model": self.model_name,
                "request": self.api.request_config(), "client": f"openai {_client_version()}"}

    def attach_run(self, path: str | os.PathLike, read_only: bool = False) -> None:
        """Journal answered requests in ``path/api_requests.jsonl`` (the engine calls this)."""
        self.journal = _Journal(Path(path) / JOURNAL, read_only=read_only)

    # ---- per-batch bookkeeping (the engine) ---------------------------------------------
    def start_batch(self, n: int) -> None:
        """The engine announces a batch of ``n`` samples; ``finish_batch`` returns their
        per-sample API fields in order."""
        self._batch = [{} for _ in range(n)]
        self._check_budget()

    def finish_batch(self) -> list[dict]:
        """Per sample: ``usage``, ``served_model``, ``system_fingerprint``, ``image_sent`` or
        ``api_error``."""
        out, self._batch = self._batch or [], None
        return out

    def _check_budget(self) -> None:
        a, s = self.api, self.spend
        if a.max_cost is not None and self.cost() >= a.max_cost:
            raise ApiBudgetReached(f"--max-cost {a.max_cost} USD reached ({self.cost():.4f} USD spent on "
                                   f"{s.requests} requests); run the same command again to continue")

    def cost(self, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> float:
        """USD = prompt tokens * price_input / 1e6 + completion tokens * price_output / 1e6."""
        p = self.spend.prompt_tokens if prompt_tokens is None else prompt_tokens
        c = self.spend.completion_tokens if completion_tokens is None else completion_tokens
        return (p * (self.api.price_input or 0) + c * (self.api.price_output or 0)) / 1e6

    def spending(self) -> dict:
        """This invocation's requests, tokens and cost (``--dry-run``: the estimates)."""
        s = self.spend
        out = {"requests_sent": s.requests, "replayed_from_journal": s.replayed, "prompt_tokens": s.prompt_tokens,
               "completion_tokens": s.completion_tokens, "cost_usd": self.cost() if self.api.price_input is not None
               else None, "errors": dict(s.errors)}
        if self.api.dry_run:
            est = self.cost(s.estimated_prompt_tokens, s.estimated_completion_tokens)
            out.update(dry_run=True, requests=s.estimated_requests, estimated_prompt_tokens=s.estimated_prompt_tokens,
                       estimated_completion_tokens_max=s.estimated_completion_tokens,
                       estimated_cost_usd_max=est if self.api.price_input is not None else None)
        return out

    # ---- the interface ----------------------------------------------------------------------
    def generate(self, images: Sequence | None, prompts: Sequence[str], max_new_tokens: int = 64,
                 rendered: bool = False, **gen_kwargs) -> list[str]:
        """One chat request per prompt (its image first when ``images``), ``concurrency`` in
        flight; greedy (temperature 0), ``max_tokens = max_new_tokens``. A request that fails
        after retries answers ``""`` and marks its sample ``api_error`` in ``finish_batch``."""
        if rendered:
            raise VlmprobeError(f"{self.spec}: an API model takes questions, not chat-template-rendered prompts")
        if gen_kwargs:
            raise VlmprobeError(f"{self.spec}: unsupported generation options {sorted(gen_kwargs)}")
        bodies, sizes = zip(*[self.request_body(images[i] if images is not None else None, prompt, max_new_tokens)
                              for i, prompt in enumerate(prompts)]) if prompts else ((), ())
        results = self._run_requests(list(bodies), list(sizes))
        return [r.get("text", "") for r in results]

    def request_body(self, image, prompt: str, max_new_tokens: int,
                     assistant: str | None = None) -> tuple[dict, list[int] | None]:
        """(chat-completions request body, [width, height] of the image sent or None);
        ``assistant``: a final assistant message (the answer so far, for likelihood)."""
        content = [{"type": "text", "text": prompt}]
        size = None
        if image is not None:
            url, size = encode_image(image, self.api.image_max_side, self.api.image_format)
            content.insert(0, {"type": "image_url", "image_url": {"url": url, "detail": self.api.image_detail}})
        messages = [{"role": "user", "content": content}]
        if assistant is not None:
            messages.append({"role": "assistant", "content": assistant})
        body = {"model": self.model_name, "messages": messages, "temperature": 0, "max_tokens": int(max_new_tokens)}
        if self.api.seed is not None:
            body["seed"] = self.api.seed
        return body, size

    def check_scoring(self, scoring: str) -> None:
        """Likelihood needs a server that returns the log-probabilities of given prompt tokens
        (vLLM's ``prompt_logprobs``); the hosted APIs do not: one-line error up front."""
        host = urlparse(self.base_url).hostname or ""
        if host in NO_PROMPT_LOGPROBS:
            raise VlmprobeError(f"{self.spec}: likelihood needs the log-probabilities of given prompt tokens, which "
                                f"{host} does not return (vLLM's prompt_logprobs does); use --method generate")

    def score(self, images: Sequence, candidates, prompt: str = PAPER_QUESTION, answer_prefix: str | None = None,
              reduction: str = "sum", include_eos: bool = False, **ignored) -> torch.Tensor:
        """log p(candidate | image, prompt, answer_prefix) [N, K] (``tokens``: [N, K, L], NaN-padded)
        from vLLM's ``prompt_logprobs``: per image one request whose assistant turn is the answer
        prefix (its prompt length P0) and one per candidate with the assistant turn
        ``answer_prefix + " " + candidate`` (``continue_final_message``, no generation prompt);
        the candidate's tokens are the prompt positions from P0 on. ``reduction``: sum | mean |
        tokens. ``ignored``: the local engine's options (scoring, batch sizes)."""
        self.check_scoring("fast")
        if include_eos:
            raise VlmprobeError(f"{self.spec}: --include-eos is not available over the API")
        if reduction not in ("sum", "mean", "tokens"):
            raise VlmprobeError(f"unknown reduction {reduction!r}; choose from sum, mean, tokens")
        n = len(images)
        per_image = [list(c) for c in candidates] if candidates and isinstance(candidates[0], (list, tuple)) \
            else [list(candidates)] * n
        bodies, sizes, owners, where = [], [], [], []
        for i in range(n):
            for k, text in enumerate([None] + per_image[i]):
                if text is None:
                    reply = answer_prefix or ""
                else:
                    reply = f"{answer_prefix} {text}" if answer_prefix else text
                body, size = self.request_body(images[i], prompt, 1, assistant=reply)
                body.update(prompt_logprobs=0, continue_final_message=True, add_generation_prompt=False)
                bodies.append(body)
                sizes.append(size)
                owners.append(i)
                where.append((i, k - 1))
        results = self._run_requests(bodies, sizes, owners, strict=True)
        width = max((len(c) for c in per_image), default=0)
        tokens: list[list[list[float]]] = [[[] for _ in range(width)] for _ in range(n)]
        prefix_len = {i: r.get("n_prompt") for (i, k), r in zip(where, results) if k < 0}
        for (i, k), r in zip(where, results):
            if k < 0 or "n_prompt" not in r or prefix_len.get(i) is None:
                continue  # a failed request: the sample is an api_error (NaN row)
            t = r["n_prompt"] - prefix_len[i]
            if t <= 0 or t > len(r["tail"]):
                raise VlmprobeError(f"{self.spec}: candidate {per_image[i][k]!r} adds {t} prompt tokens after the "
                                    "answer prefix; cannot locate its log-probabilities")
            tokens[i][k] = r["tail"][-t:]
        L = max((len(t) for row in tokens for t in row), default=1)
        out = torch.full((n, width, max(L, 1)), float("nan"), dtype=torch.float64)
        for i, row in enumerate(tokens):
            for k, values in enumerate(row):
                if values:
                    out[i, k, :len(values)] = torch.tensor(values, dtype=torch.float64)
        if reduction == "tokens":
            return out
        summed = torch.nansum(out, -1)
        count = (~torch.isnan(out)).sum(-1)
        summed[count == 0] = float("nan")
        return summed / count.clamp(min=1) if reduction == "mean" else summed

    def logprobs(self, *args, **kwargs):
        raise VlmprobeError(f"{self.spec} is an API model: it scores candidates after a question (score, --method "
                            "likelihood of vlmprobe eval), not after chat-template-rendered prefixes")

    def render(self, *args, **kwargs):
        raise VlmprobeError(f"{self.spec} is an API model: the server renders its chat template (use --method "
                            "generate)")

    def features(self, images, layers=None, pooling=None, **kwargs):
        raise VlmprobeError(f"{self.spec} is an API model: it has no hidden states to probe")

    # ---- requests ---------------------------------------------------------------------------
    def _run_requests(self, bodies: list[dict], sizes: list, owners: list[int] | None = None,
                      strict: bool = False) -> list[dict]:
        """Answers of ``bodies`` (journal first, then ``concurrency`` in flight); ``owners[j]``:
        the batch sample request j belongs to (default j); ``strict``: a request the server
        rejects (4xx other than 408/429) stops the run instead of failing its sample."""
        keys = [request_key(b) for b in bodies]
        owners = list(range(len(bodies))) if owners is None else owners
        todo = [i for i, k in enumerate(keys) if k not in self.journal.entries]
        if self.api.dry_run:
            for i in todo:
                self._estimate(bodies[i], sizes[i])
            return [self._annotate(owners[i], self.journal.entries.get(k, {}), sizes[i]) for i, k in enumerate(keys)]
        a = self.api
        if a.max_requests is not None and self.spend.requests + len(todo) > a.max_requests:
            raise ApiBudgetReached(f"--max-requests {a.max_requests} reached ({self.spend.requests} sent, the next "
                                   f"batch needs {len(todo)}); run the same command again to continue")
        self.spend.replayed += len(keys) - len(todo)
        out: dict[int, dict] = {}
        if todo:
            with ThreadPoolExecutor(max_workers=min(a.concurrency, len(todo))) as pool:
                for i, result in zip(todo, pool.map(lambda i: self._request(bodies[i], keys[i], strict), todo)):
                    out[i] = result
        return [self._annotate(owners[i], out.get(i) or self.journal.entries[k], sizes[i])
                for i, k in enumerate(keys)]

    def _annotate(self, i: int, result: dict, size=None) -> dict:
        """Record a request's API fields into the current batch's sample ``i`` (summing usage
        when a sample makes several requests; ``image_sent``: [width, height] of its image)."""
        if self._batch is not None and i < len(self._batch):
            slot = self._batch[i]
            if size is not None and "usage" in result:
                slot["image_sent"] = list(size)
            if "error" in result:
                slot["api_error"] = slot.get("api_error") or result["error"]
            elif "usage" in result:
                usage = slot.setdefault("usage", {"prompt_tokens": 0, "completion_tokens": 0})
                for k in usage:
                    usage[k] += int((result.get("usage") or {}).get(k) or 0)
                slot["served_model"] = result.get("model")
                slot["system_fingerprint"] = result.get("system_fingerprint")
        return result

    def _estimate(self, body: dict, size) -> None:
        s = self.spend
        s.estimated_requests += 1
        text = "".join(p.get("text", "") for m in body["messages"] for p in m["content"] if p["type"] == "text")
        s.estimated_prompt_tokens += len(text) // 4 + 8 + (image_tokens(size, self.api.image_detail) if size else 0)
        s.estimated_completion_tokens += body["max_tokens"]

    def client(self):
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise ModelLoadError("openai: models need the openai client: pip install 'vlmprobe[api]'") from None
            key = os.environ.get(self.api.key_env)
            if not key:
                raise VlmprobeError(f"no API key: set the environment variable {self.api.key_env}"
                                    + ("" if self.api.key_env != "OPENAI_API_KEY" else " (or name another with "
                                       "--api-key-env)"))
            self._client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.api.timeout)
        return self._client

    def _scrub(self, text: str) -> str:
        """``text`` with the key (and any 8+-character piece of it echoed by a server) removed."""
        key = os.environ.get(self.api.key_env) or ""
        if key:
            text = text.replace(key, "***")
            n = len(key)
            for size in range(min(n - 1, 24), 7, -1):
                for start in range(0, n - size + 1):
                    piece = key[start:start + size]
                    if piece in text:
                        text = text.replace(piece, "***")
        return text

    def _request(self, body: dict, key: str, strict: bool = False) -> dict:
        """One request with retries; the answer (journaled) or ``{"error": message}``. With
        ``prompt_logprobs`` in the body, the answer keeps the prompt length ``n_prompt`` and the
        last ``TAIL`` prompt-token log-probabilities (``tail``)."""
        import openai

        client = self.client()
        last, stop = "", None
        for attempt in range(self.api.max_retries + 1):
            wait = None
            with self._batch_lock:
                self.spend.requests += 1
            try:
                resp = client.chat.completions.create(**_create_kwargs(body))
                if not getattr(resp, "choices", None):
                    raise ValueError("response has no choices")
                text = (resp.choices[0].message.content or "").strip()
                usage = resp.usage
                entry = {"key": key, "text": text, "model": resp.model,
                         "system_fingerprint": getattr(resp, "system_fingerprint", None),
                         "usage": {"prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                                   "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0)}}
                if "prompt_logprobs" in body:
                    entry.update(self._prompt_logprobs(resp))
                with self._batch_lock:
                    self.spend.prompt_tokens += entry["usage"]["prompt_tokens"]
                    self.spend.completion_tokens += entry["usage"]["completion_tokens"]
                self.journal.add(entry)
                return entry
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                stop = ApiKeyRefused(f"{self.base_url} refused the API key in ${self.api.key_env} (HTTP "
                                     f"{e.status_code}); check the key")
                break
            except openai.APIStatusError as e:
                last = f"HTTP {e.status_code}: {self._scrub(_first_line(e))}"
                if e.status_code != 429 and e.status_code < 500 and e.status_code != 408:
                    if strict:
                        stop = VlmprobeError(f"{self.base_url} rejected a likelihood request ({last}); likelihood "
                                             "needs vLLM's prompt_logprobs")
                    break  # a request the server will not accept: retrying does not help
                wait = _retry_after(e.response)
            except (openai.APIConnectionError, openai.APIResponseValidationError, ValueError) as e:
                # timeouts (APITimeoutError), dropped connections, malformed JSON
                last = f"{type(e).__name__}: {self._scrub(_first_line(e))}"
            with self._batch_lock:
                kind = last.split(":")[0]
                self.spend.errors[kind] = self.spend.errors.get(kind, 0) + 1
            if attempt < self.api.max_retries:
                delay = min(self.api.backoff_cap, self.api.backoff * 2 ** attempt)
                time.sleep(wait if wait is not None else delay * (0.5 + random.random() / 2))
        if stop is not None:  # raised here, outside the handler: no chained client exception (it may quote the key)
            raise stop
        return {"error": last}

    def _prompt_logprobs(self, resp) -> dict:
        """vLLM's top-level ``prompt_logprobs``: one entry per prompt token (the first None), each
        ``{token_id: {"logprob", "rank", "decoded_token"}}`` holding the prompt's own token
        (``prompt_logprobs=0``: only it) -> ``{"n_prompt", "tail"}``."""
        plp = getattr(resp, "prompt_logprobs", None)
        if plp is None and getattr(resp, "model_extra", None):
            plp = resp.model_extra.get("prompt_logprobs")
        if not isinstance(plp, list):
            raise VlmprobeError(f"{self.base_url} returned no prompt_logprobs: likelihood needs a server that "
                                "returns the log-probabilities of given prompt tokens (vLLM); use --method generate")
        tail = []
        for entry in plp[-TAIL:]:
            if entry is None:
                continue
            if len(entry) != 1:
                raise ValueError(f"prompt_logprobs entry with {len(entry)} tokens (expected 1 with prompt_logprobs=0)")
            tail.append(float(next(iter(entry.values()))["logprob"]))
        return {"n_prompt": len(plp), "tail": tail}


def _create_kwargs(body: dict) -> dict:
    """The request body as ``client.chat.completions.create`` keyword arguments (fields the
    client does not name travel in ``extra_body``)."""
    known = {"model", "messages", "temperature", "max_tokens", "seed"}
    kwargs = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _retry_after(response) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds), capped at 60; None if absent."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return min(60.0, max(0.0, float(value) * scale))
            except ValueError:
                pass
    return None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _client_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("openai")
    except Exception:  # noqa: BLE001 - not installed: recorded as None
        return None


def load_api_model(spec: str, options: LoadOptions) -> ApiModel:
    """``openai:MODEL[@URL]`` -> ApiModel (no request is sent until it is used)."""
    name, url = split_spec(spec)
    if not name:
        raise ModelLoadError(f"model spec {spec!r} names no model")
    if url:
        check_base_url(url)
    return ApiModel(spec, options, name, url)


def add_api_arguments(parser) -> None:
    """The ``api`` argument group (``openai:`` models)."""
    d = ApiOptions()
    g = parser.add_argument_group("API models (openai:MODEL[@URL])")
    g.add_argument("--api-base", default=None, metavar="URL",
                   help="OpenAI-compatible endpoint (default: @URL in the spec, $OPENAI_BASE_URL, or OpenAI's); "
                        "plain http only for loopback addresses")
    g.add_argument("--api-key-env", default=d.key_env, metavar="VAR", help="environment variable holding the key")
    g.add_argument("--concurrency", type=int, default=d.concurrency, metavar="N",
                   help="requests in flight within a batch")
    g.add_argument("--image-detail", default=d.image_detail, choices=IMAGE_DETAILS, help="image detail requested")
    g.add_argument("--image-max-side", type=int, default=d.image_max_side, metavar="PX",
                   help="downscale images so the longer side is at most PX (0: as stored)")
    g.add_argument("--image-format", default=d.image_format, choices=IMAGE_FORMATS,
                   help="data URL format (png is lossless)")
    g.add_argument("--api-seed", type=_seed, default=d.seed, metavar="N|none",
                   help="`seed` sent with each request (none: not sent, for servers that reject it)")
    g.add_argument("--api-timeout", type=float, default=d.timeout, metavar="S", help="seconds per request")
    g.add_argument("--api-retries", type=int, default=d.max_retries, metavar="N",
                   help="retries per request (429, 5xx, timeouts, dropped connections, malformed answers)")
    g.add_argument("--max-requests", type=int, default=None, metavar="N",
                   help="stop (resumably) before sending more than N requests in this invocation")
    g.add_argument("--max-cost", type=float, default=None, metavar="USD",
                   help="stop (resumably) once this invocation spent USD (needs --price-input/--price-output)")
    g.add_argument("--price-input", type=float, default=None, metavar="USD", help="USD per million prompt tokens")
    g.add_argument("--price-output", type=float, default=None, metavar="USD",
                   help="USD per million completion tokens")
    g.add_argument("--dry-run", action="store_true",
                   help="print the number of requests and the estimated cost; send nothing")


def api_options_from_args(args) -> ApiOptions:
    return ApiOptions(base_url=args.api_base, key_env=args.api_key_env, concurrency=args.concurrency,
                      image_detail=args.image_detail, image_max_side=args.image_max_side,
                      image_format=args.image_format, timeout=args.api_timeout, max_retries=args.api_retries,
                      max_requests=args.max_requests, max_cost=args.max_cost, price_input=args.price_input,
                      price_output=args.price_output, dry_run=args.dry_run, seed=args.api_seed)


def _seed(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


__all__ = ["ApiModel", "ApiOptions", "ApiKeyRefused", "ApiBudgetReached", "load_api_model", "usage_totals",
           "add_api_arguments", "api_options_from_args"]
