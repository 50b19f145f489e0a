"""A fifth LLM step added by declaration only (one LLMStep and one prompt file): the driver does the rest —
pending rows, shards, resume, outcome counts, lineage in step_runs — and a second declared step reads the first
through the lineage resolver."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from backforth import lineage
from backforth.engines import Sampling
from backforth.llm import STEPS, Context, LLMStep, llm_step
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark

PROMPT = """name: title
version: 1
description: A short title for a document.
system: You write titles.
user: |-
  Write a five-word title for this text:
  {{document}}
"""


@dataclass
class TitleConfig:
    input_table: str = "docs_dedup"
    input_text_table: str = "docs_clean"
    output_table: str = "titles"
    input_version: str | None = None
    model: str = "fake"
    model_options: dict[str, Any] = field(default_factory=dict)
    sampling: Sampling = field(default_factory=lambda: Sampling(max_tokens=16))
    prompt: str = "title"
    version: str = "title-v1"
    shard_rows: int = 5
    limit: int | None = None


def declare(prompts: Path) -> LLMStep:
    def kept(ctx: Context) -> Any:
        docs = ctx.read(ctx.cfg.input_table).where("is_kept").select("doc_id")
        return docs.join(ctx.read(ctx.cfg.input_text_table).select("doc_id", "text"), "doc_id")

    def columns(ctx: Context) -> list[Any]:
        from pyspark.sql import functions as F

        return [F.col("gen.text").alias("title")]

    return llm_step(LLMStep(
        name="toy_title", description="Title each kept document (a test's toy step).", config=TitleConfig,
        table="titles", prompts=prompts, rows=kept, variables={"document": "text"}, columns=columns,
        outcome="CASE WHEN error IS NULL THEN 'titled' ELSE 'engine_error' END",
    ))  # fmt: skip


def test_a_toy_llm_step_needs_one_declaration_and_one_prompt_file(spark, new_settings, seed_tables, tmp_path):
    (tmp_path / "title.yaml").write_text(PROMPT, encoding="utf-8")
    declare(tmp_path)
    assert "toy_title" in STEPS and get_job("toy_title").summary.startswith("Title each kept document")
    log_dir = tmp_path / "log"
    cfg = TitleConfig(model_options={"options": {"log_dir": str(log_dir), "reply": "A title about {words}"}})
    settings = new_settings(cfg)
    seed_tables(settings)

    outcome = run_job(get_job("toy_title"), settings, spark)
    rows = spark.table(f"{settings.tables.schema}.titles").collect()
    assert sorted(r["doc_id"] for r in rows) == [f"d{i:02d}" for i in range(12)]  # kept documents only
    assert all(r["title"].startswith("A title about") and r["step_version"].startswith("title-v1-") for r in rows)
    assert outcome.metrics["rows_rows"] == 12 and outcome.metrics["outcome.titled"] == 12
    assert outcome.metrics["shards"] >= 2 and outcome.metrics["accepted_share"] == 1.0

    # lineage: one finished row with what the step read, the model, the prompt and the row counts
    run = lineage.resolve(spark, settings, "toy_title")
    assert run.run_id == outcome.step_run and run.status == "finished"
    assert run.step_version == rows[0]["step_version"] and run.rows_in == 12 and run.rows_out == 12
    assert {i.table.split(".")[-1] for i in run.inputs} == {"docs_dedup", "docs_clean"}
    assert all(i.table_version is not None for i in run.inputs)
    assert run.model["profile"] == "fake" and run.prompt["name"] == "backforth-title"
    assert run.output_table == f"{settings.tables.schema}.titles" and run.output_version is not None

    # a re-run generates nothing and records a second finished run of the same version
    again = run_job(get_job("toy_title"), settings, spark)
    assert again.metrics["rows_rows"] == 0 and spark.table(f"{settings.tables.schema}.titles").count() == 12
    assert [r.step_version for r in lineage.runs(spark, settings, "toy_title")] == [run.step_version] * 2

    # a second declared step reads the first through the resolver: its step_version depends on the input run
    def titles(ctx: Context) -> Any:
        return ctx.read_upstream().select("doc_id", "title")

    def echo(ctx: Context) -> list[Any]:
        from pyspark.sql import functions as F

        return [F.col("gen.text").alias("check")]

    (tmp_path / "check.yaml").write_text(PROMPT.replace("name: title", "name: check").replace("{{document}}",
                                                                                           "{{title}}"))  # fmt: skip
    llm_step(LLMStep(name="toy_check", description="Check each title.", config=TitleConfig, table="checks",
                     prompts=tmp_path, rows=titles, variables={"title": "title"}, columns=echo,
                     reads=lambda cfg: "toy_title"))  # fmt: skip
    settings.job = replace(cfg, output_table="checks", prompt="check", version="check-v1")
    checked = run_job(get_job("toy_check"), settings, spark)
    assert checked.metrics["rows_rows"] == 12
    check_run = lineage.resolve(spark, settings, "toy_check")
    assert check_run.input("toy_title").step_version == run.step_version
    assert lineage.chain(spark, settings, check_run)["toy_title"].step_version == run.step_version
    import mlflow  # the resolved input is an MLflow dataset of the run too, at the Delta version read

    tags = mlflow.get_run(checked.run_id).data.tags
    assert (
        tags["input.toy_title"]
        == f"{run.output_table}@v{check_run.input('toy_title').table_version} ({run.step_version})"
    )
    assert check_run.mlflow_run_id == checked.run_id

    # a pinned input version that never finished is a one-line user error
    from backforth.errors import UserError

    settings.job = replace(settings.job, input_version="title-v1-nope")
    with pytest.raises(UserError, match="no finished `toy_title` run has that step version"):
        run_job(get_job("toy_check"), settings, spark)
    assert lineage.runs(spark, settings, "toy_check", status="failed")[0].error.startswith("UserError")
