"""The real CPU engines inside Spark Python workers: transformers (tiny random model) and vLLM's CPU build (SmolLM2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backforth.engines import Sampling
from backforth.jobs.backtranslate import BacktranslateConfig
from backforth.jobs.score import ScoreConfig
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark


def rows_of(spark, settings) -> list:
    return spark.table(f"{settings.tables.schema}.instructions").orderBy("doc_id").collect()


def test_transformers_engine_backtranslates_in_spark(spark, make_settings, seed_tables, tiny_model: Path) -> None:
    cfg = BacktranslateConfig(
        model="smollm2-hf",
        model_options={"model": str(tiny_model), "max_model_len": 2048, "batch_size": 2},
        sampling=Sampling(max_tokens=8),
        limit=3,
    )
    settings = make_settings(cfg)
    seed_tables(settings)
    outcome = run_job(get_job("backtranslate"), settings, spark)
    rows = rows_of(spark, settings)
    assert [r["doc_id"] for r in rows] == ["d00", "d01", "d02"]  # limit takes the smallest pending ids
    for r in rows:
        assert r["error"] is None and r["raw_output"] is not None and 0 < r["output_tokens"] <= 8
        assert r["model"]["backend"] == "transformers" and r["prompt_tokens"] > 50
        # random weights write noise: it must end as a rejected row with a reason, or a (meaningless) instruction
        assert (r["instruction"] is None) != (r["reject_reason"] is None)
    assert outcome.metrics["docs_rows"] == 3


def test_vllm_cpu_backtranslates_smollm2_in_a_spark_worker(spark, make_settings, seed_tables) -> None:
    cfg = BacktranslateConfig(model="smollm2-cpu", sampling=Sampling(max_tokens=48), limit=3)
    settings = make_settings(cfg)
    seed_tables(settings)
    outcome = run_job(get_job("backtranslate"), settings, spark)
    rows = rows_of(spark, settings)
    assert len(rows) == 3
    for r in rows:
        assert r["error"] is None and r["raw_output"].strip()
        assert r["model"]["backend"] == "vllm-cpu" and r["model"]["profile"] == "smollm2-cpu"
        assert r["prompt_tokens"] > 100 and 0 < r["output_tokens"] <= 48
        assert r["finish_reason"] in ("stop", "length")
    assert outcome.metrics["tokens_per_s"] > 0
    import mlflow

    tags = mlflow.get_run(outcome.run_id).data.tags
    assert "demonstrates the pipeline, not the data quality" in tags["backforth.quality_note"]


def test_vllm_cpu_holds_the_judge_to_a_digit_in_a_spark_worker(spark, make_settings, seed_tables, tmp_path) -> None:
    """vLLM's structured outputs in-process (the CPU build, xgrammar): SmolLM2 prefilled with "Score: " and held to
    one of 1-5, so every pair gets a valid score, on instructions the fake engine wrote."""
    settings = make_settings(BacktranslateConfig(model="fake", model_options={"options": {"log_dir": str(tmp_path)}}))
    seed_tables(settings)
    run_job(get_job("backtranslate"), settings, spark)
    settings.job = ScoreConfig(model="smollm2-cpu", structured="digit", sanity_pairs=0, limit=3)
    outcome = run_job(get_job("score"), settings, spark)
    rows = spark.table(f"{settings.tables.schema}.scores").collect()
    assert len(rows) == 3 and outcome.metrics["valid_rate"] == 1.0
    assert all(r["raw_output"] in {"1", "2", "3", "4", "5"} and r["model"]["backend"] == "vllm-cpu" for r in rows)
