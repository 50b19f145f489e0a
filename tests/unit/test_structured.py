"""Structured outputs without Spark: constraint checks, the presets' patterns, the request bodies sent to servers,
and real constrained decoding in the transformers engine (xgrammar) on a tiny random model, whose free output is
noise: whatever it writes under a constraint matches it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from backforth.config import ConfigError
from backforth.engines import ModelProfile, Request, Sampling, build_engine
from backforth.engines.udf import generate_batch
from backforth.jobs.backtranslate import ONE_LINE
from backforth.jobs.respond import TAGGED_ANSWER
from backforth.jobs.score import PRESETS, ScoreConfig, judge_template
from backforth.structured import describe, literal, openai_fields, resolve, validate
from backforth.udfs.parsing import OK, extract_response, parse_score
from backforth.udfs.prompts import load_prompt

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "enum": [1, 2, 3, 4, 5]}},
          "required": ["score"], "additionalProperties": False}  # fmt: skip


def test_a_constraint_has_exactly_one_known_kind_of_the_right_type() -> None:
    assert validate({"regex": "a+"}, "x") == {"regex": "a+"}
    assert validate({"choice": ["1", "2"]}, "x") == {"choice": ["1", "2"]}
    for bad, words in [({}, "exactly one"), ({"regex": "a", "choice": ["a"]}, "exactly one"),
                       ({"grammar": "x"}, "unknown key"), ({"regex": ""}, "non-empty"), ({"regex": "(a"}, "compile"),
                       ({"choice": []}, "non-empty list"), ({"choice": [1]}, "list of strings"),
                       ({"json": "x"}, "JSON schema")]:  # fmt: skip
        with pytest.raises(ConfigError, match=words):
            validate(bad, "score.structured")


def test_resolve_takes_a_preset_or_a_mapping_and_refuses_engines_that_cannot_constrain() -> None:
    cfg = ScoreConfig()
    assert resolve("score", None, PRESETS, cfg, "fake") is None  # free generation works everywhere
    assert resolve("score", "digit", PRESETS, cfg, "vllm") == {"choice": ["1", "2", "3", "4", "5"]}
    assert resolve("score", {"json": SCHEMA}, PRESETS, cfg, "openai") == {"json": SCHEMA}
    with pytest.raises(ConfigError, match=r"unknown preset 'digits' \(score's presets: digit, reasoning"):
        resolve("score", "digits", PRESETS, cfg, "vllm")
    with pytest.raises(ConfigError, match="the fake engine cannot constrain decoding"):
        resolve("score", "digit", PRESETS, cfg, "fake")
    with pytest.raises(ConfigError, match="the sim engine"):
        resolve("score", {"regex": "a"}, PRESETS, cfg, "sim")
    assert describe({"choice": ["1", "2"]}) == 'choice:["1", "2"]' and describe(None) == ""


def test_the_judge_presets_prefill_and_bound_the_reasoning_to_the_cap() -> None:
    template = load_prompt("score")
    assert judge_template(ScoreConfig(structured="digit"), template).prefill == "Score: "
    assert judge_template(ScoreConfig(structured="reasoning"), template).prefill == ""
    with pytest.raises(ConfigError, match="logprob mode generates no text"):
        judge_template(ScoreConfig(mode="logprob", structured="digit"), template)
    regex = PRESETS["reasoning"](ScoreConfig(sampling=Sampling(max_tokens=100)))["regex"]
    assert regex == r"[^\n]{1,184}\nScore: [1-5]"
    assert re.fullmatch(regex, "Clear and complete.\nScore: 4") and not re.fullmatch(regex, "Good.\nScore: 6")
    assert parse_score("Clear and complete.\nScore: 4") == (4, None) and parse_score("3") == (3, None)


def test_the_backtranslate_and_rewrite_patterns_hold_what_they_promise() -> None:
    assert re.fullmatch(ONE_LINE, "How do I keep a sourdough starter active?")
    for bad in ("Request:\nHow do I feed a starter?", " How?", "How do I feed a starter"):
        assert not re.fullmatch(ONE_LINE, bad)
    assert re.fullmatch(TAGGED_ANSWER, "Feed it daily [see note 1].\n[/RES]")
    assert re.fullmatch(TAGGED_ANSWER, "Ended by the model, no closing tag")
    for bad in ("Feed it. [RES] again [/RES]", "Put it between [RES] and [/RES]", "Done [/RES] and more"):
        assert not re.fullmatch(TAGGED_ANSWER, bad)
    # what the engine returns under the preset (the stop string removed) is an accepted answer
    assert extract_response("Feed the starter every day.", None, None, "stop", "[RES]") == (
        "Feed the starter every day.", OK)  # fmt: skip


def test_servers_get_vllm_structured_outputs_or_a_standard_json_schema_response_format() -> None:
    assert openai_fields(None) == {}
    assert openai_fields({"regex": "a+"}) == {"structured_outputs": {"regex": "a+"}}
    assert openai_fields({"choice": ["1"]}) == {"structured_outputs": {"choice": ["1"]}}
    fmt = openai_fields({"json": SCHEMA})["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == SCHEMA
    profile = ModelProfile(name="s", backend="openai", model="m", options={"base_url": "http://127.0.0.1:9/v1"})
    engine = build_engine(profile)
    body = engine.payload(Request([{"role": "user", "content": "q"}], constraint={"choice": ["1", "2"]}), Sampling())
    assert body["structured_outputs"] == {"choice": ["1", "2"]} and body["messages"][-1]["content"] == "q"


def test_literal_escapes_only_metacharacters() -> None:
    text = "a.b (c) [d] 1+1=2? x*y {z} ^$|/-\\ end"
    assert re.fullmatch(literal(text), text) and " " in literal("a b")


def test_engines_without_token_masks_refuse_a_constrained_request(tmp_path: Path) -> None:
    fake = build_engine(ModelProfile(name="fake", backend="fake", model="none", options={"log_dir": str(tmp_path)}))
    with pytest.raises(ValueError, match="cannot constrain decoding"):
        fake.generate([Request([{"role": "user", "content": "q"}], constraint={"regex": "a"})], Sampling())


def test_transformers_engine_decodes_under_choice_regex_and_json_schema(tiny_model: Path) -> None:
    """A random 2-layer model: unconstrained it writes noise (never a bare digit); under each constraint every
    output matches it, with temperature and top-p applied after the mask."""
    profile = ModelProfile(name="tiny", backend="transformers", model=str(tiny_model), max_model_len=2048,
                           batch_size=4, threads=1)  # fmt: skip
    engine = build_engine(profile)
    ask = [Request([{"role": "user", "content": f"Rate answer {i} from 1 to 5."}], seed=i) for i in range(5)]
    sampling = Sampling(temperature=1.0, top_p=0.9, max_tokens=24)
    free = engine.generate(ask, sampling)
    assert not any(re.fullmatch(r"[1-5]", g.text or "") for g in free)
    choice = {"choice": ["1", "2", "3", "4", "5"]}
    digits = engine.generate([Request(r.messages, "Score: ", r.seed, choice) for r in ask], sampling)
    assert all(g.text in {"1", "2", "3", "4", "5"} and g.finish_reason == "stop" for g in digits)
    bounded = r"[^\n]{1,20}\nScore: [1-5]"
    lines = engine.generate([Request(r.messages, "", r.seed, {"regex": bounded}) for r in ask], sampling)
    for g in lines:
        assert g.finish_reason == "stop" and re.fullmatch(bounded, g.text), g.text
        assert parse_score(g.text)[0] in range(1, 6)
    as_json = engine.generate([Request(r.messages, "", r.seed, {"json": SCHEMA}) for r in ask[:2]],
                              Sampling(temperature=1.0, top_p=0.9, max_tokens=48))  # fmt: skip
    for g in as_json:  # a random model pads the JSON with whitespace, often to the cap: what it wrote is a prefix
        compact = re.sub(r"\s", "", g.text)  # of the only documents the schema allows (whole when it stopped)
        assert compact and any(f'{{"score":{n}}}'.startswith(compact) for n in range(1, 6)), g.text
        if g.finish_reason == "stop":
            assert json.loads(g.text)["score"] in range(1, 6)
    mixed = engine.generate([Request(ask[0].messages, "", 1, {"choice": ["yes"]}), Request(ask[1].messages, "", 2)],
                            Sampling(temperature=1.0, top_p=0.9, max_tokens=6))  # fmt: skip
    assert mixed[0].text == "yes" and mixed[1].text != "yes"  # a row without a constraint stays free


def test_generate_batch_puts_the_constraint_on_every_request() -> None:
    seen: list[Request] = []

    class Recorder:
        def generate(self, requests, sampling):
            seen.extend(requests)
            return [SimpleNamespace(text="x", error=None, prompt_tokens=1, output_tokens=1, finish_reason="stop",
                                    probs=None) for _ in requests]  # fmt: skip

    generate_batch(Recorder(), load_prompt("backtranslate"), Sampling(), [{"document": "a"}, {"document": "b c"}],
                   [1, 2], None, {"regex": ONE_LINE})  # fmt: skip
    assert [r.constraint for r in seen] == [{"regex": ONE_LINE}] * 2
