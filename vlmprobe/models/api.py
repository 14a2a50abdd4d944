"""API vision-language models: ``openai:MODEL[@URL]`` through the official ``openai`` client
(optional extra ``vlmprobe[api]``), for OpenAI and any OpenAI-compatible chat-completions server
(Gemini's and Anthropic's compatibility endpoints, vLLM, SGLang, ``vlmprobe.testing.api_server``),
and ``sglang:MODEL@URL``: SGLang's native ``POST {URL}/generate`` (the prompt rendered here with
MODEL's own processor and chat template, as a local run renders it). ``generate`` works
everywhere; ``score`` (likelihood) where the server returns the log-probabilities of given prompt
tokens (vLLM's ``prompt_logprobs``, SGLang's ``input_token_logprobs``; see ``ApiModel.score``),
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

Requests in flight. One pool per model keeps up to N requests in flight across the engine's
batches (the engine runs several batches at once, ``batches_in_flight``: two rounds of N
requests, and writes their records in order); a finished request frees its slot for the next
queued one at once. N adapts (AIMD, ``_Limiter``): it starts at ``--concurrency``, halves on a
429 or when the smoothed latency (EWMA) rises above ``LATENCY_FACTOR`` x its lowest value (the
server queueing requests; at most once per latency), and grows by 1/N per answered request (+1
per N answers), never above ``--concurrency``. Identical requests (same key) are sent once and
their answer fanned out, within a batch and across batches in flight (requests of earlier
batches are sent first).

Crash safety and cost. Every answered request is appended (fsynced) to the run directory's
``api_requests.jsonl`` journal as soon as it arrives, keyed by ``request_key``: SHA-256 of the
request body with each image replaced by the SHA-256 of its decoded source pixels (+ size) and
the parameters that turn them into the bytes sent (max side, resampling, format), so a Pillow or
zlib upgrade that changes the encoded bytes does not re-pay a resumed run (entries of the older
byte-keyed journals are found too). A run killed mid-batch, run again, replays finished requests
from the journal and sends only the others. Failures are retried (``ApiOptions.max_retries``)
with exponential backoff ``min(cap, base * 2^attempt)`` plus uniform jitter, or the server's
``Retry-After``, on 429, 5xx, timeouts, dropped connections and malformed responses; a request
that still fails makes its sample an ``api_error`` record (``skipped``, no prediction), which the
next run of the same command retries alone (the command exits non-zero while any remain). A
refused key (401/403) stops the run at once.

Budgets are hard caps, checked before every HTTP attempt (first tries and retries alike):
``max_requests`` counts every attempt sent by this invocation; ``max_cost`` counts the cost of the
answered requests (their usage) plus, for each failed attempt a server may have billed (5xx,
timeout, dropped connection, malformed answer; not 429 or other 4xx), its bound; an attempt is
sent only if spent + the bounds of the attempts in flight + its own bound stay within the
budget, the bound being (the largest prompt answered so far or, before any answer, the dry-run
estimate) x price_input + max_tokens x price_output. At the cap the run stops cleanly and resumably (the answers already
journaled are replayed by the next run).

The key is read from the environment (``OPENAI_API_KEY`` or ``key_env``) when the first request
is sent, is never stored on the model's description, and is scrubbed (replaced by ``***``)
from every error message this module raises, including the client's own.
"""
from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import itertools
import json
import os
import random
import threading
import time
from concurrent.futures import Future, wait as futures_wait
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
PROTOCOLS = ("openai", "sglang")  # the spec prefix: openai: (chat completions) | sglang: (native /generate)
TAIL = 64  # prompt-token log-probabilities kept per likelihood request (a candidate's tokens)
NO_PROMPT_LOGPROBS = ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com")
LATENCY_FACTOR = 3.0  # a request slower than this x the fastest one seen halves the requests in flight
RESAMPLING = "lanczos"  # how images are downscaled to --image-max-side (part of the replay key)


class ApiKeyRefused(VlmprobeError):
    """The server answered 401/403: the run stops at once."""


class ApiBudgetReached(VlmprobeError):
    """``--max-requests`` / ``--max-cost`` reached: the run stops cleanly (resumable)."""


class ApiStopped(VlmprobeError):
    """A request of a batch ahead, not sent because the run stopped (``ApiModel.abort``)."""


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
    concurrency: int = 4  # most requests in flight (across the engine's batches; adapted below it)
    timeout: float = 60.0  # seconds per request
    max_retries: int = 6  # retries after the first attempt
    backoff: float = 1.0  # base of the exponential backoff, seconds
    backoff_cap: float = 30.0  # longest wait between attempts, seconds
    max_requests: int | None = None  # most HTTP attempts this invocation sends (retries and failures included)
    max_cost: float | None = None  # most USD this invocation may spend (see the module docstring)
    price_input: float | None = None  # USD per million prompt tokens
    price_output: float | None = None  # USD per million completion tokens
    dry_run: bool = False  # count requests and estimate cost; send nothing
    add_special_tokens: bool = False  # vLLM: tokenize with the tokenizer's special tokens, as a local run does

    def request_config(self) -> dict:
        out = {"base_url": self.base_url or DEFAULT_BASE_URL, "image_detail": self.image_detail,
               "image_max_side": self.image_max_side, "image_format": self.image_format, "seed": self.seed,
               "temperature": 0}
        if self.add_special_tokens:
            out["add_special_tokens"] = True
        return out

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
    """``openai:MODEL[@URL]`` / ``sglang:MODEL@URL`` -> (MODEL, URL or None)."""
    ref = spec.split(":", 1)[1]
    model, sep, url = ref.rpartition("@")
    if sep and url.startswith(("http://", "https://")):
        return model, url
    return ref, None


def pixel_digest(image) -> str:
    """SHA-256 of an image's decoded RGB pixels and size: what the replay key holds instead of
    the encoded bytes (which a Pillow or zlib upgrade may change)."""
    rgb = image.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


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
    """SHA-256 of the canonical JSON request body (with the image as sent, or as its
    ``pixel_digest`` stand-in, see ``ApiModel.request_body``)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def usage_totals(records: list[dict]) -> dict | None:
    """results.json's ``api`` section from records: requests answered, api errors (``unanswered``:
    samples still without an answer, which the same command retries), token totals, models and
    system fingerprints reported by the server; None when no record came from an API."""
    api = [r for r in records if "usage" in r or r.get("api_error")]
    if not api:
        return None
    prompt = sum(r.get("usage", {}).get("prompt_tokens", 0) for r in api)
    completion = sum(r.get("usage", {}).get("completion_tokens", 0) for r in api)
    errors = sum(1 for r in api if r.get("api_error"))
    return {"samples": len(api), "api_errors": errors, "unanswered": errors,
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
        self.fd: int | None = None
        if path is not None:
            for line in complete_lines(path, cut=not read_only).splitlines():  # a line cut by a kill: dropped
                if line.strip():
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry

    def get(self, key: str, legacy: str | None = None) -> dict | None:
        """The entry of ``key``, or of ``legacy`` (the byte-keyed key of older journals)."""
        entry = self.entries.get(key)
        if entry is None and legacy is not None:
            entry = self.entries.get(legacy)
        return entry

    def add(self, entry: dict) -> None:
        """Append ``entry`` and fsync before returning (the fsync outside the lock: concurrent
        answers share the disk's flushes instead of queueing for one each)."""
        line = (json.dumps(entry) + "\n").encode()
        with self.lock:
            self.entries[entry["key"]] = entry
            if self.path is None or self.read_only:
                return
            if self.fd is None:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self.fd, line)
            fd = self.fd
        os.fsync(fd)

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


@dataclass
class _Spend:
    requests: int = 0  # distinct requests sent by this invocation (each counted once, however many attempts)
    attempts: int = 0  # HTTP attempts sent by this invocation (first tries + retries; what --max-requests caps)
    billed_failures: int = 0  # failed attempts a server may have billed (5xx, timeouts, drops, malformed answers)
    failure_cost: float = 0.0  # their bound, USD (counted as spent)
    reserved: float = 0.0  # cost bounds of the attempts in flight, USD
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replayed: int = 0  # answered from the journal
    deduplicated: int = 0  # requests answered by an identical request of the same batch / one in flight
    estimated_requests: int = 0  # --dry-run
    estimated_prompt_tokens: int = 0
    estimated_completion_tokens: int = 0
    errors: dict = field(default_factory=dict)


class _Failed(Exception):
    """One failed attempt: ``retry`` (worth another), ``billed`` (the server may have billed
    it), ``status`` (HTTP), ``wait`` (Retry-After seconds), ``refused`` (401/403)."""

    def __init__(self, message: str, retry: bool, billed: bool, status: int | None = None,
                 wait: float | None = None, refused: bool = False):
        super().__init__(message)
        self.message, self.retry, self.billed, self.status, self.wait, self.refused = \
            message, retry, billed, status, wait, refused


class _Limiter:
    """Requests in flight, adapted AIMD-style up to ``cap``: ``limit`` halves (at least 1) on a
    429, or when the smoothed latency (EWMA, weight ``EWMA``) rises above ``LATENCY_FACTOR`` x its
    lowest value (a server queueing the requests), at most once per smoothed latency; it grows
    by 1/limit per answered request (+1 per ``limit`` answers). ``acquire(priority)`` (a
    coroutine, on the model's event loop) waits for a slot; the waiter with the lowest priority
    (the earliest engine batch) gets the next free one."""

    EWMA = 0.2

    def __init__(self, cap: int):
        self.cap, self.limit, self.active = cap, float(cap), 0
        self.smooth: float | None = None
        self.lowest: float | None = None
        self.cut_at = 0.0
        self.history = {"min": cap, "cuts": 0}
        self.waiters: list = []  # heap of (priority, order, future)
        self.order = itertools.count()

    async def acquire(self, priority=0) -> None:
        import asyncio
        import heapq

        if self.active < max(1, int(self.limit)) and not self.waiters:
            self.active += 1
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self.waiters, (priority, next(self.order), fut))
        try:
            await fut  # the slot was handed over (active counted by ``_wake``)
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as we were cancelled: give it back
            else:
                self.waiters = [w for w in self.waiters if w[2] is not fut]
                heapq.heapify(self.waiters)
            raise

    def _wake(self) -> None:
        import heapq

        while self.waiters and self.active < max(1, int(self.limit)):
            _, _, fut = heapq.heappop(self.waiters)
            if not fut.done():
                self.active += 1
                fut.set_result(None)

    def release(self, outcome: str | None = None, latency: float | None = None) -> None:
        """``outcome``: ok (with ``latency``, seconds) | throttled (429) | None (no signal)."""
        self.active -= 1
        if outcome == "ok" and latency is not None:
            self.smooth = latency if self.smooth is None else (1 - self.EWMA) * self.smooth + self.EWMA * latency
            self.lowest = self.smooth if self.lowest is None else min(self.lowest, self.smooth)
        slow = outcome == "ok" and self.lowest is not None and self.smooth > LATENCY_FACTOR * self.lowest
        now = time.monotonic()
        if (outcome == "throttled" or slow) and now - self.cut_at > (self.smooth or 0.0):
            self.limit = max(1.0, self.limit / 2)
            self.cut_at = now
            self.history["cuts"] += 1
            self.history["min"] = min(self.history["min"], int(self.limit))
        elif outcome == "ok" and not slow:
            self.limit = min(float(self.cap), self.limit + 1.0 / self.limit)
        self._wake()


class _Loop:
    """One asyncio event loop in a daemon thread: the model's requests in flight are coroutines
    on it (one thread for any number of them). ``submit`` returns a concurrent future."""

    def __init__(self):
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="vlmprobe-api")
        self.thread.start()
        self.tasks: set = set()

    def submit(self, coro) -> Future:
        import asyncio

        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self.tasks.add(fut)
        fut.add_done_callback(self.tasks.discard)
        return fut

    def close(self, limiter: "_Limiter", client) -> None:
        """Cancel the requests still waiting for a slot, wait for those in flight (they are
        journaled), close the HTTP client, stop the loop."""
        import asyncio

        async def drain():
            for _, _, fut in list(limiter.waiters):
                fut.cancel()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.gather(*pending, return_exceptions=True)
            if client is not None:
                await client.close()

        try:
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


class ApiModel(VisionModel):
    """A server-answered model behind the common interface (``generate``; ``score`` on servers
    with prompt log-probabilities; ``features`` is a one-line error). ``kind = "api"``;
    ``protocol``: openai (chat completions) | sglang (native /generate)."""

    kind = "api"

    def __init__(self, spec: str, options: LoadOptions, model_name: str, base_url: str | None,
                 api: ApiOptions | None = None, protocol: str = "openai", checkpoint: str | None = None):
        super().__init__(spec, options)
        self.checkpoint = checkpoint or model_name  # sglang: the served checkpoint whose processor renders prompts
        if protocol not in PROTOCOLS:
            raise VlmprobeError(f"unknown API protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        self.protocol = protocol
        self.model_name = model_name
        self.spec_url = base_url
        self.api = ApiOptions()
        self.configure(api or ApiOptions())
        self.journal = _Journal(None)
        self.spend = _Spend()
        self._client = None
        self._renderer = None
        self._local = threading.local()  # the batch this thread computes (the engine runs batches in threads)
        self._lock = threading.Lock()  # spend, in-flight table
        self._loop: _Loop | None = None
        self._stopping = False
        self._limiter = _Limiter(self.api.concurrency)
        self._inflight: dict[str, Future] = {}
        self._largest_prompt = 0

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
        self._limiter = _Limiter(api.concurrency)
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
        out = {"spec": self.spec, "kind": self.kind, "class": type(self).__name__, "model": self.model_name,
               "request": self.api.request_config(), "client": f"openai {_client_version()}"}
        if self.protocol != "openai":
            out.update(protocol=self.protocol, client="urllib")
        return out

    # ---- the engine's hook (VisionModel.server_session) ------------------------------------
    def server_session(self) -> "ApiModel":
        return self

    @property
    def dry_run(self) -> bool:
        return self.api.dry_run

    def attach_run(self, path: str | os.PathLike, read_only: bool = False) -> None:
        """Journal answered requests in ``path/api_requests.jsonl`` (the engine calls this)."""
        self.journal.close()
        self.journal = _Journal(Path(path) / JOURNAL, read_only=read_only)

    def batches_in_flight(self, batch_size: int) -> int:
        """How many engine batches run at once so that ``--concurrency`` (N) requests stay in
        flight continuously: the batches holding the N requests in flight, as many again
        prepared behind them (answers that arrive together free many slots at once, and a
        batch's requests exist only once the engine computed it), and the one being written.
        With one round prepared instead of two, N = 64 at 0.4 s fell to 16-40 in flight for about
        0.1 s after every round (``benchmarks/api_concurrency.py``)."""
        return 1 + 2 * -(-self.api.concurrency // max(1, batch_size))

    def results(self, records: list[dict]) -> dict | None:
        """results.json's ``api`` section (``usage_totals``)."""
        return usage_totals(records)

    def abort(self) -> None:
        """Send nothing more: requests waiting for a slot and later attempts fail at once
        (``ApiStopped``); those in flight finish (and are journaled) in ``close``."""
        self._stopping = True
        loop = self._loop
        if loop is not None:
            def cancel_waiters(limiter=self._limiter):
                for _, _, fut in list(limiter.waiters):
                    fut.cancel()
            loop.loop.call_soon_threadsafe(cancel_waiters)

    def close(self) -> None:
        """Wait for the requests in flight (they are journaled) and release the event loop."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close(self._limiter, self._client)
            self._client = None
        self._stopping = False
        self.journal.close()

    # ---- per-batch bookkeeping (the engine) ---------------------------------------------
    def start_batch(self, n: int, order: int = 0) -> None:
        """The engine announces a batch of ``n`` samples (computed by this thread; ``order``: its
        place in the run, earlier batches' requests are sent first); ``finish_batch`` returns
        their per-sample API fields in order."""
        self._local.batch = [{} for _ in range(n)]
        self._local.order = order
        self._check_budget()

    def finish_batch(self) -> list[dict]:
        """Per sample: ``usage``, ``served_model``, ``system_fingerprint``, ``image_sent`` or
        ``api_error``."""
        out, self._local.batch = getattr(self._local, "batch", None) or [], None
        return out

    def _check_budget(self) -> None:
        a, s = self.api, self.spend
        if a.max_cost is not None and self.cost() >= a.max_cost:
            raise ApiBudgetReached(f"--max-cost {a.max_cost} USD reached ({self.cost():.4f} USD spent on "
                                   f"{s.attempts} attempts); run the same command again to continue")

    def cost(self, prompt_tokens: int | None = None, completion_tokens: int | None = None) -> float:
        """USD = prompt tokens * price_input / 1e6 + completion tokens * price_output / 1e6
        (+ the bounds of failed attempts a server may have billed, for this invocation's spend)."""
        p = self.spend.prompt_tokens if prompt_tokens is None else prompt_tokens
        c = self.spend.completion_tokens if completion_tokens is None else completion_tokens
        extra = self.spend.failure_cost if prompt_tokens is None and completion_tokens is None else 0.0
        return (p * (self.api.price_input or 0) + c * (self.api.price_output or 0)) / 1e6 + extra

    def spending(self) -> dict:
        """This invocation's requests, attempts, tokens and cost (``--dry-run``: the estimates)."""
        s = self.spend
        out = {"requests_sent": s.requests, "attempts": s.attempts, "billed_failures": s.billed_failures,
               "replayed_from_journal": s.replayed, "deduplicated": s.deduplicated,
               "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
               "cost_usd": self.cost() if self.api.price_input is not None else None, "errors": dict(s.errors),
               "concurrency": {"cap": self.api.concurrency, "final": int(self._limiter.limit),
                               "lowest": self._limiter.history["min"], "cuts": self._limiter.history["cuts"]}}
        if self.api.dry_run:
            est = self.cost(s.estimated_prompt_tokens, s.estimated_completion_tokens)
            out.update(dry_run=True, requests=s.estimated_requests, estimated_prompt_tokens=s.estimated_prompt_tokens,
                       estimated_completion_tokens_max=s.estimated_completion_tokens,
                       estimated_cost_usd_max=est if self.api.price_input is not None else None)
        return out

    # ---- the interface ----------------------------------------------------------------------
    def generate(self, images: Sequence | None, prompts: Sequence[str], max_new_tokens: int = 64,
                 rendered: bool = False, **gen_kwargs) -> list[str]:
        """One request per prompt (its image first when ``images``), up to ``concurrency`` in
        flight; greedy (temperature 0), ``max_tokens = max_new_tokens``. A request that fails
        after retries answers ``""`` and marks its sample ``api_error`` in ``finish_batch``."""
        if rendered:
            raise VlmprobeError(f"{self.spec}: an API model takes questions, not chat-template-rendered prompts")
        if gen_kwargs:
            raise VlmprobeError(f"{self.spec}: unsupported generation options {sorted(gen_kwargs)}")
        reqs = [self.request_body(images[i] if images is not None else None, prompt, max_new_tokens)
                for i, prompt in enumerate(prompts)]
        results = self._run_requests(reqs)
        return [r.get("text", "") for r in results]

    def request_body(self, image, prompt: str, max_new_tokens: int, assistant: str | None = None,
                     likelihood: bool = False) -> tuple[dict, list[int] | None, str, str]:
        """(request body, [width, height] of the image sent or None, replay key, legacy key).
        ``assistant``: a final assistant message (the answer so far, continued); ``likelihood``:
        ask for the prompt's log-probabilities (vLLM's ``prompt_logprobs``; SGLang's
        ``return_logprob``). The replay key hashes the body with the image replaced by its
        ``pixel_digest`` and the parameters that encode it; the legacy key hashes the body as
        sent (older journals)."""
        if self.protocol == "sglang":
            return self._sglang_body(image, prompt, max_new_tokens, assistant, likelihood)
        content = [{"type": "text", "text": prompt}]
        size, stand_in = None, None
        if image is not None:
            url, size = encode_image(image, self.api.image_max_side, self.api.image_format)
            content.insert(0, {"type": "image_url", "image_url": {"url": url, "detail": self.api.image_detail}})
            stand_in = self._image_stand_in(image)
        messages = [{"role": "user", "content": content}]
        if assistant is not None:
            messages.append({"role": "assistant", "content": assistant})
        body = {"model": self.model_name, "messages": messages, "temperature": 0, "max_tokens": int(max_new_tokens)}
        if self.api.seed is not None:
            body["seed"] = self.api.seed
        if self.api.add_special_tokens:
            body["add_special_tokens"] = True
        if likelihood:
            # vLLM: the prompt's own log-probabilities; the prompt tokenized as a local processor
            # does (special tokens added, as transformers' processors do by default); an
            # assistant turn continued (no end-of-turn), or else the generation prompt opened
            body.update(prompt_logprobs=0, add_special_tokens=True, continue_final_message=assistant is not None,
                        add_generation_prompt=assistant is None)
        return body, size, self._key(body, stand_in, lambda b: b["messages"][0]["content"][0]), request_key(body)

    def _image_stand_in(self, image) -> dict:
        return {"pixels_sha256": pixel_digest(image), "max_side": self.api.image_max_side,
                "resampling": RESAMPLING, "format": self.api.image_format}

    @staticmethod
    def _key(body: dict, stand_in: dict | None, image_part) -> str:
        if stand_in is None:
            return request_key(body)
        keyed = json.loads(json.dumps(body))
        part = image_part(keyed)
        if isinstance(part, dict) and "image_url" in part:
            part["image_url"] = {**part["image_url"], "url": stand_in}
        else:
            keyed["image_data"] = stand_in
        return request_key(keyed)

    def check_scoring(self, scoring: str) -> None:
        """Likelihood needs a server that returns the log-probabilities of given prompt tokens
        (vLLM's ``prompt_logprobs``, SGLang's /generate); the hosted APIs do not: one-line error."""
        host = urlparse(self.base_url).hostname or ""
        if host in NO_PROMPT_LOGPROBS:
            raise VlmprobeError(f"{self.spec}: likelihood needs the log-probabilities of given prompt tokens, which "
                                f"{host} does not return (vLLM's prompt_logprobs does); use --method generate")

    def score(self, images: Sequence, candidates, prompt: str = PAPER_QUESTION, answer_prefix: str | None = None,
              reduction: str = "sum", include_eos: bool = False, **ignored) -> torch.Tensor:
        """log p(candidate | image, prompt, answer_prefix) [N, K] (``tokens``: [N, K, L], NaN-padded).

        openai (vLLM's ``prompt_logprobs``): per image one request for the prompt before the
        candidate -- the user turn with the chat template's generation prompt
        (``add_generation_prompt``, no assistant message) or, with an ``answer_prefix``, the
        assistant turn continued (``continue_final_message``) -- giving its length P0, and one
        per candidate with the assistant turn ``answer_prefix + " " + candidate`` continued; the
        candidate's tokens are the prompt positions from P0 on. (An empty assistant message
        instead of the generation prompt renders differently: transformers keeps the template's
        trailing space or, in older versions, its end-of-turn tokens.)

        sglang (native /generate): one request per candidate, the prompt rendered here exactly
        as the local engine renders it; the candidate's token count comes from MODEL's own
        tokenizer, its log-probabilities from ``meta_info.input_token_logprobs``.

        ``reduction``: sum | mean | tokens. ``ignored``: the local engine's options."""
        self.check_scoring("fast")
        if include_eos:
            raise VlmprobeError(f"{self.spec}: --include-eos is not available over the API")
        if reduction not in ("sum", "mean", "tokens"):
            raise VlmprobeError(f"unknown reduction {reduction!r}; choose from sum, mean, tokens")
        n = len(images)
        per_image = [list(c) for c in candidates] if candidates and isinstance(candidates[0], (list, tuple)) \
            else [list(candidates)] * n
        reqs, owners, where = [], [], []
        first = 0 if self.protocol == "sglang" else -1  # sglang needs no request for the prompt alone
        for i in range(n):
            for k in range(first, len(per_image[i])):
                if k < 0:
                    reply = answer_prefix or None
                else:
                    reply = f"{answer_prefix} {per_image[i][k]}" if answer_prefix else per_image[i][k]
                reqs.append(self.request_body(images[i], prompt, 1, assistant=reply, likelihood=True))
                owners.append(i)
                where.append((i, k))
        results = self._run_requests(reqs, owners, strict=True)
        width = max((len(c) for c in per_image), default=0)
        tokens: list[list[list[float]]] = [[[] for _ in range(width)] for _ in range(n)]
        prefix_len = {i: r.get("n_prompt") for (i, k), r in zip(where, results) if k < 0}
        for (i, k), r, req in zip(where, results, reqs):
            if k < 0 or "tail" not in r:
                continue  # a failed request: the sample is an api_error (NaN row)
            if self.protocol == "sglang":
                t = self._candidate_tokens(req[0], per_image[i][k])
            elif prefix_len.get(i) is None:
                continue
            else:
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

    # ---- SGLang's native /generate ---------------------------------------------------------
    def renderer(self):
        """MODEL's processor and family (``models.vlm.PromptRenderer``): the prompt of an
        ``sglang:`` request is rendered here, as a local run renders it."""
        if self._renderer is None:
            from .vlm import PromptRenderer

            self._renderer = PromptRenderer.load(self.checkpoint, self.options)
        return self._renderer

    def _sglang_body(self, image, prompt: str, max_new_tokens: int, assistant: str | None, likelihood: bool):
        """SGLang's ``GenerateReqInput``: ``text`` (the rendered prompt, then ``assistant``),
        ``image_data`` (a data URL), ``sampling_params`` (greedy, ``max_new_tokens``) and, for
        likelihood, ``return_logprob`` with ``logprob_start_len`` 0 (every prompt position)."""
        text = self.renderer().render(prompt, image=image is not None, answer_prefix=assistant)
        body = {"text": text, "sampling_params": {"max_new_tokens": int(max_new_tokens), "temperature": 0}}
        size, stand_in = None, None
        if image is not None:
            body["image_data"], size = encode_image(image, self.api.image_max_side, self.api.image_format)
            stand_in = self._image_stand_in(image)
        if likelihood:
            body.update(return_logprob=True, logprob_start_len=0)
        return body, size, self._key(body, stand_in, lambda b: None), request_key(body)

    def _candidate_tokens(self, body: dict, candidate: str) -> int:
        """Tokens ``candidate`` adds to its rendered prompt (MODEL's tokenizer, text only: the
        image placeholder counts the same in both)."""
        tok = self.renderer().tokenizer
        full = body["text"]
        before = full[: len(full) - len(candidate)].rstrip(" ") if full.endswith(candidate) else None
        if before is None:
            raise VlmprobeError(f"{self.spec}: the rendered prompt does not end in candidate {candidate!r}")
        return len(tok(full).input_ids) - len(tok(before).input_ids)

    def _send_sglang(self, body: dict, key: str) -> dict:
        """One POST to SGLang's ``/generate`` (standard library HTTP; the key, when its variable
        is set, as a bearer token) -> the journal entry, or ``_Failed``."""
        import urllib.error
        import urllib.request

        token = os.environ.get(self.api.key_env)
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        req = urllib.request.Request(self.base_url.rstrip("/") + "/generate", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
        status, raw, response = None, b"", None
        try:
            with urllib.request.urlopen(req, timeout=self.api.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            status, response = e.code, e
            raw = e.read() or b""
        except (OSError, ValueError) as e:  # refused, dropped, timed out (URLError, socket.timeout, ...)
            raise _Failed(f"{type(e).__name__}: {self._scrub(_first_line(e))}", retry=True, billed=True) from None
        if status in (401, 403):
            raise _Failed(f"HTTP {status}", retry=False, billed=False, status=status, refused=True)
        if status is not None:
            text = raw.decode("utf-8", "replace").strip()
            _status_failure(status, self._scrub(text.splitlines()[0] if text else ""), response)
        try:
            data = json.loads(raw)
            meta = data["meta_info"]
            entry = {"key": key, "text": (data.get("text") or "").strip(), "model": self.model_name,
                     "system_fingerprint": None,
                     "usage": {"prompt_tokens": int(meta.get("prompt_tokens") or 0),
                               "completion_tokens": int(meta.get("completion_tokens") or 0)}}
        except (ValueError, KeyError, TypeError) as e:
            raise _Failed(f"malformed answer: {type(e).__name__}", retry=True, billed=True) from None
        if body.get("return_logprob"):
            lps = meta.get("input_token_logprobs")
            if not isinstance(lps, list):
                raise VlmprobeError(f"{self.base_url} returned no input_token_logprobs: likelihood needs SGLang's "
                                    "/generate with return_logprob; use --method generate")
            tail = [float(x[0]) for x in lps[-TAIL:] if x and x[0] is not None]
            entry.update(n_prompt=entry["usage"]["prompt_tokens"], tail=tail)
        return entry

    # ---- requests ---------------------------------------------------------------------------
    def _run_requests(self, reqs: list[tuple], owners: list[int] | None = None, strict: bool = False) -> list[dict]:
        """Answers of ``reqs`` (``request_body`` tuples): the journal's, else one request per
        distinct key (identical requests share it, also with requests in flight for other
        batches), queued on the model's pool (``concurrency`` in flight); ``owners[j]``: the
        batch sample request j belongs to (default j); ``strict``: a request the server rejects
        (4xx other than 408/429) stops the run instead of failing its sample."""
        owners = list(range(len(reqs))) if owners is None else owners
        answers: dict[str, dict] = {}
        pending: dict[str, Future] = {}
        for body, size, key, legacy in reqs:
            if key in answers or key in pending:
                with self._lock:
                    self.spend.deduplicated += 1
                continue
            entry = self.journal.get(key, legacy)
            if entry is not None:
                answers[key] = entry
                with self._lock:
                    self.spend.replayed += 1
            elif self.api.dry_run:
                self._estimate(body, size)
                answers[key] = {}
            else:
                pending[key] = self._submit(body, size, key, strict)
        error = None
        if pending:
            futures_wait(list(pending.values()))  # one wake-up for the batch, not one per answer
        for key, fut in pending.items():
            try:
                answers[key] = fut.result()
            except BaseException as e:  # noqa: BLE001 - raised after every answer of this batch arrived
                error = error or e
        if error is not None:
            raise error
        return [self._annotate(owners[j], answers[key], size) for j, (_, size, key, _) in enumerate(reqs)]

    def _submit(self, body: dict, size, key: str, strict: bool) -> Future:
        """The future answer of ``key``: the one in flight (another batch asked first), or a new one."""
        with self._lock:
            fut = self._inflight.get(key)
            if fut is not None:
                self.spend.deduplicated += 1
                return fut
            if self._loop is None:
                self._loop = _Loop()
                self._limiter = _Limiter(self.api.concurrency)
            fut = self._loop.submit(self._request(body, key, size, strict, getattr(self._local, "order", 0)))
            self._inflight[key] = fut
        fut.add_done_callback(lambda _f, k=key: self._forget(k))
        return fut

    def _forget(self, key: str) -> None:
        with self._lock:
            self._inflight.pop(key, None)

    def _annotate(self, i: int, result: dict, size=None) -> dict:
        """Record a request's API fields into the current batch's sample ``i`` (summing usage
        when a sample makes several requests; ``image_sent``: [width, height] of its image)."""
        batch = getattr(self._local, "batch", None)
        if batch is not None and i < len(batch):
            slot = batch[i]
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

    def _prompt_estimate(self, body: dict, size) -> int:
        if self.protocol == "sglang":
            text = body["text"]
        else:
            text = "".join(p.get("text", "") for m in body["messages"]
                           for p in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
                           if p.get("type", "text") == "text")
        return len(text) // 4 + 8 + (image_tokens(size, self.api.image_detail) if size else 0)

    def _max_tokens(self, body: dict) -> int:
        return int(body["sampling_params"]["max_new_tokens"] if self.protocol == "sglang" else body["max_tokens"])

    def _estimate(self, body: dict, size) -> None:
        s = self.spend
        with self._lock:
            s.estimated_requests += 1
            s.estimated_prompt_tokens += self._prompt_estimate(body, size)
            s.estimated_completion_tokens += self._max_tokens(body)

    def _reserve(self, body: dict, size) -> float:
        """Count one attempt against the budgets before it is sent (ApiBudgetReached if it
        would pass one); returns its cost bound, held until ``_settle``."""
        a, s = self.api, self.spend
        bound = 0.0
        if a.price_input is not None and a.price_output is not None:
            prompt = self._largest_prompt or self._prompt_estimate(body, size)
            bound = (prompt * a.price_input + self._max_tokens(body) * a.price_output) / 1e6
        with self._lock:
            if a.max_requests is not None and s.attempts + 1 > a.max_requests:
                raise ApiBudgetReached(f"--max-requests {a.max_requests} reached ({s.attempts} attempts sent); run the "
                                       "same command again to continue")
            if a.max_cost is not None and self.cost() + s.reserved + bound > a.max_cost:
                raise ApiBudgetReached(f"--max-cost {a.max_cost} USD reached ({self.cost():.4f} USD spent, "
                                       f"{s.reserved:.4f} in flight; the next attempt may cost {bound:.4f}); run the "
                                       "same command again to continue")
            s.attempts += 1
            s.reserved += bound
        return bound

    def _settle(self, bound: float, usage: dict | None = None, billed: bool = False) -> None:
        s = self.spend
        with self._lock:
            s.reserved -= bound
            if usage is not None:
                s.prompt_tokens += usage["prompt_tokens"]
                s.completion_tokens += usage["completion_tokens"]
                self._largest_prompt = max(self._largest_prompt, usage["prompt_tokens"])
            elif billed:
                s.billed_failures += 1
                s.failure_cost += bound

    def client(self):
        """The openai ``AsyncOpenAI`` client (made on the model's event loop, where it is used)."""
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
            self._client = openai.AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0,
                                              timeout=self.api.timeout)
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

    async def _request(self, body: dict, key: str, size=None, strict: bool = False, priority=0) -> dict:
        """One request with retries (a coroutine on the model's loop; each attempt counted
        against the budgets and holding one of the limiter's slots); the answer (journaled) or
        ``{"error": message}``. With prompt log-probabilities asked for, the answer keeps the
        prompt length ``n_prompt`` and the last ``TAIL`` prompt-token log-probabilities (``tail``)."""
        import asyncio

        if self.protocol == "openai":
            self.client()  # the key check happens before anything is counted
        last, stop = "", None
        for attempt in range(self.api.max_retries + 1):
            if self._stopping:
                raise ApiStopped("the run stopped before this request was sent")
            await self._limiter.acquire(priority)
            try:
                bound = self._reserve(body, size)
            except BaseException:
                self._limiter.release()
                raise
            if attempt == 0:
                with self._lock:
                    self.spend.requests += 1
            t0 = time.monotonic()
            try:
                entry = await self._send(body, key)
            except _Failed as f:
                self._limiter.release("throttled" if f.status == 429 else None)
                self._settle(bound, billed=f.billed)
                if f.refused:
                    stop = ApiKeyRefused(f"{self.base_url} refused the API key in ${self.api.key_env} (HTTP "
                                         f"{f.status}); check the key")
                    break
                last = f.message
                with self._lock:
                    kind = last.split(":")[0]
                    self.spend.errors[kind] = self.spend.errors.get(kind, 0) + 1
                if not f.retry:
                    if strict:
                        stop = VlmprobeError(f"{self.base_url} rejected a likelihood request ({last}); likelihood "
                                             "needs vLLM's prompt_logprobs or SGLang's /generate")
                    break  # a request the server will not accept: retrying does not help
                if attempt < self.api.max_retries:
                    delay = min(self.api.backoff_cap, self.api.backoff * 2 ** attempt)
                    await asyncio.sleep(f.wait if f.wait is not None else delay * (0.5 + random.random() / 2))
                continue
            except BaseException:
                self._limiter.release()
                self._settle(bound, billed=True)
                raise
            self._limiter.release("ok", time.monotonic() - t0)
            self._settle(bound, usage=entry["usage"])
            await asyncio.get_running_loop().run_in_executor(None, self.journal.add, entry)  # fsynced
            return entry
        if stop is not None:  # raised here, outside the handler: no chained client exception (it may quote the key)
            raise stop
        return {"error": last}

    async def _send(self, body: dict, key: str) -> dict:
        """One HTTP attempt -> the journal entry, or ``_Failed``."""
        import asyncio

        if self.protocol == "sglang":
            return await asyncio.get_running_loop().run_in_executor(None, self._send_sglang, body, key)
        import openai

        client = self.client()
        try:
            # the client's generic POST (its documented way to send a body as is): the body is
            # already plain JSON, so the typed ``chat.completions.create`` adds only CPU (its
            # parameter transform and response model), about 1 ms per request on the event loop
            # that all requests in flight share
            data = await client.post("/chat/completions", body=body, cast_to=object)
            choices = data.get("choices") if isinstance(data, dict) else None
            if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
                raise ValueError("response has no choices[0].message")
            message = choices[0]["message"]
            usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
            entry = {"key": key, "text": (message.get("content") or "").strip(), "model": data.get("model"),
                     "system_fingerprint": data.get("system_fingerprint"),
                     "usage": {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                               "completion_tokens": int(usage.get("completion_tokens") or 0)}}
            if "prompt_logprobs" in body:
                entry.update(self._prompt_logprobs(data))
            return entry
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            status = e.status_code
        except openai.APIStatusError as e:
            _status_failure(e.status_code, self._scrub(_first_line(e)), e.response)
        except (openai.APIConnectionError, openai.APIResponseValidationError, ValueError) as e:
            # timeouts (APITimeoutError), dropped connections, malformed JSON: the server may have billed them
            raise _Failed(f"{type(e).__name__}: {self._scrub(_first_line(e))}", retry=True, billed=True) from None
        raise _Failed(f"HTTP {status}", retry=False, billed=False, status=status, refused=True)

    def _prompt_logprobs(self, data: dict) -> dict:
        """vLLM's top-level ``prompt_logprobs``: one entry per prompt token (the first None), each
        ``{token_id: {"logprob", "rank", "decoded_token"}}`` holding the prompt's own token
        (``prompt_logprobs=0``: only it) -> ``{"n_prompt", "tail"}``."""
        plp = data.get("prompt_logprobs")
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


def _status_failure(status: int, text: str, response) -> None:
    """Raise the ``_Failed`` of an HTTP error status: 408/429/5xx are retried (5xx may have been
    billed), other 4xx are final (not billed)."""
    raise _Failed(f"HTTP {status}: {text}", retry=status in (408, 429) or status >= 500, billed=status >= 500,
                  status=status, wait=_retry_after(response))


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


def _client_version(package: str = "openai") -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001 - not installed: recorded as None
        return None


def load_api_model(spec: str, options: LoadOptions, resolve=None) -> ApiModel:
    """``openai:MODEL[@URL]`` / ``sglang:MODEL@URL`` -> ApiModel (no request is sent until it is
    used); ``resolve``: the registry's alias resolution (``toy:vlm`` -> ``hf:DIR``) for sglang's MODEL."""
    name, url = split_spec(spec)
    if not name:
        raise ModelLoadError(f"model spec {spec!r} names no model")
    protocol = spec.split(":", 1)[0]
    if protocol == "sglang" and not url:
        raise ModelLoadError(f"model spec {spec!r}: SGLang needs its server, sglang:MODEL@URL "
                             "(e.g. sglang:llava-hf/llava-1.5-7b-hf@http://127.0.0.1:30000)")
    if url:
        check_base_url(url)
    checkpoint = resolve(name) if resolve is not None and protocol == "sglang" else None
    return ApiModel(spec, options, name, url, protocol=protocol, checkpoint=checkpoint)


API_DESTS = ("api_base", "api_key_env", "concurrency", "image_detail", "image_max_side", "image_format", "api_seed",
             "api_timeout", "api_retries", "max_requests", "max_cost", "price_input", "price_output", "dry_run",
             "add_special_tokens")


def add_api_arguments(parser) -> None:
    """The ``api`` argument group (``openai:`` / ``sglang:`` models). Every default is None (or
    False) here, so a flag given to a local model is refused (``api_flags_given``)."""
    d = ApiOptions()
    g = parser.add_argument_group("API models (openai:MODEL[@URL], sglang:MODEL@URL)")
    g.add_argument("--api-base", default=None, metavar="URL",
                   help="OpenAI-compatible endpoint (default: @URL in the spec, $OPENAI_BASE_URL, or OpenAI's); "
                        "plain http only for loopback addresses")
    g.add_argument("--api-key-env", default=None, metavar="VAR",
                   help=f"environment variable holding the key (default {d.key_env})")
    g.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help=f"most requests in flight, kept full across batches and lowered on 429s / slow answers "
                        f"(default {d.concurrency})")
    g.add_argument("--image-detail", default=None, choices=IMAGE_DETAILS,
                   help=f"image detail requested (default {d.image_detail})")
    g.add_argument("--image-max-side", type=int, default=None, metavar="PX",
                   help=f"downscale images so the longer side is at most PX (0: as stored; default {d.image_max_side})")
    g.add_argument("--image-format", default=None, choices=IMAGE_FORMATS,
                   help=f"data URL format (png is lossless; default {d.image_format})")
    g.add_argument("--api-seed", type=_seed, default=None, metavar="N|none",
                   help=f"`seed` sent with each request (none: not sent, for servers that reject it; default {d.seed})")
    g.add_argument("--api-timeout", type=float, default=None, metavar="S",
                   help=f"seconds per request (default {d.timeout:g})")
    g.add_argument("--api-retries", type=int, default=None, metavar="N",
                   help=f"retries per request (429, 5xx, timeouts, dropped connections, malformed answers; "
                        f"default {d.max_retries})")
    g.add_argument("--max-requests", type=int, default=None, metavar="N",
                   help="hard cap on the HTTP attempts this invocation sends: every attempt counts (first tries, "
                        "retries, failed ones), checked before each one; at the cap the run stops, resumably")
    g.add_argument("--max-cost", type=float, default=None, metavar="USD",
                   help="hard cap on this invocation's spend (needs --price-input/--price-output): the usage of "
                        "answered requests plus a bound for each failed attempt a server may bill (5xx, timeout, "
                        "dropped, malformed); an attempt is sent only if spent + in flight + its bound stay within")
    g.add_argument("--price-input", type=float, default=None, metavar="USD", help="USD per million prompt tokens")
    g.add_argument("--price-output", type=float, default=None, metavar="USD",
                   help="USD per million completion tokens")
    g.add_argument("--dry-run", action="store_true", default=None,
                   help="print the number of requests and the estimated cost; send nothing")
    g.add_argument("--add-special-tokens", action="store_true", default=None,
                   help="vLLM: tokenize the rendered prompt with the tokenizer's special tokens (BOS), as transformers' "
                        "processors -- and so a local run -- do (vLLM's default leaves them to the chat template); "
                        "likelihood requests always send it")


def api_flags_given(args) -> list[str]:
    """The API flags given on the command line (``--concurrency`` ...)."""
    return [f"--{d.replace('_', '-')}" for d in API_DESTS if getattr(args, d, None) not in (None, False)]


def api_options_from_args(args) -> ApiOptions:
    d = ApiOptions()

    def pick(name, default):
        value = getattr(args, name, None)
        return default if value is None else value

    return ApiOptions(base_url=args.api_base, key_env=pick("api_key_env", d.key_env),
                      concurrency=pick("concurrency", d.concurrency), image_detail=pick("image_detail", d.image_detail),
                      image_max_side=pick("image_max_side", d.image_max_side),
                      image_format=pick("image_format", d.image_format), timeout=pick("api_timeout", d.timeout),
                      max_retries=pick("api_retries", d.max_retries), max_requests=args.max_requests,
                      max_cost=args.max_cost, price_input=args.price_input, price_output=args.price_output,
                      dry_run=bool(args.dry_run), add_special_tokens=bool(args.add_special_tokens),
                      seed=d.seed if args.api_seed is None else _seed_value(args.api_seed))


_NO_SEED = "none"


def _seed(text: str):
    return _NO_SEED if text.lower() == "none" else int(text)


def _seed_value(value):
    return None if value == _NO_SEED else value


__all__ = ["ApiModel", "ApiOptions", "ApiKeyRefused", "ApiBudgetReached", "load_api_model", "usage_totals",
           "add_api_arguments", "api_options_from_args", "api_flags_given"]
