"""backtranslate on real Spark + Delta with the fake engine: rows, re-runs, crash and resume, one engine per worker."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from backforth.config import Settings
from backforth.failures import task_failure
from backforth.jobs.backtranslate import BacktranslateConfig
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def seeded(new_settings, seed_tables) -> Settings:
    """docs_clean + docs_dedup with 12 kept documents, once for the module: the tests only read them, and each
    writes an instructions table of its own."""
    settings = new_settings()
    seed_tables(settings)
    return settings


def fake_cfg(log_dir: Path, **options) -> BacktranslateConfig:
    return BacktranslateConfig(model="fake", model_options={"options": {"log_dir": str(log_dir), **options}},
                               shard_rows=4)  # fmt: skip


def generated(log_dir: Path) -> list[dict]:
    return [json.loads(x) for p in log_dir.glob("engine-*.jsonl") for x in p.read_text().splitlines()]


def prompts_generated(log_dir: Path) -> int:
    return sum(e.get("n", 0) for e in generated(log_dir) if e["event"] == "generate")


def test_backtranslate_writes_a_row_per_kept_document_and_a_rerun_adds_nothing(spark, seeded, tmp_path):
    settings = replace(seeded, job=fake_cfg(tmp_path / "log"))
    spec = get_job("backtranslate")
    outcome = run_job(spec, settings, spark)
    table = f"{settings.tables.schema}.instructions"
    rows = {r["doc_id"]: r for r in spark.table(table).collect()}
    assert sorted(rows) == [f"d{i:02d}" for i in range(12)]  # kept docs only: not `dropped`, not `dup`
    row = rows["d03"]
    assert row["instruction"].startswith("Could you ") and row["instruction"].endswith("?")
    assert row["raw_output"] == row["instruction"] and row["reject_reason"] is None and row["error"] is None
    assert row["prompt_tokens"] > 20 and row["output_tokens"] > 2 and row["finish_reason"] == "stop"
    assert row["model"]["profile"] == "fake" and row["model"]["backend"] == "fake"
    assert row["prompt"]["name"] == "backforth-backtranslate" and row["prompt"]["version"] == "1"
    assert row["prompt"]["uri"] == "prompts:/backforth-backtranslate/1"
    assert row["sampling"]["temperature"] == 1.0 and row["sampling"]["top_p"] == 0.9 and row["sampling"]["seed"] >= 0
    assert row["step_version"].startswith("bt-v1-")
    assert len({r["batch_id"] for r in rows.values()}) == outcome.metrics["shards"] >= 2
    assert outcome.metrics["docs_rows"] == 12 and outcome.metrics["outcome.accepted"] == 12
    calls = prompts_generated(tmp_path / "log")
    assert calls == 12

    again = run_job(spec, settings, spark)
    assert spark.table(table).count() == 12 and again.metrics["docs_rows"] == 0
    assert prompts_generated(tmp_path / "log") == calls  # nothing regenerated

    # the MLflow run records the step version, the model and the registered prompt
    import mlflow

    run = mlflow.get_run(outcome.run_id)
    assert run.data.tags["backforth.step_version"] == row["step_version"]
    assert run.data.tags["backforth.prompt.backtranslate"] == "backforth-backtranslate@1"
    assert "placeholder" in run.data.tags["backforth.quality_note"]
    prompt = mlflow.genai.load_prompt("prompts:/backforth-backtranslate/1")
    assert "{{document}}" in json.dumps(prompt.template)

    # a changed sampling setting is a new step version: all documents again, old rows kept beside the new
    settings.job = replace(settings.job, sampling=replace(settings.job.sampling, temperature=0.7))
    third = run_job(spec, settings, spark)
    assert third.metrics["docs_rows"] == 12 and spark.table(table).count() == 24


def test_crash_mid_run_resumes_without_regenerating_finished_shards(spark, seeded, tmp_path):
    log = tmp_path / "log"
    output = "instructions_crash"
    settings = replace(
        seeded, job=replace(fake_cfg(log, fail_after=5), shard_rows=3, shards_in_flight=1, output_table=output)
    )  # one at a time: the crash hits a known shard
    spec = get_job("backtranslate")
    with pytest.raises(Exception, match="simulated crash") as failed:
        run_job(spec, settings, spark)
    # what the CLI prints for it: one line, the attempts Spark made, the engine's own error
    assert task_failure(failed.value) == (
        "a Spark task failed on every attempt: RuntimeError: fake engine: simulated crash after 5 prompts "
        "(what earlier tasks committed is kept; run the same command again to resume)"
    )
    table = f"{settings.tables.schema}.{output}"
    written = spark.table(table).count()
    assert 0 < written < 12  # the finished shards were committed, the one in flight was not
    before = prompts_generated(log)

    settings.job = replace(fake_cfg(log), shard_rows=3, output_table=output)
    resumed = run_job(spec, settings, spark)
    assert resumed.metrics["docs_rows"] == 12 - written
    assert prompts_generated(log) - before == 12 - written  # only the unfinished documents were generated again
    rows = spark.table(table).groupBy("doc_id").count().collect()
    assert len(rows) == 12 and all(r["count"] == 1 for r in rows)


def test_a_transient_engine_fault_is_retried_and_loses_nothing(spark, seeded, tmp_path):
    """The engine raises on its first two calls (as a GPU worker that hits a transient error would): Spark tries
    those tasks again and the step finishes with every document once."""
    log = tmp_path / "log"
    settings = replace(
        seeded, job=replace(fake_cfg(log, fail_times=2), shard_rows=3, output_table="instructions_flaky")
    )
    outcome = run_job(get_job("backtranslate"), settings, spark)
    assert sum(1 for e in generated(log) if e["event"] == "fault") == 2
    assert outcome.metrics["docs_rows"] == 12
    rows = spark.table(f"{settings.tables.schema}.instructions_flaky").groupBy("doc_id").count().collect()
    assert len(rows) == 12 and all(r["count"] == 1 for r in rows)


def test_an_engine_that_always_fails_is_one_line_from_the_cli(spark, seeded, tmp_path, capsys):
    from backforth.cli import main

    options = json.dumps({"options": {"log_dir": str(tmp_path / "log"), "fail_after": 0}})
    where = [f"data_dir={seeded.data_dir}", f"tables.schema={seeded.tables.schema}"]
    sets = [*where, "job.model=fake", f"job.model_options={options}", "job.output_table=instructions_failing"]
    code = main(["backtranslate", *[arg for s in sets for arg in ("--set", s)]])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("backforth:")]
    assert code == 1
    assert err == [
        "backforth: backtranslate failed: a Spark task failed on every attempt: RuntimeError: fake engine: simulated "
        "crash after 0 prompts (what earlier tasks committed is kept; run the same command again to resume)"
    ]


def test_one_engine_per_python_worker_across_tasks(spark, seeded, tmp_path):
    log = tmp_path / "log"
    cfg = replace(fake_cfg(log), shard_rows=2, model_options={"parallelism": 2, "options": {"log_dir": str(log)}},
                  output_table="instructions_engines")  # fmt: skip
    settings = replace(seeded, job=cfg)
    outcome = run_job(get_job("backtranslate"), settings, spark)
    events = generated(log)
    constructions: dict[int, int] = {}
    for e in events:
        if e["event"] == "construct":
            constructions[e["pid"]] = constructions.get(e["pid"], 0) + 1
    calls = [e for e in events if e["event"] == "generate"]
    assert outcome.metrics["shards"] >= 4 and len(calls) >= 4  # several tasks ...
    assert all(n == 1 for n in constructions.values())  # ... each worker built its engine once
    assert len(constructions) < len(calls)
    assert {e["pid"] for e in calls} <= set(constructions)


def test_cost_is_estimated_before_a_run_and_measured_per_row_after_it(spark, seeded, tmp_path):
    from backforth.costs import estimate
    from backforth.llm import STEPS

    log = tmp_path / "log"  # the simulated H100 (sleeps the time vLLM would take, here at 1/100 of it)
    options = {"options": {"log_dir": str(log), "time_scale": 0.01}, "gpu_hour_usd": 3.0}
    settings = replace(seeded, job=BacktranslateConfig(model="sim-h100", model_options=options,
                                                       output_table="instructions_costs"))  # fmt: skip
    table = f"{settings.tables.schema}.instructions_costs"
    before = estimate(spark, settings, STEPS["backtranslate"])
    assert before["pending_rows"] == 12 and before["prompt_tokens"] > 12 * 20
    assert before["output_basis"].startswith("half of max_tokens") and before["output_tokens"] == 12 * 64
    assert before["gpu_hours"] > 0 and before["cost_usd"] == round(before["gpu_hours"] * 3.0, 4)
    assert not spark.catalog.tableExists(table)  # a dry run generates and writes nothing

    outcome = run_job(get_job("backtranslate"), settings, spark)
    m = outcome.metrics
    rows = spark.table(table).collect()
    slept = sum(e["busy_s"] for e in generated(log) if e["event"] == "generate")
    busy = sum(r["engine_s"] for r in rows)
    assert all(r["engine_s"] > 0 for r in rows) and busy >= slept > 0  # each row carries its share of its call
    assert m["cost.engine_busy_s"] == pytest.approx(busy, abs=1e-3)
    assert m["cost.tokens_in"] == sum(r["prompt_tokens"] for r in rows)
    assert m["cost.tokens_out"] == sum(r["output_tokens"] for r in rows)
    assert m["cost.gpu_hours"] == pytest.approx(busy / 3600, rel=1e-3)  # one GPU per engine
    assert m["cost.usd"] == pytest.approx(m["cost.gpu_hours"] * 3.0, rel=1e-3)
    assert 0 < m["cost.accepted_rows"] <= 12
    assert m["cost.usd_per_1k_accepted"] == pytest.approx(m["cost.usd"] / m["cost.accepted_rows"] * 1000, rel=1e-3)

    after = estimate(spark, settings, STEPS["backtranslate"])
    assert after["pending_rows"] == 0 and after["output_basis"].startswith("mean of the rows")
