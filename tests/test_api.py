"""``openai:`` API models against the shipped test server (``vlmprobe.testing.api_server``: a real
HTTP server on 127.0.0.1 answering with the miniature world's VLM): same answers as the local
model, faults retried, SIGKILL resume without paying twice, key secrecy, budgets, dry run."""
import json
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

pytest.importorskip("openai")

from vlmprobe.cli import main  # noqa: E402
from vlmprobe.runs import strip_volatile  # noqa: E402

KEY = "sk-vlmprobe-SECRET-7f3a9c1e5b2d4086"  # distinctive: must never reach a file, a log or an error
LIMIT = 16
FAST = 4  # client timeout (s) where the server injects slow answers (FAST + 1 s); elsewhere 60
API_FIELDS = ("usage", "served_model", "system_fingerprint", "image_sent")


@pytest.fixture(scope="module")
def vlm(toy_world):
    from vlmprobe.models import load_model

    return load_model("toy:vlm")


@pytest.fixture(scope="module", autouse=True)
def _key():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", KEY)
        yield


def _eval(out, base_url, *extra, model="toy-vlm"):
    return main(["eval", "--model", f"openai:{model}@{base_url}", "--data", "toy:digits:test", "--limit", str(LIMIT),
                 "--method", "generate", "--out", str(out), "--no-progress", "--workers", "0", "--batch-size", "4",
                 "--concurrency", "3", "--api-timeout", "60", "--api-retries", "6", *map(str, extra)])


def _records(out):
    return [json.loads(line) for line in (Path(out) / "samples.jsonl").read_text().splitlines()]


def _answers(records):
    """Records without the API's own fields (usage, served model) and volatile ones."""
    return [{k: v for k, v in strip_volatile(r).items() if k not in API_FIELDS} for r in records]


@pytest.fixture(scope="module")
def local_run(vlm, tmp_path_factory):
    from vlmprobe.cli import main

    out = tmp_path_factory.mktemp("api") / "local"
    assert main(["eval", "--model", "toy:vlm", "--data", "toy:digits:test", "--limit", str(LIMIT), "--method",
                 "generate", "--out", str(out), "--no-progress", "--workers", "0", "--batch-size", "8"]) == 0
    return out


@pytest.fixture(scope="module")
def api_run(vlm, tmp_path_factory):
    """A fault-free openai: run over the test server: (run dir, the server's stats)."""
    from vlmprobe.testing.api_server import ApiTestServer

    out = tmp_path_factory.mktemp("api") / "clean"
    with ApiTestServer(vlm) as server:
        assert _eval(out, server.base_url) == 0
        return out, server.stats()


def test_api_run_equals_local_model(local_run, api_run):
    out, stats = api_run
    local, remote = _records(local_run), _records(out)
    assert _answers(remote) == _answers(local)
    assert all(r["usage"]["prompt_tokens"] > 0 and r["served_model"] == "toy-vlm" for r in remote)
    assert all(r["image_sent"] == [32, 32] for r in remote)  # toy digits are 32 px, sent as stored
    res, ref = json.loads((out / "results.json").read_text()), json.loads((local_run / "results.json").read_text())
    assert res["top1"] == ref["top1"]
    assert res["api"]["samples"] == LIMIT and res["api"]["api_errors"] == 0
    assert res["api"]["prompt_tokens"] == sum(r["usage"]["prompt_tokens"] for r in remote)
    assert res["api"]["system_fingerprints"] == ["fp_vlmprobe_test"]
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["kind"] == "api" and model["model"] == "toy-vlm"
    assert model["request"]["base_url"].startswith("http://127.0.0.1:") and model["request"]["temperature"] == 0
    assert model["client"].startswith("openai ")
    assert stats["samples"] == LIMIT and set(stats["counts"].values()) == {1}


def test_faults_are_retried_to_the_fault_free_records(vlm, api_run, tmp_path):
    from vlmprobe.testing.api_server import FAULTS, ApiTestServer

    with ApiTestServer(vlm, fault_rate=0.2, seed=3, slow_seconds=FAST + 1) as server:
        assert _eval(tmp_path / "run", server.base_url, "--api-timeout", FAST) == 0
        stats = server.stats()
    assert set(stats["faults"]) == set(FAULTS), stats["faults"]  # every kind of fault was met
    assert _answers(_records(tmp_path / "run")) == _answers(_records(api_run[0]))
    assert [r["usage"] for r in _records(tmp_path / "run")] == [r["usage"] for r in _records(api_run[0])]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["api"]["api_errors"] == 0


def test_failed_samples_are_api_errors_then_retried_alone(vlm, api_run, tmp_path, capfd):
    from vlmprobe.testing.api_server import ApiTestServer

    out = tmp_path / "run"
    with ApiTestServer(vlm, fault_rate=0.3, seed=1, slow_seconds=FAST + 1) as server:
        # item 10: samples still unanswered -> exit status 2, one line saying how many and what to do
        assert _eval(out, server.base_url, "--api-retries", "0", "--api-timeout", FAST) == 2
        errors = [r for r in _records(out) if r.get("api_error")]
        err = capfd.readouterr().err.strip().splitlines()
        assert err[-1].endswith(f"error: {len(errors)} samples unanswered; run the same command again to retry"), err
        assert errors and all(r["skipped"] and r["prediction"] is None and r["error"].startswith("api_error:")
                              for r in errors)
        res = json.loads((out / "results.json").read_text())
        assert res["api"]["api_errors"] == res["api"]["unanswered"] == len(errors)
        assert res["counts"]["skipped"] == len(errors)
        server.fault_rate = 0.0  # healthy now; the same command again requests only the failed samples
        server.reset()
        assert _eval(out, server.base_url, "--api-retries", "0", "--api-timeout", FAST) == 0
        assert server.stats()["requests"] == len(errors)
    assert _answers(_records(out)) == _answers(_records(api_run[0]))
    assert json.loads((out / "results.json").read_text())["api"]["api_errors"] == 0


def test_sigkill_then_rerun_never_requests_a_finished_sample_again(vlm, api_run, tmp_path):
    from vlmprobe.data import load_dataset
    from vlmprobe.models import load_model
    from vlmprobe.models.api import JOURNAL
    from vlmprobe.testing.api_server import ApiTestServer, sample_key

    out = tmp_path / "run"
    with ApiTestServer(vlm) as server:
        cmd = [sys.executable, "-m", "vlmprobe", "eval", "--model", f"openai:toy-vlm@{server.base_url}", "--data",
               "toy:digits:test", "--limit", str(LIMIT), "--method", "generate", "--out", str(out), "--no-progress",
               "--workers", "0", "--batch-size", "4", "--concurrency", "3", "--api-timeout", "60"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        journaled = lambda: (out / JOURNAL).read_text().count("}\n") if (out / JOURNAL).exists() else 0  # noqa: E731
        while journaled() < 5 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = server.stats()["counts"]
        written = {r["id"] for r in _records(out)} if (out / "samples.jsonl").exists() else set()
        journal = {json.loads(line)["key"] for line in (out / JOURNAL).read_text().splitlines() if line.endswith("}")}
        assert 0 < sum(at_kill.values()) < LIMIT, "the kill must land mid-run"
        assert main(cmd[3:]) == 0  # the same command again (in this process: the server counts either way)
        final = server.stats()["counts"]
    # every sample finished at the kill (written to samples.jsonl, or answered into the journal)
    # got no request after it; only requests in flight at the kill (at most --concurrency) repeat
    model = load_model(f"openai:toy-vlm@{server.base_url}")
    data = load_dataset("toy:digits:test", limit=LIMIT)
    finished = 0
    for i, rec in enumerate(_records(api_run[0])):
        body, _, key, _ = model.request_body(data.load_image(i), rec["prompt"], 64)
        if rec["id"] in written or key in journal:
            finished += 1
            assert final[sample_key(body["messages"])] == at_kill[sample_key(body["messages"])] == 1
    assert finished >= 4 and len(final) == LIMIT and sum(final.values()) - LIMIT <= 3
    assert (out / "samples.jsonl").read_text() == (api_run[0] / "samples.jsonl").read_text()
    assert json.loads((out / "results.json").read_text())["top1"] == json.loads(
        (api_run[0] / "results.json").read_text())["top1"]


def test_the_key_reaches_no_file_log_or_error(vlm, tmp_path, capfd):
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.models import load_model
    from vlmprobe.models.api import ApiOptions
    from vlmprobe.testing.api_server import ApiTestServer

    out = tmp_path / "run"
    with ApiTestServer(vlm, api_key=KEY, fault_rate=0.2, seed=5, slow_seconds=FAST + 1) as server:
        assert _eval(out, server.base_url, "--api-timeout", FAST) == 0
    with ApiTestServer(vlm, api_key="sk-the-right-one") as server:  # refuses KEY, echoing it (like OpenAI)
        assert _eval(tmp_path / "refused", server.base_url) == 2
        model = load_model(f"openai:toy-vlm@{server.base_url}").configure(ApiOptions(max_retries=0))
        with pytest.raises(VlmprobeError) as e:
            model.generate(None, ["hello"])
    text = capfd.readouterr()
    assert "refused the API key in $OPENAI_API_KEY (HTTP 401)" in text.err
    assert len(text.err.strip().splitlines()) == 1
    assert e.value.__context__ is None and e.value.__cause__ is None  # no client exception (quoting the key) attached
    message = "".join(traceback.format_exception(e.value)) + str(e.value)
    assert "refused the API key" in message
    for where in (text.out, text.err, message, *[p.read_bytes().decode("utf-8", "replace")
                                                  for d in (out, tmp_path / "refused") for p in d.rglob("*")
                                                  if p.is_file()]):
        assert KEY not in where and KEY[8:24] not in where


def test_scrub_removes_echoed_pieces_of_the_key():
    from vlmprobe.models.api import ApiModel, ApiOptions, LoadOptions

    model = ApiModel("openai:m", LoadOptions(), "m", None, ApiOptions())
    assert KEY not in model._scrub(f"Incorrect API key provided: {KEY}")
    assert KEY[:14] not in model._scrub(f"Incorrect API key provided: {KEY[:14]}****")


def _journal_usage(out):
    from vlmprobe.models.api import JOURNAL

    return [json.loads(line)["usage"] for line in (out / JOURNAL).read_text().splitlines() if line.endswith("}")]


def test_max_cost_is_a_hard_cap_and_the_rerun_completes(vlm, api_run, tmp_path, capfd):
    """Item 5: --max-cost is checked before every attempt (with the attempts in flight): the
    spend never passes it (main: checked between batches only, it overshoots by up to a batch)."""
    from vlmprobe.testing.api_server import ApiTestServer

    out = tmp_path / "run"
    usage = [r["usage"] for r in _records(api_run[0])]
    price = lambda u: u["prompt_tokens"] * 1.0 / 1e6  # noqa: E731 - completions free: the first bound fits
    budget = sum(price(u) for u in usage[:6])  # reached inside the second batch of 4
    prices = ["--price-input", "1.0", "--price-output", "0", "--image-detail", "low"]
    with ApiTestServer(vlm) as server:
        assert _eval(out, server.base_url, *prices, "--max-cost", budget) == 2
        assert "--max-cost" in capfd.readouterr().err
        spent = sum(price(u) for u in _journal_usage(out))  # every answered (paid) request is journaled
        assert 0 < spent <= budget, (spent, budget)
        assert server.stats()["requests"] == len(_journal_usage(out))  # no failures here: attempts = answers
        assert not (out / "results.json").exists()
        assert _eval(out, server.base_url, *prices) == 0  # the same command, no budget: the rest
        assert set(server.stats()["counts"].values()) == {1} and server.stats()["samples"] == LIMIT
    assert _answers(_records(out)) == _answers(_records(api_run[0]))


def test_max_requests_counts_every_attempt_and_dry_run(vlm, tmp_path, capfd):
    """Item 5: --max-requests caps HTTP attempts, retries and failed ones included, checked
    before each (main: checked before a batch only; retries unbounded)."""
    from vlmprobe.testing.api_server import ApiTestServer

    out = tmp_path / "run"
    with ApiTestServer(vlm) as server:
        assert _eval(out, server.base_url, "--dry-run", "--price-input", "2.5", "--price-output", "10") == 0
        printed = capfd.readouterr().out
        assert f"dry run: {LIMIT} requests for {LIMIT} samples" in printed and "USD" in printed
        assert server.stats()["requests"] == 0 and not out.exists()
        assert _eval(out, server.base_url, "--max-requests", "6") == 2  # the 7th attempt is never sent
        assert server.stats()["requests"] == 6 and len(_journal_usage(out)) == 6
        written = len(_records(out)) if (out / "samples.jsonl").exists() else 0
        assert written in (0, 4)  # whole batches only (the first, unless a later batch's request went first)
        assert _eval(out, server.base_url, "--dry-run") == 0  # 6 answers are journaled already
        assert f"dry run: {LIMIT - 6} requests for {LIMIT - written} samples" in capfd.readouterr().out
    with ApiTestServer(vlm, fault_rate=0.5, seed=2, slow_seconds=FAST + 1) as server:  # half the attempts fail
        out2 = tmp_path / "faulty"
        assert _eval(out2, server.base_url, "--max-requests", "9", "--api-timeout", FAST, "--api-retries", "6") == 2
        assert server.stats()["requests"] == 9 and sum(server.stats()["faults"].values()) > 0
        assert "--max-requests 9 reached (9 attempts sent)" in capfd.readouterr().err


def test_closed_world_label_space_over_the_api(vlm, tmp_path):
    """The prompt options travel unchanged: closed world with 3 shuffled candidates per image."""
    from vlmprobe.testing.api_server import ApiTestServer

    args = ["eval", "--data", "toy:digits:test", "--limit", "8", "--method", "generate", "--closed-world",
            "--num-candidates", "3", "--max-new-tokens", "16", "--no-progress", "--workers", "0", "--batch-size", "4"]
    assert main([*args, "--model", "toy:vlm", "--out", str(tmp_path / "local")]) == 0
    with ApiTestServer(vlm) as server:
        assert main([*args, "--model", f"openai:toy-vlm@{server.base_url}", "--out", str(tmp_path / "api"),
                     "--add-special-tokens"]) == 0  # vLLM tokenizes as the local processor does (BOS)
    remote = _records(tmp_path / "api")
    assert _answers(remote) == _answers(_records(tmp_path / "local"))
    assert all(len(r["candidates"]) == 3 and "Choose one from" in r["prompt"] for r in remote)
    assert all(r["usage"]["completion_tokens"] <= 16 for r in remote)


def test_wikiqa_oracle_class_without_image_over_the_api(vlm, toy_world, tmp_path):
    from vlmprobe.testing.api_server import ApiTestServer

    root = toy_world["dir"]
    args = ["wikiqa", "--data", f"{root}/wikiqa.jsonl", "--images", root, "--limit", "8", "--method", "generate",
            "--oracle-class", "--no-image", "--no-progress", "--batch-size", "4"]
    assert main([*args, "--model", "toy:vlm", "--out", str(tmp_path / "local")]) == 0
    with ApiTestServer(vlm) as server:
        assert main([*args, "--model", f"openai:toy-vlm@{server.base_url}", "--out", str(tmp_path / "api")]) == 0
    assert _answers(_records(tmp_path / "api")) == _answers(_records(tmp_path / "local"))


def test_likelihood_over_prompt_logprobs_equals_local(vlm, tmp_path, capfd):
    import numpy as np

    from vlmprobe.testing.api_server import ApiTestServer

    common = ["--data", "toy:digits:test", "--limit", "6", "--method", "likelihood", "--no-progress", "--workers",
              "0", "--batch-size", "3"]
    assert main(["eval", "--model", "toy:vlm", "--out", str(tmp_path / "local"), *common]) == 0
    with ApiTestServer(vlm) as server:
        assert main(["eval", "--model", f"openai:toy-vlm@{server.base_url}", "--out", str(tmp_path / "api"),
                     *common, "--api-timeout", "60"]) == 0
        assert server.stats()["requests"] == 6 * 11  # per image: the answer prefix + 10 class names
    local, api = np.load(tmp_path / "local" / "scores.npy"), np.load(tmp_path / "api" / "scores.npy")
    np.testing.assert_allclose(api, local, atol=1e-4)
    assert [r["prediction"] for r in _records(tmp_path / "api")] == [r["prediction"] for r in _records(tmp_path / "local")]
    capfd.readouterr()
    with ApiTestServer(vlm, prompt_logprobs=False) as server:  # a server that ignores prompt_logprobs
        assert main(["eval", "--model", f"openai:toy-vlm@{server.base_url}", "--out", str(tmp_path / "none"),
                     *common]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "returned no prompt_logprobs" in err[0]


def test_spec_and_url_checks(tmp_path):
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.models import load_model
    from vlmprobe.models.api import api_options_from_args, split_spec

    assert split_spec("openai:gpt-4o") == ("gpt-4o", None)
    assert split_spec("openai:m@https://example.org/v1") == ("m", "https://example.org/v1")
    with pytest.raises(VlmprobeError, match="only for loopback"):
        load_model("openai:m@http://example.org/v1")
    model = load_model("openai:gpt-4o")
    assert model.describe()["request"]["base_url"] == "https://api.openai.com/v1"
    with pytest.raises(VlmprobeError, match="log-probabilities"):
        model.score([], ["a"])
    assert main(["eval", "--model", "openai:gpt-4o", "--data", "toy:digits:test", "--limit", "2", "--method",
                 "zeroshot", "--out", str(tmp_path / "z"), "--no-progress"]) == 2
    for bad in (["--concurrency", "0"], ["--max-cost", "1"], ["--api-base", "http://10.0.0.1/v1"]):
        with pytest.raises(VlmprobeError):
            load_model("openai:gpt-4o").configure(api_options_from_args(_parse(bad)))


def _parse(extra):
    from vlmprobe.cli import build_parser

    return build_parser().parse_args(["eval", "--model", "openai:m", "--data", "x", "--method", "generate", "--out",
                                      "o", *extra])
