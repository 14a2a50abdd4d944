"""Issue 31 (API runs): hard budgets, identical requests paid once, pixel-keyed replay, a test
server that renders like vLLM, SGLang's native /generate, honest exits, API flags on local
models, and requests that keep flowing across the engine's batches -- each against the shipped
test server (a real HTTP server answering with the miniature world's VLM)."""
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openai")

from vlmprobe.cli import main  # noqa: E402
from vlmprobe.runs import strip_volatile  # noqa: E402

KEY = "sk-vlmprobe-flow-0c9b1d7e"
API_FIELDS = ("usage", "served_model", "system_fingerprint", "image_sent")


@pytest.fixture(scope="module", autouse=True)
def vlm(toy_world):
    """The toy VLM the test servers answer with; the key of this module in the environment."""
    from vlmprobe.models import load_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", KEY)
        yield load_model("toy:vlm")


@pytest.fixture(scope="module")
def images(toy_world):
    from vlmprobe.data import load_dataset

    data = load_dataset("toy:digits:test", limit=16)
    return [data.load_image(i) for i in range(16)]


def _records(out):
    return [json.loads(line) for line in (Path(out) / "samples.jsonl").read_text().splitlines()]


def _answers(records):
    return [{k: v for k, v in strip_volatile(r).items() if k not in API_FIELDS} for r in records]


def _eval(out, model, *extra, limit=16, method="generate"):
    return main(["eval", "--model", model, "--data", "toy:digits:test", "--limit", str(limit), "--method", method,
                 "--out", str(out), "--no-progress", "--workers", "0", "--batch-size", "4", *map(str, extra)])


@pytest.fixture(scope="module")
def local_generate(vlm, tmp_path_factory):
    out = tmp_path_factory.mktemp("flow") / "local"
    assert _eval(out, "toy:vlm") == 0
    return _records(out)


# ---- item 6: identical requests are sent once --------------------------------------------------
def test_identical_requests_in_a_batch_are_sent_once(vlm, images):
    """main: each copy is sent (and paid): 5 requests for 2 distinct ones."""
    from vlmprobe.models import load_model
    from vlmprobe.testing.api_server import ApiTestServer

    with ApiTestServer(vlm) as server:
        model = load_model(f"openai:toy-vlm@{server.base_url}")
        batch = [images[0], images[1], images[0], images[0], images[1]]
        answers = model.generate(batch, ["What type of object is in this photo?"] * 5, max_new_tokens=8)
        assert server.stats()["requests"] == 2
    assert answers[0] == answers[2] == answers[3] and answers[1] == answers[4]
    assert answers == vlm.generate(batch, ["What type of object is in this photo?"] * 5, max_new_tokens=8)
    assert model.spending()["deduplicated"] == 3 and model.spending()["requests_sent"] == 2


# ---- item 7: replay keys survive an encoder change ------------------------------------------------
def test_replay_survives_a_png_encoder_change(vlm, tmp_path, monkeypatch):
    """A Pillow/zlib upgrade changes the PNG bytes, not the pixels: a resumed run replays every
    journaled answer (main keys on the bytes: it re-sends and re-pays all 8)."""
    from PIL import Image

    from vlmprobe.testing.api_server import ApiTestServer

    out = tmp_path / "run"
    with ApiTestServer(vlm) as server:
        assert _eval(out, f"openai:toy-vlm@{server.base_url}", limit=8) == 0
        first = _records(out)
        (out / "samples.jsonl").unlink()  # the samples must be computed again; the journal stays
        (out / "results.json").unlink()
        save = Image.Image.save

        def other_encoder(self, fp, format=None, **params):  # what a zlib upgrade does: other bytes
            if (format or "").upper() == "PNG":
                params.setdefault("compress_level", 1)
            return save(self, fp, format=format, **params)

        monkeypatch.setattr(Image.Image, "save", other_encoder)
        server.reset()
        assert _eval(out, f"openai:toy-vlm@{server.base_url}", limit=8) == 0
        assert server.stats()["requests"] == 0
    assert _answers(_records(out)) == _answers(first)


# ---- item 8: the test server renders as vLLM does; likelihood = local -------------------------------
def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_test_server_renders_requests_like_vllm(vlm, images):
    """Prompt tokens of each request shape = the model's chat template applied as vLLM applies it
    (openai content format, add_generation_prompt / continue_final_message, no special tokens
    unless asked); both flags at once is vLLM's 400. main's server rendered its own way (an
    empty final assistant message and the generation prompt alike became render(question))."""
    from vlmprobe.models.api import encode_image
    from vlmprobe.testing.api_server import ApiTestServer

    url, _ = encode_image(images[0], 1024, "png")
    user = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                        {"type": "text", "text": "What is it?"}]}
    user_parts = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}
    cases = [({}, [user], [user_parts], True, False, False),
             ({"add_generation_prompt": False, "continue_final_message": True},
              [user, {"role": "assistant", "content": ""}],
              [user_parts, {"role": "assistant", "content": [{"type": "text", "text": ""}]}], False, True, False),
             ({"add_generation_prompt": False, "continue_final_message": True, "add_special_tokens": True},
              [user, {"role": "assistant", "content": "A seven"}],
              [user_parts, {"role": "assistant", "content": [{"type": "text", "text": "A seven"}]}], False, True, True)]
    with ApiTestServer(vlm) as server:
        for flags, messages, parsed, agp, cfm, special in cases:
            status, answer = _post(server.base_url + "/chat/completions",
                                   {"model": "toy-vlm", "messages": messages, "max_tokens": 1, "prompt_logprobs": 0,
                                    **flags})
            assert status == 200, answer
            text = vlm.processor.apply_chat_template(parsed, tokenize=False, add_generation_prompt=agp,
                                                     continue_final_message=cfm)
            ids = vlm.processor(text=[text], images=[images[0]], add_special_tokens=special,
                                return_tensors="pt")["input_ids"][0]
            assert answer["usage"]["prompt_tokens"] == len(ids), (flags, text)
            assert len(answer["prompt_logprobs"]) == len(ids)
        status, answer = _post(server.base_url + "/chat/completions",
                               {"model": "toy-vlm", "messages": [user], "continue_final_message": True})
        assert status == 400 and "Cannot set both `continue_final_message` and `add_generation_prompt`" in \
            answer["error"]["message"]


@pytest.mark.parametrize("prefix", [None, "It is a"])
def test_api_likelihood_equals_local_through_the_real_chat_template(vlm, tmp_path, prefix):
    """Likelihood over the vLLM-faithful server = the local engine's, without and with an answer
    prefix (main's client sent an empty assistant message for the prompt alone)."""
    from vlmprobe.testing.api_server import ApiTestServer

    extra = ["--answer-prefix", prefix] if prefix else []
    assert _eval(tmp_path / "local", "toy:vlm", *extra, limit=4, method="likelihood") == 0
    with ApiTestServer(vlm) as server:
        assert _eval(tmp_path / "api", f"openai:toy-vlm@{server.base_url}", *extra, limit=4,
                     method="likelihood") == 0
    local, api = np.load(tmp_path / "local" / "scores.npy"), np.load(tmp_path / "api" / "scores.npy")
    np.testing.assert_allclose(api, local, atol=1e-4)


# ---- item 9: SGLang's native /generate -----------------------------------------------------------
def test_sglang_generate_likelihood_and_generation_equal_local(vlm, tmp_path, local_generate):
    """``sglang:MODEL@URL``: the prompt rendered with MODEL's processor, log-probabilities from
    /generate's input_token_logprobs (main: unknown spec)."""
    from vlmprobe.testing.api_server import ApiTestServer

    assert _eval(tmp_path / "local", "toy:vlm", limit=4, method="likelihood") == 0
    with ApiTestServer(vlm) as server:
        root = server.base_url.removesuffix("/v1")
        assert _eval(tmp_path / "sgl", f"sglang:toy:vlm@{root}", limit=4, method="likelihood") == 0
        assert server.stats()["requests"] == 4 * 10  # one request per candidate, none for the prompt alone
        assert _eval(tmp_path / "sgl-gen", f"sglang:toy:vlm@{root}") == 0
    np.testing.assert_allclose(np.load(tmp_path / "sgl" / "scores.npy"), np.load(tmp_path / "local" / "scores.npy"),
                               atol=1e-4)
    assert _answers(_records(tmp_path / "sgl-gen")) == _answers(local_generate)
    config = json.loads((tmp_path / "sgl" / "config.json").read_text())["model"]
    assert config["protocol"] == "sglang" and config["kind"] == "api"


# ---- item 10: unanswered samples, --dry-run = the real run --------------------------------------
def test_dry_run_refuses_a_different_config_like_the_real_run(vlm, tmp_path, capfd):
    from vlmprobe.testing.api_server import ApiTestServer

    out = tmp_path / "run"
    with ApiTestServer(vlm) as server:
        model = f"openai:toy-vlm@{server.base_url}"
        assert _eval(out, model, limit=4) == 0
        capfd.readouterr()
        assert _eval(out, model, "--max-new-tokens", "5", limit=4) == 2
        real = capfd.readouterr().err.strip()
        assert _eval(out, model, "--max-new-tokens", "5", "--dry-run", limit=4) == 2  # main: 0, an estimate
        dry = capfd.readouterr().err.strip()
    assert "holds a run with a different config" in real and dry == real


def test_dry_run_counts_samples_of_pending_shards(vlm, tmp_path, capfd):
    """A retry run stopped at its budget leaves a shard of retried samples not merged yet: the
    dry run leaves them out as the real run does (main read samples.jsonl only)."""
    from vlmprobe.testing.api_server import ApiTestServer

    out = tmp_path / "run"
    with ApiTestServer(vlm, fault_rate=0.4, seed=1) as server:
        model = f"openai:toy-vlm@{server.base_url}"
        assert _eval(out, model, "--api-retries", "0") == 2
        errors = sum(1 for r in _records(out) if r.get("api_error"))
        assert errors >= 2
        server.fault_rate = 0.0
        server.reset()
        assert main(["eval", "--model", model, "--data", "toy:digits:test", "--limit", "16", "--method", "generate",
                     "--out", str(out), "--no-progress", "--workers", "0", "--batch-size", "1",
                     "--concurrency", "1", "--max-requests", "1"]) == 2
        shards = list((out / "shards").glob("*.jsonl"))
        assert shards  # the retried samples written so far wait there
        in_shards = sum(len(f.read_text().splitlines()) for f in shards)
        sent = server.stats()["requests"]  # the one attempt the budget allowed
        capfd.readouterr()
        assert _eval(out, model, "--dry-run") == 0
        m = re.search(r"dry run: (\d+) requests for (\d+) samples", capfd.readouterr().out)
        # the batches run side by side: the one attempt may have answered a later batch's sample
        # (journaled, written by the next run without a request) while the first one stopped
        assert m and int(m[2]) == errors - in_shards and int(m[1]) in (int(m[2]), int(m[2]) - 1)
        assert _eval(out, model) == 0  # the real run agrees: it computes the rest and merges
        assert server.stats()["requests"] - sent == int(m[1]) and sent == 1  # nothing asked twice


# ---- item 11: API flags on a local model ------------------------------------------------------------
@pytest.mark.parametrize("flag", [["--dry-run"], ["--max-cost", "1", "--price-input", "1", "--price-output", "1"],
                                  ["--concurrency", "8"], ["--max-requests", "3"]])
def test_api_flags_on_a_local_model_are_a_one_line_error(tmp_path, capfd, flag):
    assert main(["eval", "--model", "toy:clip", "--data", "toy:digits:test", "--limit", "2", "--method", "zeroshot",
                 "--out", str(tmp_path / "z"), "--no-progress", *flag]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag[0] in err[0] and "toy:clip is computed in this process" in err[0]
    assert not (tmp_path / "z").exists()


# ---- item 12: requests keep flowing across batches; AIMD -------------------------------------------
def test_requests_stay_in_flight_across_batches(vlm, local_generate, tmp_path):
    """Batches of 2, --concurrency 6: the server sees 6 requests at once (main: at most the
    batch, 2), and the records are the local model's, in order."""
    from vlmprobe.testing.api_server import ApiTestServer

    out = tmp_path / "run"
    with ApiTestServer(vlm, latency=0.3) as server:
        assert main(["eval", "--model", f"openai:toy-vlm@{server.base_url}", "--data", "toy:digits:test", "--limit",
                     "16", "--method", "generate", "--out", str(out), "--no-progress", "--workers", "0",
                     "--batch-size", "2", "--concurrency", "6"]) == 0
        assert server.stats()["max_active"] == 6
    assert _answers(_records(out)) == _answers(local_generate)


def test_limiter_backs_off_multiplicatively_and_grows_additively():
    import asyncio

    from vlmprobe.models.api import _Limiter

    lim = _Limiter(16)

    async def take(n, priority=0):
        for _ in range(n):
            await lim.acquire(priority)

    asyncio.run(take(3))
    lim.release("ok", 0.1)
    assert lim.limit == 16  # at the cap
    lim.release("throttled")
    assert lim.limit == 8  # halved
    lim.active += 1
    lim.release("throttled")
    assert lim.limit == 8  # once per latency: a burst of 429s counts once
    lim.cut_at -= 1.0
    for _ in range(8):
        lim.active += 1
        lim.release("ok", 0.1)
    assert 8.9 < lim.limit < 9.1  # +1/limit per answer: +1 per 8 answers
    lim.cut_at -= 1.0
    for _ in range(12):  # the server queues: answers 5x slower, the smoothed latency passes 3x
        lim.active += 1
        lim.release("ok", 0.5)
    assert 4.4 < lim.limit < 4.8 and lim.history == {"min": 4, "cuts": 2}


def test_limiter_hands_free_slots_to_the_earliest_batch_first():
    import asyncio

    from vlmprobe.models.api import _Limiter

    async def scenario():
        lim = _Limiter(1)
        await lim.acquire(0)
        order = []

        async def want(priority):
            await lim.acquire(priority)
            order.append(priority)
            lim.release("ok", 0.1)

        tasks = [asyncio.create_task(want(p)) for p in (5, 3, 9, 1)]
        await asyncio.sleep(0)
        lim.release("ok", 0.1)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == [1, 3, 5, 9]


def test_429s_lower_the_requests_in_flight(vlm, images):
    from vlmprobe.models import load_model
    from vlmprobe.models.api import ApiOptions
    from vlmprobe.testing.api_server import ApiTestServer

    with ApiTestServer(vlm, fault_rate=0.5, seed=4, slow_seconds=0.1) as server:
        model = load_model(f"openai:toy-vlm@{server.base_url}").configure(ApiOptions(concurrency=8, backoff=0.05))
        model.generate(images, ["What type of object is in this photo?"] * 16, max_new_tokens=4)
        faults = server.stats()["faults"]
    spend = model.spending()
    assert faults.get("429") and spend["concurrency"]["cuts"] >= 1 and spend["concurrency"]["lowest"] <= 4
    # smaller defect: requests_sent counts distinct requests, attempts every HTTP attempt
    assert spend["requests_sent"] == 16 and spend["attempts"] == server.stats()["requests"] > 16


# ---- smaller defect: the engine asks the interface, not hasattr(model, "attach_run") -----------------
def test_a_local_model_with_an_attach_run_attribute_is_not_an_api_model(toy_world, tmp_path):
    from vlmprobe.classify.runner import evaluate, make_method
    from vlmprobe.data import load_dataset
    from vlmprobe.models import load_model

    clip = load_model("toy:clip")
    clip.attach_run = lambda *a, **k: None  # e.g. a wrapper's own method of that name
    results = evaluate(clip, load_dataset("toy:digits:test", limit=4), make_method("zeroshot"), tmp_path / "z",
                       progress=False)  # main: taken for an API model (AttributeError: no .api)
    assert "api" not in results and results["counts"]["n"] == 4
    assert clip.server_session() is None


# ---- item 12, measured: what stalled the requests in flight -------------------------------------
def test_the_loop_runs_with_the_heap_frozen_and_gives_it_back(vlm, tmp_path, monkeypatch):
    """A full garbage-collector pass over the objects torch and transformers keep alive took
    0.24-0.33 s on the benchmark's CPU and stopped every thread, the requests in flight with it
    (``benchmarks/api_concurrency.py``: N = 64 at 2.3-2.6 s instead of 2.0 s). The engine's loop
    runs with the heap alive at its start frozen (main: not frozen) and unfreezes it after."""
    import gc

    from vlmprobe.testing.api_server import ApiTestServer

    from vlmprobe.models.api import ApiModel

    api_seen = []
    real_api = ApiModel.generate

    def api_generate(self, *args, **kwargs):
        api_seen.append(gc.get_freeze_count())
        return real_api(self, *args, **kwargs)

    monkeypatch.setattr(ApiModel, "generate", api_generate)
    before = gc.get_freeze_count()
    with ApiTestServer(vlm) as server:
        assert _eval(tmp_path / "run", f"openai:toy-vlm@{server.base_url}", limit=8) == 0
    assert api_seen and all(n > 0 for n in api_seen)
    assert gc.get_freeze_count() == before == 0


def test_frozen_heap_leaves_a_callers_freeze_alone(monkeypatch):
    """Inside a caller's freeze, ``frozen_heap`` neither freezes again nor unfreezes the caller's
    heap at its end; outside one it freezes on entry and unfreezes on exit."""
    import gc

    from vlmprobe import engine

    calls = []
    monkeypatch.setattr(engine.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(engine.gc, "unfreeze", lambda: calls.append("unfreeze"))
    monkeypatch.setattr(engine.gc, "get_freeze_count", lambda: 1000)  # a caller froze the heap
    with engine.frozen_heap():
        pass
    assert calls == []
    monkeypatch.setattr(engine.gc, "get_freeze_count", lambda: 0)
    with engine.frozen_heap():
        assert calls == ["freeze"]
    assert calls == ["freeze", "unfreeze"]
    assert gc is engine.gc


def test_test_server_latency_counts_from_arrival(vlm, images):
    """``--latency`` is the time from a request's arrival to its answer, the server's own work
    within it (main: the work, then the whole latency on top)."""
    import time

    from vlmprobe.models import load_model
    from vlmprobe.testing.api_server import ApiTestServer

    with ApiTestServer(vlm, latency=0.4) as server:
        real = server.answer

        def slow_answer(body):  # the server's work takes 0.3 s
            time.sleep(0.3)
            return real(body)

        server.answer = slow_answer
        model = load_model(f"openai:toy-vlm@{server.base_url}")
        t0 = time.monotonic()
        model.generate(images[:1], ["What type of object is in this photo?"], max_new_tokens=2)
        elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 0.65, elapsed  # main: >= 0.7


def test_a_second_round_of_requests_waits_ready_behind_the_first(vlm, tmp_path, monkeypatch):
    """Answers that arrive together free N slots at once; the next N requests must already be
    waiting (main: one batch behind the N in flight, so in-flight fell after every round)."""
    from vlmprobe.models.api import _Limiter
    from vlmprobe.testing.api_server import ApiTestServer

    waiting = []
    real = _Limiter.acquire

    async def acquire(self, priority=0):
        waiting.append(len(self.waiters))
        return await real(self, priority)

    monkeypatch.setattr(_Limiter, "acquire", acquire)
    with ApiTestServer(vlm, latency=0.3) as server:
        assert main(["eval", "--model", f"openai:toy-vlm@{server.base_url}", "--data", "toy:digits:test", "--limit",
                     "12", "--method", "generate", "--out", str(tmp_path / "run"), "--no-progress", "--workers", "0",
                     "--batch-size", "1", "--concurrency", "3"]) == 0
    assert max(waiting) >= 3, waiting  # main: 1
