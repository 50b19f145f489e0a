"""score on real Spark + Delta with the fake engine: text and logprob modes, validity, control pairs, resume."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backforth.config import Settings
from backforth.jobs.backtranslate import BacktranslateConfig
from backforth.jobs.score import ScoreConfig
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark


def fake_options(tmp_path, **extra) -> dict:
    return {"options": {"log_dir": str(tmp_path / "log"), **extra}}


@pytest.fixture(scope="module")
def translated_once(spark, new_settings, seed_tables, tmp_path_factory) -> Settings:
    """12 documents and their instructions, generated once for the module: the tests only read them, and each
    scores into an output table of its own."""
    cfg = BacktranslateConfig(model="fake", model_options=fake_options(tmp_path_factory.mktemp("backtranslate")))
    settings = new_settings(cfg)
    seed_tables(settings)
    run_job(get_job("backtranslate"), settings, spark)
    return settings


@pytest.fixture
def translated(translated_once) -> Settings:
    return replace(translated_once)  # a copy: each test sets its own job config


def test_text_mode_parses_scores_and_reports_the_sanity_auc(spark, translated, tmp_path) -> None:
    cfg = ScoreConfig(model="fake", model_options=fake_options(tmp_path, reply="It fits.\nScore: {digit}"),
                      sanity_pairs=4, shard_rows=5)  # fmt: skip
    translated.job = cfg
    outcome = run_job(get_job("score"), translated, spark)
    rows = spark.table(f"{translated.tables.schema}.scores").collect()
    matched = [r for r in rows if r["pair_kind"] == "matched"]
    controls = [r for r in rows if r["pair_kind"] == "control"]
    assert len(matched) == 12 and len(controls) == 4
    assert all(r["valid"] and 1 <= r["score"] <= 5 and r["expected_score"] == r["score"] for r in rows)
    assert all(r["raw_output"].endswith(f"Score: {r['score']}") for r in rows)
    assert len({(r["doc_id"], r["pair_kind"]) for r in rows}) == len(rows)  # the key: doc_id, pair_kind (+ version)
    for c in controls:  # a control pair carries another document's instruction
        own = next(m for m in matched if m["doc_id"] == c["doc_id"])
        assert c["instruction"] != own["instruction"]
    assert outcome.metrics["valid_rate"] == 1.0 and outcome.metrics["pairs_rows"] == 16
    assert sum(outcome.metrics[f"score.{s}"] for s in range(1, 6)) == 12
    assert 0.0 <= outcome.metrics["sanity_auc"] <= 1.0 and outcome.metrics["sanity_pairs"] == 4
    import mlflow

    tags = mlflow.get_run(outcome.run_id).data.tags
    assert tags["backforth.judge_sanity"].startswith("judge sanity AUC") and tags["backforth.score.mode"] == "text"
    again = run_job(get_job("score"), translated, spark)
    assert again.metrics["pairs_rows"] == 0 and spark.table(f"{translated.tables.schema}.scores").count() == 16


def test_unparseable_judge_output_is_an_invalid_row_not_a_failure(spark, translated, tmp_path) -> None:
    translated.job = ScoreConfig(model="fake", model_options=fake_options(tmp_path, reply="Looks fine to me {words}"),
                                 sanity_pairs=0, output_table="scores_unparseable")  # fmt: skip
    outcome = run_job(get_job("score"), translated, spark)
    rows = spark.table(f"{translated.tables.schema}.scores_unparseable").collect()
    assert len(rows) == 12 and not any(r["valid"] for r in rows)
    assert {r["invalid_reason"] for r in rows} == {"no_score"}
    assert outcome.metrics["valid_rate"] == 0.0 and outcome.metrics["invalid.no_score"] == 12


def test_logprob_mode_reads_digit_probabilities_with_a_mass_floor(spark, translated, tmp_path) -> None:
    cfg = ScoreConfig(model="fake", mode="logprob", model_options=fake_options(tmp_path), sanity_pairs=4,
                      output_table="scores_logprob")  # fmt: skip
    translated.job = cfg
    outcome = run_job(get_job("score"), translated, spark)
    rows = spark.table(f"{translated.tables.schema}.scores_logprob").where("pair_kind = 'matched'").collect()
    assert len(rows) == 12
    for r in rows:
        assert r["mode"] == "logprob" and r["valid"] and r["digit_mass"] == pytest.approx(0.9)
        assert 1.0 <= r["expected_score"] <= 5.0 and r["score"] in range(1, 6) and r["raw_output"] is None
    assert outcome.metrics["valid_rate"] == 1.0

    # below the floor the row stays, marked invalid with its reason (another table: same step version otherwise)
    translated.job = replace(cfg, output_table="scores_low", model_options=fake_options(tmp_path, digit_mass=0.3))
    low = run_job(get_job("score"), translated, spark)
    rows = spark.table(f"{translated.tables.schema}.scores_low").where("pair_kind = 'matched'").collect()
    assert all(not r["valid"] and r["invalid_reason"] == "low_digit_mass" for r in rows)
    assert all(r["digit_mass"] == pytest.approx(0.3) and r["expected_score"] is not None for r in rows)
    assert low.metrics["valid_rate"] == 0.0
