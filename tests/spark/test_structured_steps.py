"""Structured outputs through the LLM steps on real Spark + Delta: the judge and backtranslation held to their
formats by a real engine (transformers with xgrammar, a tiny random model whose free output is noise), the constraint
in the step version and the run's records, and the refusals that happen before any row is written."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from backforth.config import ConfigError, Settings
from backforth.engines import Sampling
from backforth.jobs.backtranslate import ONE_LINE, BacktranslateConfig
from backforth.jobs.score import ScoreConfig
from backforth.lineage import fqn as step_runs_table
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def translated(spark, new_settings, seed_tables, tmp_path_factory) -> Settings:
    """12 documents with instructions from the fake engine (readable text for the judge's prompt)."""
    log = tmp_path_factory.mktemp("fake")
    settings = new_settings(BacktranslateConfig(model="fake", model_options={"options": {"log_dir": str(log)}}))
    seed_tables(settings)
    run_job(get_job("backtranslate"), settings, spark)
    return settings


def tiny(tiny_model: Path) -> dict:
    return {"model": str(tiny_model), "max_model_len": 2048, "batch_size": 4}


def test_a_constrained_judge_gives_valid_scores_where_free_text_gives_none(spark, translated, tiny_model) -> None:
    settings = replace(translated)
    versions, rates = {}, {}
    for structured in (None, "digit", "reasoning"):
        settings.job = ScoreConfig(model="smollm2-hf", model_options=tiny(tiny_model), sanity_pairs=4,
                                   sampling=Sampling(max_tokens=40), structured=structured)  # fmt: skip
        outcome = run_job(get_job("score"), settings, spark)
        versions[structured] = outcome.tags["backforth.step_version"]
        rates[structured] = outcome.metrics["valid_rate"]
        rows = spark.table(f"{settings.tables.schema}.scores").where(f"step_version = '{versions[structured]}'")
        rows = rows.collect()
        assert len(rows) == 16  # 12 matched + 4 control pairs
        if structured == "digit":
            assert all(r["raw_output"] in {"1", "2", "3", "4", "5"} and r["valid"] for r in rows)
            assert outcome.tags["backforth.structured"] == 'choice:["1", "2", "3", "4", "5"]'
        if structured == "reasoning":  # at most 2 × (40 - 8) characters of reasons, so the verdict always fits
            assert all(r["finish_reason"] == "stop" and r["valid"] for r in rows)
            assert all(re.fullmatch(r"[^\n]{1,64}\nScore: [1-5]", r["raw_output"]) for r in rows)
    assert rates == {None: 0.0, "digit": 1.0, "reasoning": 1.0}  # random weights never write "Score: N" freely
    assert len(set(versions.values())) == 3  # constrained rows sit beside the free ones, each its own version
    runs = {r["step_version"]: r for r in spark.table(step_runs_table(settings)).where("step = 'score'").collect()}
    assert "structured" not in runs[versions[None]]["params"]  # free runs keep the versions they always had
    assert runs[versions["digit"]]["params"]["structured"].startswith("choice:")
    assert runs[versions["reasoning"]]["params"]["structured"] == r"regex:[^\n]{1,64}\nScore: [1-5]"


def test_a_constrained_backtranslation_is_one_line_ending_in_punctuation(
    spark, make_settings, seed_tables, tiny_model
) -> None:
    settings = make_settings(BacktranslateConfig(model="smollm2-hf", model_options=tiny(tiny_model), limit=4,
                                                 sampling=Sampling(max_tokens=24), structured="line"))  # fmt: skip
    seed_tables(settings)
    run_job(get_job("backtranslate"), settings, spark)
    rows = spark.table(f"{settings.tables.schema}.instructions").collect()
    assert len(rows) == 4
    for r in rows:  # a finished output matches the pattern; one cut at the cap is a line without its end
        assert "\n" not in r["raw_output"]
        assert r["finish_reason"] == "length" or re.fullmatch(ONE_LINE, r["raw_output"]), r["raw_output"]


def test_structured_settings_that_cannot_work_fail_before_any_row(spark, translated) -> None:
    settings = replace(translated)
    cases = [
        (ScoreConfig(model="fake", structured="digit"), "the fake engine cannot constrain decoding"),
        (ScoreConfig(model="smollm2-hf", mode="logprob", structured="digit"), "logprob mode generates no text"),
        (ScoreConfig(model="smollm2-hf", structured="bullet"), "unknown preset 'bullet'"),
        (ScoreConfig(model="smollm2-hf", structured={"regex": "(unclosed"}), "regex does not compile"),
    ]
    for cfg, message in cases:
        settings.job = replace(cfg, output_table="scores_refused")
        with pytest.raises(ConfigError, match=re.escape(message)):
            run_job(get_job("score"), settings, spark)
    assert not spark.catalog.tableExists(f"{settings.tables.schema}.scores_refused")
