"""A real OpenAI-compatible chat-completions server on 127.0.0.1 that answers with a local VLM's
own greedy generations: for tests of ``openai:`` models, and for users checking their setup
(flags, retries, budgets, resume) without paying for a request.

    python -m vlmprobe.testing.api_server --model toy:vlm --port 8011 [--fault-rate 0.2]
    vlmprobe eval --model openai:toy-vlm@http://127.0.0.1:8011/v1 --method generate ...

``POST /v1/chat/completions`` takes the last user message (text parts joined, at most one
``image_url`` data URL), runs ``model.generate([image], [text], max_new_tokens=max_tokens)``
(batch of one; the local model's generation is batch-invariant, so the answers equal a local
run's) and answers the OpenAI response shape (``choices[0].message.content``, ``usage`` from the
model's tokenizer, ``model``, ``system_fingerprint``). ``GET /v1/models`` lists the model;
``GET /stats`` returns the per-sample request counts. A request with ``prompt_logprobs: 0`` and a
final assistant message (``continue_final_message``) gets vLLM's ``prompt_logprobs`` answer from
the model's own forward pass (``ApiTestServer.prompt_logprobs``), so likelihood over the API is
tested too.

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


class ApiTestServer:
    """``with ApiTestServer(model) as server: server.base_url``; ``counts`` maps sample keys to
    the number of requests received for them (faulted ones included)."""

    def __init__(self, model, host: str = "127.0.0.1", port: int = 0, model_name: str = "toy-vlm",
                 api_key: str | None = None, fault_rate: float = 0.0, seed: int = 0, slow_seconds: float = 3.0,
                 latency: float = 0.0, prompt_logprobs: bool = True):
        self.model, self.model_name, self.api_key = model, model_name, api_key
        self.latency = latency  # seconds every answer waits (outside the model lock): a remote server's delay
        self.serves_prompt_logprobs = prompt_logprobs  # False: ignore the parameter, like a server without it
        self.fault_rate, self.seed, self.slow_seconds = fault_rate, seed, slow_seconds
        self.counts: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.lock = threading.Lock()  # counts
        self.model_lock = threading.Lock()  # one generation at a time
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
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
                    "faults": dict(self.faults)}

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.faults.clear()

    # ---- answering ---------------------------------------------------------------------------
    def answer(self, body: dict) -> dict:
        """The chat-completion response for a parsed request body."""
        from PIL import Image

        text, image = _user_turn(body.get("messages"))
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
        if image is not None:
            raw = base64.b64decode(image.split(",", 1)[1])
            image = Image.open(io.BytesIO(raw)).convert("RGB")
        if body.get("prompt_logprobs") is not None and self.serves_prompt_logprobs:
            return self.prompt_logprobs(body, text, image)
        with self.model_lock:
            out = self.model.generate([image] if image is not None else None, [text], max_new_tokens=max_tokens)[0]
            tok = self.model.tokenizer
            prompt_tokens = len(tok(self.model.render(text, image=image is not None)).input_ids)
            completion_tokens = len(tok(out, add_special_tokens=False).input_ids)
        return {"id": f"chatcmpl-{hashlib.sha256(text.encode()).hexdigest()[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model_name, "system_fingerprint": "fp_vlmprobe_test",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}


    def prompt_logprobs(self, body: dict, text: str, image) -> dict:
        """vLLM's ``prompt_logprobs`` answer for a request whose last message is the assistant's
        answer so far (``continue_final_message``): the prompt is the user turn + the chat
        template's generation prompt + that answer (``model.render(text, answer_prefix=...)``);
        entry t is ``{id_t: {"logprob": log p(id_t | ids_<t), "rank", "decoded_token"}}``, entry 0
        None. Only ``prompt_logprobs=0`` (the prompt's own token) is served."""
        import torch

        last = body["messages"][-1]
        if last.get("role") != "assistant" or not body.get("continue_final_message"):
            raise ValueError("prompt_logprobs is served for a final assistant message with continue_final_message")
        if int(body["prompt_logprobs"]) != 0:
            raise ValueError("only prompt_logprobs=0 is served")
        with self.model_lock, torch.no_grad():
            rendered = self.model.render(text, image=image is not None, answer_prefix=last.get("content") or None)
            batch = self.model.encode([image] if image is not None else None, [rendered])
            logits = self.model.model(**batch).logits[0].float()
            ids = batch["input_ids"][0]
            lp = torch.log_softmax(logits, -1)
            chosen = lp[:-1].gather(-1, ids[1:, None])[:, 0]
            ranks = (lp[:-1] > chosen[:, None]).sum(-1) + 1
            tok = self.model.tokenizer
            plp = [None] + [{str(int(ids[t])): {"logprob": float(chosen[t - 1]), "rank": int(ranks[t - 1]),
                                                "decoded_token": tok.decode([int(ids[t])])}}
                            for t in range(1, len(ids))]
        return {"id": f"chatcmpl-{hashlib.sha256(rendered.encode()).hexdigest()[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model_name, "system_fingerprint": "fp_vlmprobe_test",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)},
                "prompt_logprobs": plp}


def _user_turn(messages) -> tuple[str, str | None]:
    """(text, image data URL or None) of the last user message; ValueError if malformed."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not user:
        raise ValueError("no user message")
    content = user[-1].get("content")
    if isinstance(content, str):
        return content, None
    texts, images = [], []
    for part in content or []:
        if part.get("type") == "text":
            texts.append(part.get("text", ""))
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if not url.startswith("data:image/"):
                raise ValueError("only data: image URLs are supported")
            images.append(url)
    if len(images) > 1:
        raise ValueError("at most one image per request")
    return "\n".join(texts), images[0] if images else None


def _handler(server: ApiTestServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._error(404, f"no route {self.path}", "not_found")
            auth = self.headers.get("Authorization", "")
            if server.api_key is not None and auth != f"Bearer {server.api_key}":
                got = auth.removeprefix("Bearer ")
                return self._error(401, f"Incorrect API key provided: {got}.", "invalid_request_error")
            try:
                body = json.loads(raw)
                key = sample_key(body.get("messages"))
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
            try:
                payload = server.answer(body)
            except ValueError as e:
                return self._error(400, f"bad request: {e}", "invalid_request_error")
            if fault == "slow":
                time.sleep(server.slow_seconds)
            if server.latency:
                time.sleep(server.latency)
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
    p.add_argument("--latency", type=float, default=0.0, help="seconds every answer waits (a remote server's delay)")
    args = p.parse_args(argv)
    from ..models import load_model

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = ApiTestServer(load_model(args.model), args.host, args.port, args.name, key, args.fault_rate, args.seed,
                           args.slow_seconds, args.latency)
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
