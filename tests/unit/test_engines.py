"""Engines without Spark: the fake engine, prompt checks, row order, profiles, and a tiny real transformers model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backforth.config import ConfigError
from backforth.engines import ModelProfile, Request, Sampling, build_engine, load_profile
from backforth.engines.udf import generate_batch
from backforth.udfs.prompts import load_prompt

PROMPT = load_prompt("backtranslate")
DOCS = [
    "Honey bees gather nectar from flowers and store it in wax cells, fanning it until the water evaporates.",
    "Short note about tides.",
    "A sourdough starter needs flour and water every day; discard half before feeding so it stays active and "
    "bubbly, and keep it in a warm kitchen corner away from drafts for the first two weeks of its life.",
    "",
    "Granite forms when magma cools slowly underground.",
]


def fake(tmp_path: Path, **options) -> ModelProfile:
    return ModelProfile(name="fake", backend="fake", model="none", options={"log_dir": str(tmp_path), **options})


def events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(tmp_path.glob("engine-*.jsonl")) for line in p.read_text().splitlines()]


def test_batch_goes_to_the_engine_sorted_by_length_and_comes_back_in_row_order(tmp_path: Path) -> None:
    engine = build_engine(fake(tmp_path))
    rows = [{"document": d} for d in DOCS]
    out = generate_batch(engine, PROMPT, Sampling(), rows, [1, 2, 3, 4, 5])
    generated = [e for e in events(tmp_path) if e["event"] == "generate"]
    assert len(generated) == 1 and generated[0]["n"] == 4  # the empty document never reached the engine
    row_lengths = [out[i]["prompt_tokens"] for i in (0, 1, 2, 4)]
    assert row_lengths != sorted(row_lengths)  # the rows themselves are not in length order...
    assert generated[0]["lengths"] == sorted(row_lengths)  # ...but the engine received them sorted
    shares = {out[i]["engine_s"] for i in (0, 1, 2, 4)}  # the call's wall time, shared by the rows that reached it
    assert len(shares) == 1 and shares.pop() > 0
    assert out[3] == {
        "text": None, "error": "empty_prompt", "prompt_tokens": 0, "output_tokens": 0, "finish_reason": "error",
        "probs": None, "engine_s": 0.0,
    }  # fmt: skip
    # each row's answer is the one generated for that row's own prompt
    for i in (0, 1, 2, 4):
        alone = engine.generate([Request(PROMPT.render(document=DOCS[i]), seed=i + 1)], Sampling())[0]
        assert out[i]["text"] == alone.text and out[i]["prompt_tokens"] == alone.prompt_tokens


def test_fake_is_deterministic_per_seed_and_honours_max_tokens(tmp_path: Path) -> None:
    engine = build_engine(fake(tmp_path))
    request = Request(PROMPT.render(document=DOCS[0]), seed=7)
    a, b = engine.generate([request, request], Sampling())
    assert a == b and a.finish_reason == "stop" and a.error is None
    draws = engine.generate([Request(request.messages, seed=s) for s in range(8)], Sampling())
    assert len({d.text for d in draws}) > 1  # other seeds, other draws
    capped = engine.generate([request], Sampling(max_tokens=2))[0]
    assert capped.output_tokens == 2 and capped.finish_reason == "length"


def test_prompt_longer_than_the_context_is_a_row_error_not_a_crash(tmp_path: Path) -> None:
    profile = fake(tmp_path)
    profile.max_model_len = 300
    engine = build_engine(profile)
    long_doc = "word " * 400
    out = engine.generate([Request(PROMPT.render(document=long_doc)), Request(PROMPT.render(document=DOCS[1]))],
                          Sampling(max_tokens=50))  # fmt: skip
    assert out[0].text is None and out[0].error.startswith("prompt_too_long: ") and out[0].prompt_tokens > 250
    assert out[1].error is None and out[1].text


def test_simulated_crash_raises(tmp_path: Path) -> None:
    engine = build_engine(fake(tmp_path, fail_after=2))
    engine.generate([Request(PROMPT.render(document=d)) for d in DOCS[:2]], Sampling())
    with pytest.raises(RuntimeError, match="simulated crash"):
        engine.generate([Request(PROMPT.render(document=DOCS[2]))], Sampling())


def test_profiles_load_and_reject_unknown_keys(tmp_path: Path) -> None:
    cpu = load_profile("smollm2-cpu")
    assert cpu.backend == "vllm-cpu" and cpu.model == "embedded" and cpu.parallelism == 1
    gpu = load_profile("llama3-70b-gpu")
    # executors declare 8 GPUs; tasks ask for none application-wide: the generation stage asks for `gpus` per task
    assert gpu.gpus == gpu.gpus_per_engine == 8 and gpu.spark["spark.executor.resource.gpu.amount"] == "8"
    assert "spark.task.resource.gpu.amount" not in gpu.spark
    assert load_profile("fake", {"max_model_len": 100}).max_model_len == 100
    with pytest.raises(ConfigError, match="max_modle_len.*did you mean 'max_model_len'"):
        load_profile("fake", {"max_modle_len": 100})
    with pytest.raises(ConfigError, match="known profiles: .*smollm2-cpu"):
        load_profile("no-such-model")


def test_transformers_engine_generates_with_chat_template_seed_and_cap(tiny_model: Path) -> None:
    profile = ModelProfile(name="tiny", backend="transformers", model=str(tiny_model), max_model_len=2048,
                           batch_size=2, threads=1)  # fmt: skip
    engine = build_engine(profile)
    rendered = engine.render(Request(PROMPT.render(document=DOCS[0])))
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith("<|im_start|>assistant\n")
    requests = [Request(PROMPT.render(document=d), seed=11) for d in (DOCS[1], DOCS[4], DOCS[0])]
    sampling = Sampling(temperature=1.0, top_p=0.9, max_tokens=12)
    first, second = engine.generate(requests, sampling), engine.generate(requests, sampling)
    assert [g.text for g in first] == [g.text for g in second]  # same seed, same batch → same text
    for g in first:
        assert g.error is None and 0 < g.output_tokens <= 12 and g.prompt_tokens > 50
        assert g.finish_reason in ("stop", "length")
    greedy = engine.generate(requests[:1], Sampling(temperature=0.0, max_tokens=5))[0]
    assert greedy.output_tokens <= 5
    assert any(g.finish_reason == "length" and g.output_tokens == 12 for g in first)  # random weights rarely stop
