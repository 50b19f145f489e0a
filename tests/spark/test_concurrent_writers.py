"""Two runs of one LLM step with different step versions, started at the same moment against the same schema (as two
jobs on one metastore would be): both create-if-missing the output table and ``step_runs``, append their shards to
the same tables and MERGE their lineage rows. Delta's optimistic concurrency must let every commit land."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from backforth import lineage
from backforth.engines import Sampling
from backforth.jobs.backtranslate import BacktranslateConfig
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark


def test_two_versions_appending_to_one_table_at_once_both_land(spark, new_settings, seed_tables, tmp_path: Path):
    settings = new_settings()
    seed_tables(settings)
    configs = [
        BacktranslateConfig(model="fake", shard_rows=3, sampling=Sampling(temperature=t, max_tokens=64),
                            model_options={"options": {"log_dir": str(tmp_path / f"log{t}"), "delay_s": 0.2}})
        for t in (0.0, 0.7)
    ]  # fmt: skip
    start = threading.Barrier(2)
    outcomes, errors = {}, []

    def one(i: int) -> None:
        try:
            start.wait()
            outcomes[i] = run_job(get_job("backtranslate"), replace(settings, job=configs[i]), spark)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, [f"{type(e).__name__}: {str(e)[:1500]}" for e in errors]
    schema = settings.tables.schema
    rows = spark.table(f"{schema}.instructions").groupBy("step_version").count().collect()
    versions = {r["step_version"]: r["count"] for r in rows}
    assert len(versions) == 2 and set(versions.values()) == {12}  # every kept document, once per version
    assert spark.table(f"{schema}.instructions").select("doc_id", "step_version").distinct().count() == 24
    runs = lineage.runs(spark, settings, "backtranslate")
    assert sorted(r.step_version for r in runs) == sorted(versions)  # both lineage rows finished
    assert {r.run_id for r in runs} == {o.step_run for o in outcomes.values()}
    assert all(o.metrics["shards"] >= 4 for o in outcomes.values())
