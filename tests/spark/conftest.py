"""Fixtures of the Spark tests: small input tables that several jobs' tests start from."""

from __future__ import annotations

import pytest
from fake_run import FILTER_TOP_HALF, REWRITE_REPLY, fake

TOPICS = ["honey bees", "tidal pools", "sourdough starters", "granite", "bicycle gears", "paper folding", "comets",
          "fermenting cabbage", "lighthouse lenses", "moss gardens", "rain gauges", "clock escapements"]  # fmt: skip


def _seed_tables(spark, settings, n: int = 12) -> None:
    """docs_clean + docs_dedup with ``n`` kept documents, one dropped and one duplicate (never backtranslated)."""
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    texts = [(f"d{i:02d}", f"A long explanation about {t}, written for curious readers. " * (3 + i)) for i, t in
             enumerate(TOPICS[:n])]  # fmt: skip
    texts += [("dropped", "symbol soup %%%% ####"), ("dup", texts[0][1])]
    spark.createDataFrame(texts, "doc_id string, text string").write.format("delta").saveAsTable(f"{schema}.docs_clean")
    dedup = [(d, i < n) for i, (d, _) in enumerate(texts) if d != "dropped"]
    spark.createDataFrame(dedup, "doc_id string, is_kept boolean").write.format("delta").saveAsTable(
        f"{schema}.docs_dedup"
    )


@pytest.fixture(scope="session")
def seed_tables(spark):
    """``seed_tables(settings)``: docs_clean + docs_dedup with 12 kept documents in the settings' schema."""
    return lambda settings, n=12: _seed_tables(spark, settings, n)


@pytest.fixture
def answered(spark, seed_tables, tmp_path):
    """``answered(settings, suffix="")``: the seed documents (each text ending with ``suffix``) with docs_raw, then
    backtranslate → score → filter (top half) → rewrite with the fake engine; returns a function that runs a step
    with a config: ``run("filter", cfg)`` → metrics."""
    from dataclasses import replace

    from backforth.jobs.backtranslate import BacktranslateConfig
    from backforth.jobs.filter import FilterConfig
    from backforth.jobs.respond import RewriteConfig
    from backforth.jobs.score import ScoreConfig
    from backforth.registry import get_job
    from backforth.runner import run_job

    def build(settings, suffix: str = ""):
        seed_tables(settings)
        schema = settings.tables.schema
        if suffix:
            spark.sql(f"UPDATE {schema}.docs_clean SET text = concat(text, '{suffix.replace(chr(39), chr(39) * 2)}')")
        spark.table(f"{schema}.docs_clean").selectExpr(
            "doc_id", "concat('https://example.org/', doc_id) AS url", "'sample' AS source"
        ).write.format("delta").saveAsTable(f"{schema}.docs_raw")
        spark.sql(f"ALTER TABLE {schema}.docs_clean ADD COLUMNS (drop_reason string)")  # what the funnel counts
        spark.sql(f"ALTER TABLE {schema}.docs_dedup ADD COLUMNS (dup_reason string)")

        def run(step: str, cfg) -> dict:
            return run_job(get_job(step), replace(settings, job=cfg), spark).metrics

        run("backtranslate", BacktranslateConfig(model="fake", model_options=fake(tmp_path)))
        run("score", ScoreConfig(model="fake", model_options=fake(tmp_path, reply="Fine.\nScore: {digit}"),
                                 sanity_pairs=0))  # fmt: skip
        run("filter", FilterConfig(**FILTER_TOP_HALF))
        run("rewrite", RewriteConfig(model="fake", model_options=fake(tmp_path, reply=REWRITE_REPLY)))
        return run

    return build
