"""seed → finetune → MLflow registry → backtranslate with models:/<name>@<alias>, on the tiny random model."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from backforth.engines import Sampling
from backforth.jobs.backtranslate import BacktranslateConfig
from backforth.jobs.finetune import FinetuneConfig, cpu_preset
from backforth.jobs.seed import SeedConfig, SeedInput
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark
FIXTURE = Path(__file__).resolve().parents[2] / "data" / "sample" / "seed"


def fixture_inputs() -> list[SeedInput]:
    return [SeedInput(str(FIXTURE / "oasst_trees.jsonl.gz"), "oasst", "sample-oasst"),
            SeedInput(str(FIXTURE / "pairs.jsonl"), "jsonl", "sample-pairs")]  # fmt: skip


def test_seed_reads_the_fixture_counts_rejects_and_a_rerun_adds_nothing(spark, make_settings):
    settings = make_settings(SeedConfig(inputs=fixture_inputs()))
    spec = get_job("seed")
    first = run_job(spec, settings, spark)
    schema = settings.tables.schema
    assert first.metrics["pairs_new"] == 37 and first.metrics["rejects"] == 15
    assert first.metrics["rejects.other_language"] == 3 and first.metrics["rejects.missing_rank"] == 1
    pairs = spark.table(f"{schema}.seed_pairs")
    assert pairs.count() == 37 and pairs.where("source = 'sample-oasst' AND lang = 'en'").count() == 32
    rejects = {r["reason"]: r["n"] for r in spark.sql(
        f"SELECT reason, count(*) AS n FROM {schema}.seed_rejects GROUP BY 1").collect()}  # fmt: skip
    assert sum(rejects.values()) == 15 and rejects["deleted"] == 2 and rejects["no_reply"] == 1
    again = run_job(spec, settings, spark)
    assert again.metrics["pairs_new"] == 0 and pairs.count() == 37
    assert spark.table(f"{schema}.seed_rejects").count() == 15


def test_finetune_registers_both_models_and_backtranslate_records_the_version(
    spark, make_settings, seed_tables, tiny_model: Path, tmp_path: Path
):
    import mlflow
    from mlflow import MlflowClient

    settings = make_settings(None)
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    pairs = [(f"p{i}", f"How does {t} work?", f"A short explanation of {t}, in two plain sentences. It ends here.")
             for i, t in enumerate(["a kite", "a lock", "a pump", "a sail", "a bell", "a fuse"])]  # fmt: skip
    spark.createDataFrame(pairs, "pair_id string, instruction string, response string").write.format(
        "delta").saveAsTable(f"{schema}.seed_pairs")  # fmt: skip
    names = {"backward": f"bw-{schema}", "forward": f"fw-{schema}"}
    train = replace(cpu_preset(), base_model=str(tiny_model), batch_size=4, micro_batch_size=2, epochs=2.0, max_steps=3)
    cfg = FinetuneConfig(presets={"cpu": train}, backward_name=names["backward"], forward_name=names["forward"],
                         output_dir=str(tmp_path / "ft"))  # fmt: skip
    settings.job = cfg
    spec = get_job("finetune")
    outcome = run_job(spec, settings, spark)
    m = outcome.metrics
    assert m["seed_pairs"] == 6 and m["backward.version"] == 1 and m["forward.version"] == 1
    assert m["backward.steps_total"] == 3 and m["backward.examples_seen"] == 12 and m["backward.reused"] == 0
    assert m["backward.first_loss"] > 0 and m["forward.last_loss"] > 0
    client = MlflowClient()
    # loss per step streamed to the run
    history = client.get_metric_history(outcome.run_id, "backward.loss")
    assert [h.step for h in history] == [1, 2, 3]
    assert history[0].value == pytest.approx(m["backward.first_loss"], abs=1e-3)
    table_version = outcome.tables[f"{schema}.seed_pairs"]
    for direction, name in names.items():
        version = client.get_model_version_by_alias(name, "candidate")
        assert str(version.version) == "1" and version.run_id == outcome.run_id
        assert version.tags["backforth.dataset"] == f"{schema}.seed_pairs@v{table_version}"
        assert version.tags["backforth.direction"] == direction and version.tags["backforth.seed"] == "42"
    assert not (tmp_path / "ft" / outcome.run_id).exists() or not any((tmp_path / "ft" / outcome.run_id).iterdir())

    # the same settings and data again: the registered versions are reused, nothing is trained
    again = run_job(spec, settings, spark)
    assert again.metrics["backward.reused"] == 1 and again.metrics["backward.version"] == 1
    assert "backward.loss" not in mlflow.get_run(again.run_id).data.metrics

    # generate with the registered backward model through its alias: rows and tags name the exact version
    seed_tables(settings, 3)
    uri = f"models:/{names['backward']}@candidate"
    settings.job = BacktranslateConfig(
        model="smollm2-hf", model_options={"model": uri, "max_model_len": 2048, "batch_size": 3},
        sampling=Sampling(max_tokens=6),
    )  # fmt: skip
    bt = run_job(get_job("backtranslate"), settings, spark)
    rows = spark.table(f"{schema}.instructions").collect()
    assert len(rows) == 3 == bt.metrics["docs_rows"]
    assert {r["model"]["uri"] for r in rows} == {f"models:/{names['backward']}/1"}
    assert {r["model"]["version"] for r in rows} == {"1"}
    assert all(r["error"] is None and r["output_tokens"] > 0 for r in rows)
    tags = mlflow.get_run(bt.run_id).data.tags
    assert tags["backforth.model_version"] == f"{names['backward']}/1" and tags["backforth.model_requested"] == uri
    # any row traces back to the registered version, its training run and its data
    row_uri = rows[0]["model"]["uri"]
    name, version = row_uri.removeprefix("models:/").rsplit("/", 1)
    traced = client.get_model_version(name, version)
    assert traced.run_id == outcome.run_id and traced.tags["backforth.direction"] == "backward"

    # retrain moves the alias to version 2: the profile now pins version 2, a new step version (new rows beside)
    settings.job = replace(cfg, retrain=True, directions=["backward"])
    moved = run_job(spec, settings, spark)
    assert moved.metrics["backward.version"] == 2 and moved.metrics["backward.reused"] == 0
    from backforth.engines import load_profile
    from backforth.llm import step_version
    from backforth.udfs.prompts import load_prompt

    pinned = load_profile("smollm2-hf", {"model": uri})
    assert pinned.model == f"models:/{names['backward']}/2"
    template, sampling = load_prompt("backtranslate"), Sampling(max_tokens=6)
    assert step_version("bt-v1", pinned, sampling, template) != rows[0]["step_version"]
    with pytest.raises(Exception, match="not found in the model registry"):
        load_profile("smollm2-hf", {"model": f"models:/{names['backward']}@no-such-alias"})

    from backforth.registered_models import cache_folder, pin

    for v in ("1", "2"):  # the workers' downloads of this test's versions
        shutil.rmtree(cache_folder(pin(f"models:/{names['backward']}/{v}").as_dict()), ignore_errors=True)
