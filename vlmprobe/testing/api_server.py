"""A real OpenAI-compatible chat-completions server (and SGLang's native ``/generate``) on
127.0.0.1 that answers with a local VLM: for tests of ``openai:`` / ``sglang:`` models, and for
users checking their setup (flags, retries, budgets, resume) without paying for a request.

    python -m vlmprobe.testing.api_server --model toy:vlm --port 8011 [--fault-rate 0.2]
    vlmprobe eval --model openai:toy-vlm@http://127.0.0.1:8011/v1 --method generate ...
    vlmprobe eval --model sglang:toy:vlm@http://127.0.0.1:8011 --method likelihood ...

``POST /v1/chat/completions`` renders every request as vLLM's OpenAI server does
(``render_chat``): the messages parsed into the "openai" content format (a string content
becomes one text part, an ``image_url`` part becomes ``{"type": "image"}``), then the model's
own chat template through ``apply_chat_template(tokenize=False, add_generation_prompt=...,
continue_final_message=...)`` with vLLM's defaults (True / False; both True is a 400 with vLLM's
message), then tokenized with the request's ``add_special_tokens`` (vLLM's default False) by
the model's processor with the image. It answers greedily with up to ``max_tokens`` new tokens
in the OpenAI response shape (``choices[0].message.content``, ``usage``, ``model``,
``system_fingerprint``), or, with ``prompt_logprobs: 0``, vLLM's ``prompt_logprobs`` from the
model's forward pass over that prompt (``ApiTestServer.prompt_logprobs``).

``POST /generate`` speaks SGLang's native API (``generate_native``): ``text`` (already rendered),
``image_data`` (a data URL or base64), ``sampling_params`` (``max_new_tokens``), and with
``return_logprob`` the prompt's ``meta_info.input_token_logprobs`` (``[logprob, token_id,
None]`` from ``logprob_start_len`` on, the first prompt token's logprob None), tokenized as
SGLang does (the tokenizer's special tokens added). ``GET /v1/models`` lists the model;
``GET /stats`` returns the per-sample request counts and the most requests seen in flight at
once (``max_active``).

``latency``: seconds from a request's arrival to its answer (a remote server's delay; the
server's own work counts within it, and an answer whose work took longer is sent when ready);
``cache``: answers of a request body seen before are replayed (the model is not run again), so
a benchmark measures the client against a server that is not itself the bottleneck.

Requests are counted per sample: the key is the SHA-256 of the request's messages (image and
question), so a client that asks twice for the same sample is visible (``counts``).

Faults (``fault_rate``, default 0): the n-th request for a sample fails when
``sha256(seed, key, n) / 2^256 < fault_rate`` (depends only on seed, sample and attempt, not on
thread timing, so the same requests fail in every run); the failures take the kinds ``FAULTS``
in turn, so every kind occurs once five requests failed: ``429`` (with ``Retry-After: 1``),
``500``, ``slow`` (answers after ``slow_seconds``, beyond a client's timeout), ``malformed`` (a
200 whose body is not JSON), ``drop`` (the connection is closed without an answer).

``api_key``: requests must carry ``Authorization: Bearer <api_key>``; others get a 401 whose
message echoes the key received (as OpenAI's does), so clients' scrubbing is tested.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "500", "slow", "malformed", "drop")


def sample_key(messages) -> str:
    """SHA-256 of a request's messages (canonical JSON): one key per sample and prompt."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def fails(seed: int, key: str, attempt: int, rate: float) -> bool:
    """Whether the ``attempt``-th request (0-based) for sample ``key`` fails."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{key}:{attempt}".encode()).digest()
    return int.from_bytes(digest, "big") / 2 ** 256 < rate


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # listen backlog: many clients connecting at once are not dropped (1 s SYN retries)


class ApiTestServer:
    """``with ApiTestServer(model) as server: server.base_url``; ``counts`` maps sample keys to
    the number of requests received for them (faulted ones included)."""

    def __init__(self, model, host: str = "127.0.0.1", port: int = 0, model_name: str = "toy-vlm",
                 api_key: str | None = None, fault_rate: float = 0.0, seed: int = 0, slow_seconds: float = 3.0,
                 latency: float = 0.0, prompt_logprobs: bool = True, cache: bool = False):
        self.model, self.model_name, self.api_key = model, model_name, api_key
        self.cache: dict[str, dict] | None = {} if cache else None  # answers by request body (benchmarks)
        self.active = self.max_active = 0  # requests being answered now / at most
        self.latency = latency  # seconds from a request's arrival to its answer (at least): a remote server's delay
        self.serves_prompt_logprobs = prompt_logprobs  # False: ignore the parameter, like a server without it
        self.fault_rate, self.seed, self.slow_seconds = fault_rate, seed, slow_seconds
        self.counts: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.lock = threading.Lock()  # counts
        self.model_lock = threading.Lock()  # one generation at a time
        self.httpd = _Server((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "ApiTestServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "ApiTestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> dict:
        with self.lock:
            return {"requests": sum(self.counts.values()), "samples": len(self.counts), "counts": dict(self.counts),
                    "faults": dict(self.faults), "max_active": self.max_active}

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.faults.clear()
            self.max_active = self.active

    # ---- answering ---------------------------------------------------------------------------
    def answer(self, body: dict) -> dict:
        """The chat-completion response for a parsed request body (``render_chat``)."""
        import torch

        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
        if getattr(self.model, "processor", None) is None:
            return self._answer_through_interface(body, max_tokens)
        text, images, add_special = render_chat(self.model.processor, body)
        with self.model_lock, torch.no_grad():
            batch = self.model.encode(images or None, [text], add_special_tokens=add_special)
            ids = batch["input_ids"][0]
            if body.get("prompt_logprobs") is not None and self.serves_prompt_logprobs:
                if int(body["prompt_logprobs"]) != 0:
                    raise ValueError("only prompt_logprobs=0 is served")
                extra = {"prompt_logprobs": [None] + [{str(t): e} for t, e in self._prompt_scores(batch)]}
                out, completion = "", 0
            else:
                out, completion = self._greedy(batch, max_tokens)
                extra = {}
        return {"id": f"chatcmpl-{hashlib.sha256(text.encode()).hexdigest()[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model_name, "system_fingerprint": "fp_vlmprobe_test",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out},
                             "finish_reason": "length" if extra else "stop"}],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": completion,
                          "total_tokens": len(ids) + completion}, **extra}

    def _answer_through_interface(self, body: dict, max_tokens: int) -> dict:
        """Generation for a model with no transformers processor to render chats with (a scripted
        text LM in the tests, any ``VisionModel`` with ``render`` / ``generate`` / ``tokenizer``):
        the last user turn's text and image through the model's own interface. No
        ``prompt_logprobs`` here: those need the real chat template."""
        if body.get("prompt_logprobs") is not None and self.serves_prompt_logprobs:
            raise ValueError("prompt_logprobs needs a model with a processor and chat template")
        user = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
        if not user:
            raise ValueError("messages must hold a user turn")
        content = user[-1].get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        text = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
        images = [_decode_image((p.get("image_url") or {}).get("url", "")) for p in parts if p.get("type") == "image_url"]
        with self.model_lock:
            out = self.model.generate(images or None, [text], max_new_tokens=max_tokens)[0]
            tok = self.model.tokenizer
            prompt_tokens = len(tok(self.model.render(text, image=bool(images))).input_ids)
            completion = len(tok(out, add_special_tokens=False).input_ids)
        return {"id": f"chatcmpl-{hashlib.sha256(text.encode()).hexdigest()[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model_name, "system_fingerprint": "fp_vlmprobe_test",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                          "total_tokens": prompt_tokens + completion}}

    def generate_native(self, body: dict) -> dict:
        """SGLang's ``/generate`` answer for one request (see the module docstring)."""
        import torch

        text = body.get("text")
        if not isinstance(text, str):
            raise ValueError("text must be a string (one prompt per request)")
        image = body.get("image_data")
        images = [_decode_image(image if image.startswith("data:") else "data:image/png;base64," + image)] \
            if isinstance(image, str) else None
        params = body.get("sampling_params") or {}
        max_new = int(params.get("max_new_tokens", 16))
        with self.model_lock, torch.no_grad():
            batch = self.model.encode(images, [text])
            ids = batch["input_ids"][0]
            meta = {"id": hashlib.sha256(text.encode()).hexdigest()[:12], "prompt_tokens": len(ids),
                    "completion_tokens": 0, "finish_reason": {"type": "length", "length": max_new}}
            if body.get("return_logprob"):
                start = int(body.get("logprob_start_len") if body.get("logprob_start_len") is not None else -1)
                entries = [[None, int(ids[0]), None]] + [[e["logprob"], t, None] for t, e in self._prompt_scores(batch)]
                meta["input_token_logprobs"] = entries[start:] if start >= 0 else []
                out = ""
            else:
                out, meta["completion_tokens"] = self._greedy(batch, max_new)
        return {"text": out, "meta_info": meta}

    def _greedy(self, batch, max_tokens: int) -> tuple[str, int]:
        vlm = self.model
        tok = vlm.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        out = vlm.model.generate(**batch, max_new_tokens=max_tokens, do_sample=False, num_beams=1, pad_token_id=pad)
        new = out[0, batch["input_ids"].shape[1]:]
        text = tok.decode(new, skip_special_tokens=True).strip()
        return text, len(tok(text, add_special_tokens=False).input_ids)

    def _prompt_scores(self, batch) -> list[tuple[int, dict]]:
        """(token id, {"logprob", "rank", "decoded_token"}) of prompt tokens 1.. from one forward
        pass: log p(id_t | ids_<t)."""
        import torch

        logits = self.model.model(**batch).logits[0].float()
        ids = batch["input_ids"][0]
        lp = torch.log_softmax(logits, -1)
        chosen = lp[:-1].gather(-1, ids[1:, None])[:, 0]
        ranks = (lp[:-1] > chosen[:, None]).sum(-1) + 1
        tok = self.model.tokenizer
        return [(int(ids[t]), {"logprob": float(chosen[t - 1]), "rank": int(ranks[t - 1]),
                               "decoded_token": tok.decode([int(ids[t])])}) for t in range(1, len(ids))]


def render_chat(processor, body: dict) -> tuple[str, list, bool]:
    """vLLM's rendering of a chat request: (prompt text, images in order, add_special_tokens).
    Messages are parsed into the "openai" content format (``vllm.entrypoints.chat_utils``: a
    string content becomes ``[{"type": "text", "text": ...}]``, an ``image_url`` part
    ``{"type": "image"}``); the chat template is applied with ``tokenize=False``,
    ``add_generation_prompt`` (default True) and ``continue_final_message`` (default False),
    which may not both be True (vLLM's ``check_generation_prompt``); ``add_special_tokens``
    defaults to False (the template is expected to carry them). ValueError if malformed."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    add_generation_prompt = bool(body.get("add_generation_prompt", True))
    continue_final = bool(body.get("continue_final_message", False))
    if add_generation_prompt and continue_final:
        raise ValueError("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
    conversation, images = [], []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError("each message needs a role")
        content = m.get("content")
        parts = [] if content is None else [{"type": "text", "text": content}] if isinstance(content, str) else content
        out = []
        for part in parts:
            if part.get("type") == "text":
                out.append({"type": "text", "text": part.get("text", "")})
            elif part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                if not url.startswith("data:image/"):
                    raise ValueError("only data: image URLs are supported")
                images.append(_decode_image(url))
                out.append({"type": "image"})
            else:
                raise ValueError(f"unsupported content part {part.get('type')!r}")
        conversation.append({"role": m["role"], "content": out})
    if len(images) > 1:
        raise ValueError("at most one image per request")
    text = processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         continue_final_message=continue_final)
    return text, images, bool(body.get("add_special_tokens", False))


def _decode_image(url: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def _handler(server: ApiTestServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stall per answer)

        def log_message(self, format, *args):  # quiet
            pass

        def _json(self, status: int, payload, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str, headers: dict | None = None) -> None:
            self._json(status, {"error": {"message": message, "type": kind, "code": None}}, headers)

        def do_GET(self):
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
            elif self.path.rstrip("/").endswith("/stats"):
                self._json(200, server.stats())
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self):
            self.arrived = time.monotonic()  # the headers were read: ``latency`` counts from here
            with server.lock:
                server.active += 1
                server.max_active = max(server.max_active, server.active)
            try:
                self._post()
            finally:
                with server.lock:
                    server.active -= 1

        def _post(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            route = self.path.rstrip("/")
            native = route == "/generate"
            if not native and not route.endswith("/chat/completions"):
                return self._error(404, f"no route {self.path}", "not_found")
            auth = self.headers.get("Authorization", "")
            if server.api_key is not None and auth != f"Bearer {server.api_key}":
                got = auth.removeprefix("Bearer ")
                return self._error(401, f"Incorrect API key provided: {got}.", "invalid_request_error")
            try:
                body = json.loads(raw)
                key = sample_key([body.get("text"), body.get("image_data")] if native else body.get("messages"))
            except (ValueError, AttributeError) as e:
                return self._error(400, f"bad request: {e}", "invalid_request_error")
            with server.lock:
                attempt = server.counts.get(key, 0)
                server.counts[key] = attempt + 1
                fault = None
                if fails(server.seed, key, attempt, server.fault_rate):
                    fault = FAULTS[sum(server.faults.values()) % len(FAULTS)]
                    server.faults[fault] = server.faults.get(fault, 0) + 1
            if fault == "429":
                return self._error(429, "rate limit reached", "rate_limit_exceeded", {"Retry-After": "1"})
            if fault == "500":
                return self._error(500, "internal error", "server_error")
            if fault == "drop":
                self.close_connection = True
                return
            if fault == "malformed":
                data = b'{"id": "chatcmpl-broken", "choices": [{"message": '
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            digest = hashlib.sha256(raw).hexdigest()
            payload = server.cache.get(digest) if server.cache is not None else None
            if payload is None:
                try:
                    payload = server.generate_native(body) if native else server.answer(body)
                except (ValueError, TypeError, KeyError) as e:
                    return self._error(400, f"bad request: {e}", "invalid_request_error")
                if server.cache is not None:
                    server.cache[digest] = payload
            if fault == "slow":
                time.sleep(server.slow_seconds)
            if server.latency:
                time.sleep(max(0.0, self.arrived + server.latency - time.monotonic()))
            try:
                self._json(200, payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                self.close_connection = True

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vlmprobe.testing.api_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="toy:vlm", help="local VLM spec answering the requests (default toy:vlm)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8011)
    p.add_argument("--name", default="toy-vlm", help="model name reported in responses")
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="require the key held by this environment variable")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail (seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slow-seconds", type=float, default=3.0, help="delay of a 'slow' fault")
    p.add_argument("--latency", type=float, default=0.0,
                   help="seconds from a request's arrival to its answer (a remote server's delay)")
    p.add_argument("--cache", action="store_true", help="replay the answer of a request body seen before")
    args = p.parse_args(argv)
    from ..models import load_model

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = ApiTestServer(load_model(args.model), args.host, args.port, args.name, key, args.fault_rate, args.seed,
                           args.slow_seconds, args.latency, cache=args.cache)
    print(f"serving {args.model} as {args.name!r} at {server.base_url} (Ctrl-C stops)", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
