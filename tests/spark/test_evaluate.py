"""evaluate end to end on the tiny random model: fine-tune on two training sets of an export, answer held-out
instructions with each (transformers engine in a Spark stage), judge both orders, write eval_verdicts."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from backforth import lineage
from backforth.catalog import SEED_TAG, WEB_TAG
from backforth.config import ConfigError
from backforth.engines import Sampling
from backforth.finetune import cpu_preset
from backforth.jobs.evaluate import EvalInstructions, EvaluateConfig
from backforth.jobs.report.aggregate import evaluation_stats
from backforth.jobs.report.sections import evaluation_section
from backforth.jobs.report.selection import Versions
from backforth.lineage import InputRef, StepRun
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark
EX, RW = "export-test0001", "rw-v1-test"
T0 = datetime(2024, 1, 1)
MESSAGES = "array<struct<role:string,content:string>>"


def build_export(spark, schema: str) -> None:
    """sft_pairs of one rewrite export: 12 generated and 6 seed pairs in train, 2 in validation, 1 dropped."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    rows = []
    for i in range(21):
        kind = "seed" if i % 3 == 0 else "rewrite"
        instruction = f"How do I look after plant number {i} in winter?"
        response = f"Water plant {i} less often, keep it near light and away from the radiator."
        tag = SEED_TAG if kind == "seed" else WEB_TAG
        split = "validation" if i in (19, 20) else "train"
        drop = "contaminated" if i == 18 else None
        rows.append((f"p{i:02d}", [("user", f"{instruction}\n\n{tag}"), ("assistant", response)], instruction,
                     response, kind, split, EX, drop))  # fmt: skip
    spark.createDataFrame(rows, f"pair_id string, messages {MESSAGES}, instruction string, response string, "
                                "kind string, split string, step_version string, drop_reason string") \
        .write.format("delta").saveAsTable(f"{schema}.sft_pairs")  # fmt: skip
    run = StepRun("export", step_version=EX, status="finished", output_table=f"{schema}.sft_pairs",
                  inputs=[InputRef(f"{schema}.responses", "rewrite", RW)], params={"kind": "rewrite"},
                  started_at=T0, finished_at=T0)  # fmt: skip
    spark.createDataFrame([run.as_row()], lineage.schema()).write.format("delta").saveAsTable(f"{schema}.step_runs")


@pytest.mark.timeout(900)
def test_evaluate_fine_tunes_answers_and_judges_both_orders(
    spark, make_settings, tiny_model: Path, tmp_path: Path
) -> None:
    items = tmp_path / "heldout.jsonl"
    items.write_text("".join(json.dumps({"id": f"q{i}", "instruction": text}) + "\n" for i, text in enumerate([
        "How should I water a cactus?", "What is a good first houseplant?", "Why do leaves turn yellow?",
        "How much light does a fern need?", ""])), encoding="utf-8")  # fmt: skip
    judge_log = tmp_path / "judge-log"
    cfg = EvaluateConfig(
        instructions=EvalInstructions(path=str(items)),
        presets={"cpu": replace(cpu_preset(), base_model=str(tiny_model), max_steps=2, batch_size=4,
                                micro_batch_size=4)},
        answer_sampling=Sampling(temperature=0.0, top_p=1.0, max_tokens=12),
        judge="fake",
        # a judge that always prefers the answer shown first: both orders cancel it, every item is a tie
        judge_options={"options": {"reply": "The first one reads better. Verdict: A", "log_dir": str(judge_log)}},
        models_dir=str(tmp_path / "models"),
    )  # fmt: skip
    settings = make_settings(cfg)
    schema = settings.tables.schema
    build_export(spark, schema)
    outcome = run_job(get_job("evaluate"), settings, spark)
    m = outcome.metrics
    assert m["items"] == 4  # the empty instruction is not an item
    assert m["candidate.pairs"] == 12 + 6 and m["baseline.pairs"] == 6  # train split: the mixture; its seeds alone
    assert m["candidate.reused"] == 0 and m["candidate.steps_total"] == 2
    assert m["win_rate"] == 0.5 and m["outcome.tie"] == 4 and m["outcome.win"] == m["outcome.loss"] == 0
    assert (m["win_rate_ci_low"], m["win_rate_ci_high"]) == (0.5, 0.5)
    assert m["first_position_share"] == 1.0 and m["order_consistency"] == 0.0 and m["invalid_orders"] == 0

    version = outcome.tags["backforth.eval.version"]
    rows = spark.table(f"{schema}.eval_verdicts").where(f"step_version = '{version}'").orderBy("item_id").collect()
    assert [r["item_id"] for r in rows] == ["q0", "q1", "q2", "q3"]
    assert all(r["verdict_ab"] == "A" and r["verdict_ba"] == "A" and r["outcome"] == "tie" for r in rows)
    assert all(r["candidate_set"] == "rewrite" and r["baseline_set"] == "seed" and r["candidate_export"] == EX
               for r in rows)  # fmt: skip
    assert all(isinstance(r["candidate_answer"], str) and isinstance(r["baseline_answer"], str) for r in rows)
    # the judge saw each pair twice, the two answers swapped
    logged = [json.loads(x) for f in judge_log.glob("*.jsonl") for x in f.read_text().splitlines()]
    assert sum(x.get("n", 0) for x in logged if x["event"] == "generate") == 8

    # the report of the run whose responses that export exported shows this evaluation
    found = evaluation_stats(spark, settings, Versions(responses={"rewrite": RW}))
    assert found is not None and found["version"] == version and found["summary"].win_rate == 0.5
    section = evaluation_section(found)
    assert section.metrics["eval.win_rate"] == 0.5 and "evaluate_win_rate.png" in section.figures
    assert ["wins / ties / losses", "0 / 4 / 0"] in section.section.tables[0].rows
    assert evaluation_stats(spark, settings, Versions(responses={"rewrite": "rw-other"})) is None

    # the same evaluation again: both fine-tuned folders reused, the same version replaced, not duplicated
    again = run_job(get_job("evaluate"), settings, spark)
    assert again.metrics["candidate.reused"] == 1 and again.metrics["baseline.reused"] == 1
    assert again.tags["backforth.eval.version"] == version
    assert spark.table(f"{schema}.eval_verdicts").count() == 4

    # a training set that does not exist is a clear error, before any training
    settings.job = replace(cfg, baseline="distill")
    with pytest.raises(Exception, match="no finished `export` run"):
        run_job(get_job("evaluate"), settings, spark)
    settings.job = replace(cfg, candidate="rewrite@x")
    with pytest.raises(ConfigError, match="subset size"):
        run_job(get_job("evaluate"), settings, spark)
