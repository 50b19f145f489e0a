"""The openai engine without Spark: backoff schedule, rate limiter, response parsing, and the engine itself against
a stub OpenAI-compatible server behind a proxy that injects 429s, 503s and dropped connections."""

from __future__ import annotations

import logging

import pytest
from openai_stub import base_url, fault_proxy, responder

from backforth.engines import ModelProfile, Request, Sampling, build_engine
from backforth.engines.endpoint import (
    EndpointError,
    RateLimiter,
    backoff_delay,
    candidate_probs,
    endpoint_host,
    parse_generation,
    parse_top_logprobs,
    retry_after,
)
from backforth.engines.udf import generate_batch
from backforth.prompts import PromptTemplate


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    assert [backoff_delay(a, 0.5, 4.0, rng=lambda: 1.0) for a in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [backoff_delay(a, 0.5, 4.0, rng=lambda: 0.0) for a in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("3") == 3.0 and retry_after("0.5") == 0.5 and retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after("soon") is None


def test_rate_limiter_spaces_request_starts() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert slept == [0.25, 0.5]  # the first goes at once, then one every 1/4 s
    now[0] = 200.0  # long idle: no backlog of credit beyond one slot
    limiter.wait()
    assert len(slept) == 2
    RateLimiter(None).wait()  # no limit: returns at once


def test_parsing_chat_completions_and_logprobs() -> None:
    body = {"choices": [{"message": {"content": "Hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3}}  # fmt: skip
    g = parse_generation(body)
    assert (g.text, g.prompt_tokens, g.output_tokens, g.finish_reason, g.error) == ("Hi", 7, 3, "length", None)
    assert parse_generation({"choices": [{"text": "x", "finish_reason": "eos"}]}, "completions").finish_reason == "stop"
    chat = {"choices": [{"logprobs": {"content": [{"token": "3", "top_logprobs": [{"token": "3", "logprob": 0.0}]}]}}]}
    assert parse_top_logprobs(chat) == {"3": 0.0}
    assert parse_top_logprobs({"choices": [{"logprobs": None}]}) is None
    completion = {"choices": [{"logprobs": {"top_logprobs": [{" 2": -1.0}]}}]}
    assert parse_top_logprobs(completion, "completions") == {" 2": -1.0}
    probs = candidate_probs({"3": 0.0, " 3": 0.0, "x": 0.0}, ["1", "3"])
    assert probs == {"1": 0.0, "3": 2.0}
    assert endpoint_host("https://user:pw@example.test:8443/serving-endpoints") == "example.test:8443"


def profile(url: str, **options) -> ModelProfile:
    opts = {"base_url": url, "api_key_env": "BACKFORTH_TEST_KEY", "backoff_s": 0.01, "backoff_max_s": 0.05,
            "concurrency": 4, **options}  # fmt: skip
    return ModelProfile(name="stub", backend="openai", model="stub-model", options=opts)


def test_the_identity_names_the_endpoint_host_and_model_never_the_key(monkeypatch) -> None:
    p = profile("http://127.0.0.1:9/v1")
    assert p.identity()["endpoint"] == "127.0.0.1:9" and p.identity()["model"] == "stub-model"
    assert "endpoint" not in ModelProfile(name="x", backend="fake").identity()  # other backends' versions unchanged


def test_retries_through_429s_and_resets_lose_and_duplicate_no_row(monkeypatch, caplog) -> None:
    monkeypatch.setenv("BACKFORTH_TEST_KEY", "sk-planted-123")
    upstream = responder()
    proxy = fault_proxy(base_url(upstream))
    engine = build_engine(profile(base_url(proxy), max_retries=3))
    template = PromptTemplate(name="t", version=1, system="", user="Write about {{doc}}.")
    docs = [f"document number {i} about gardening pebbles mountains" for i in range(24)] + ["POISON forever"]
    try:
        with caplog.at_level(logging.INFO, logger="backforth.engines"):
            rows = generate_batch(engine, template, Sampling(max_tokens=5), [{"doc": d} for d in docs],
                                  list(range(len(docs))))  # fmt: skip
    finally:
        engine.close()
        proxy.shutdown()
        upstream.shutdown()
    assert len(rows) == 25
    good, poisoned = rows[:24], rows[24]
    assert all(r["error"] is None and r["text"].startswith("Could you") for r in good)
    assert all(r["prompt_tokens"] > 0 and r["output_tokens"] == 5 and r["finish_reason"] == "length" for r in good)
    assert poisoned["text"] is None and poisoned["finish_reason"] == "error"
    assert poisoned["error"].startswith("endpoint_failed after 4 attempts: HTTP 503")
    faults = proxy.faults
    assert faults["429"] and faults["reset"] and faults["reset_after"] and faults["503"] >= 4
    retries = sum(faults.values())  # every fault was retried (the poisoned row's last one is not)
    assert engine.stats["retries"] == retries - 1 and engine.stats["row_errors"] == 1
    assert engine.stats["requests"] == sum(proxy.attempts.values())
    assert "'retries': " in caplog.text and "sk-planted-123" not in caplog.text
    assert set(upstream.auth) == {"Bearer sk-planted-123"}
    # a reset after the upstream answered: the server worked twice for that row, and the row is still one row
    assert sum(upstream.served.values()) == 25 - 1 + faults["reset_after"]


def test_bad_model_fails_the_task_in_one_line_and_missing_logprobs_name_score_mode_text(monkeypatch) -> None:
    monkeypatch.delenv("BACKFORTH_TEST_KEY", raising=False)
    upstream = responder(logprobs=False)
    try:
        wrong = build_engine(ModelProfile(name="stub", backend="openai", model="other", options={
            "base_url": base_url(upstream), "api_key_env": "BACKFORTH_TEST_KEY"}))  # fmt: skip
        with pytest.raises(EndpointError, match="HTTP 404, no such model"):
            wrong.generate([Request([{"role": "user", "content": "hello"}])], Sampling(max_tokens=4))
        engine = build_engine(profile(base_url(upstream)))
        request = Request([{"role": "user", "content": "rate this"}], prefill="Score: ")
        with pytest.raises(EndpointError, match="use score mode: text"):
            engine.next_token_probs([request], ["1", "2", "3"])
        assert upstream.auth[-1] is None  # no key in the environment: no Authorization header
        none = build_engine(profile(base_url(upstream), prefill="none"))
        with pytest.raises(EndpointError, match="needs the answer prefilled"):
            none.next_token_probs([request], ["1", "2", "3"])
    finally:
        upstream.shutdown()


def test_a_refused_key_fails_the_task_without_showing_the_key(monkeypatch) -> None:
    monkeypatch.setenv("BACKFORTH_TEST_KEY", "sk-wrong-456")
    upstream = responder(key="sk-right")
    try:
        engine = build_engine(profile(base_url(upstream)))
        with pytest.raises(EndpointError, match="HTTP 401, the endpoint refused the API key") as failure:
            engine.generate([Request([{"role": "user", "content": "hello"}])] * 3, Sampling(max_tokens=4))
        assert "sk-wrong-456" not in str(failure.value) and "\n" not in str(failure.value)
    finally:
        upstream.shutdown()


def test_logprobs_and_continue_prefill_reach_the_server(monkeypatch) -> None:
    upstream = responder()
    try:
        engine = build_engine(profile(base_url(upstream)))
        request = Request([{"role": "user", "content": "rate this"}], prefill="Score: ", seed=5)
        [out] = engine.next_token_probs([request], ["1", "2", "3"])
        assert out.error is None and out.finish_reason == "probs" and out.prompt_tokens > 0
        assert out.probs["2"] == 0.0 and out.probs["3"] == pytest.approx(0.6703 + 0.0498, abs=1e-3)
        body = engine.payload(request, Sampling(max_tokens=3), request.prefill)
        assert body["messages"][-1] == {"role": "assistant", "content": "Score: "} and body["seed"] == 5
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        [empty] = engine.generate([Request([{"role": "user", "content": "  "}])], Sampling())
        assert empty.error == "empty_prompt"
    finally:
        upstream.shutdown()
