"""Fixtures of the Spark tests: small input tables that several jobs' tests start from."""

from __future__ import annotations

import pytest

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
