"""dedup on real Spark + Delta: exact and near duplicates, deterministic survivors, re-runs and incremental batches."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from backforth.config import ConfigError
from backforth.jobs.dedup import DedupConfig, deduplicate, run

pytestmark = pytest.mark.spark
random.seed(7)
VOCAB = [f"w{i}" for i in range(5000)]


def text(n: int = 300) -> str:
    return " ".join(random.choice(VOCAB) for _ in range(n))


def edit(t: str, rate: float, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) if rng.random() < rate else w for w in t.split())


A, B, C = text(), text(), text()
DOCS = {
    "a": A,
    "a_copy": A.upper(),  # same text after lowercasing: exact
    "a_near": edit(A, 0.02, 1) + " extra closing words here",  # J ≈ 0.85, longer: survives its cluster
    "b": B,
    "b_far": edit(B, 0.25, 2),  # J ≈ 0.1: a different document
    "c": C,
    "c_trunc": " ".join(C.split()[:250]),  # J ≈ 0.83
}


def frame(spark, docs: dict[str, str]):
    rows = [(k, t, len(t.split())) for k, t in docs.items()]
    return spark.createDataFrame(rows, "doc_id string, text string, n_words int")


def result(spark, docs: dict[str, str], cfg: DedupConfig | None = None, partitions: int = 2) -> dict:
    rows, _, _ = deduplicate(spark, frame(spark, docs).repartition(partitions), cfg or DedupConfig())
    return {r["doc_id"]: (r["cluster_id"], r["is_kept"], r["dup_reason"]) for r in rows.collect()}


def test_exact_and_near_duplicates_with_deterministic_survivors(spark) -> None:
    out = result(spark, DOCS)
    assert out == {
        "a": ("a", False, "dup_minhash"),
        "a_copy": ("a", False, "dup_exact"),
        "a_near": ("a", True, None),  # most words wins; the cluster is named by its smallest id
        "b": ("b", True, None),
        "b_far": ("b_far", True, None),
        "c": ("c", True, None),
        "c_trunc": ("c", False, "dup_minhash"),
    }
    shuffled = dict(reversed(list(DOCS.items())))
    assert result(spark, shuffled, partitions=5) == out


def test_threshold_is_respected(spark) -> None:
    out = result(spark, {"x": A, "y": edit(A, 0.08, 3)}, DedupConfig(threshold=0.9))  # J ≈ 0.6 < 0.9
    assert out == {"x": ("x", True, None), "y": ("y", True, None)}


def write_clean(spark, schema: str, docs: dict[str, str]) -> None:
    df = frame(spark, docs).selectExpr("*", "CAST(NULL AS string) AS drop_reason")
    df.write.format("delta").mode("append").saveAsTable(f"{schema}.docs_clean")


def test_run_twice_then_incremental_batch(spark, make_settings) -> None:
    settings = make_settings(DedupConfig())
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    write_clean(spark, schema, {"a": A, "b": B})
    first = run(spark, settings).metrics
    assert (first["docs_in"], first["docs_kept"]) == (2, 2)
    assert run(spark, settings).metrics["docs_in"] == 0
    sig_version = spark.sql(f"DESCRIBE HISTORY {schema}.dedup_signatures").count()

    write_clean(spark, schema, {"a_later": edit(A, 0.01, 9), "a_copy_later": A, "d": text()})
    later = run(spark, settings).metrics
    assert (later["docs_in"], later["docs_kept"], later["dropped.dup_minhash"], later["dropped.dup_exact"]) == (
        3, 1, 1, 1,
    )  # fmt: skip
    rows = {
        r["doc_id"]: (r["cluster_id"], r["is_kept"], r["dup_reason"])
        for r in spark.table(f"{schema}.docs_dedup").collect()
    }
    assert rows["a"] == ("a", True, None)  # an earlier decision is never revised
    assert rows["a_later"] == ("a", False, "dup_minhash")
    assert rows["a_copy_later"] == ("a", False, "dup_exact")
    assert rows["d"][1:] == (True, None)
    sigs = [r["doc_id"] for r in spark.table(f"{schema}.dedup_signatures").collect()]
    assert sorted(sigs) == ["a", "a_later", "b", "d"]  # earlier signatures reused, not recomputed
    assert spark.sql(f"DESCRIBE HISTORY {schema}.dedup_signatures").count() == sig_version + 1


def test_changed_parameters_refuse_to_mix(spark, make_settings) -> None:
    settings = make_settings(DedupConfig())
    spark.sql(f"CREATE SCHEMA {settings.tables.schema}")
    write_clean(spark, settings.tables.schema, {"a": A})
    run(spark, settings)
    other = replace(settings, job=replace(settings.job, bands=16, rows=8))
    with pytest.raises(ConfigError, match="was built with dedup-v2-.* this run is dedup-v2-"):
        run(spark, other)


def test_crowded_buckets_list_every_pair(spark) -> None:
    docs = {"base": A, **{f"v{i}": edit(A, 0.01, 20 + i) for i in range(4)}, "other": B}
    out = result(spark, docs, partitions=3)
    survivor = min((k for k in docs if k != "other"), key=lambda k: (-len(docs[k].split()), k))
    assert {k: v[0] for k, v in out.items()} == {**dict.fromkeys(docs, "base"), "other": "other"}
    assert sorted(k for k, v in out.items() if v[1]) == sorted([survivor, "other"])
    assert {v[2] for k, v in out.items() if not v[1]} == {"dup_minhash"}


def test_new_document_bridging_two_earlier_clusters_joins_the_smaller(spark, make_settings) -> None:
    words = text(500).split()
    settings = make_settings(DedupConfig(bands=32, rows=2, threshold=0.4))  # candidates at J = 0.5: 0.9999
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    write_clean(spark, schema, {"y": " ".join(words[200:500]), "x": " ".join(words[:300])})  # J ≈ 0.2
    assert run(spark, settings).metrics["docs_kept"] == 2
    write_clean(spark, schema, {"z": " ".join(words[100:400]), "x_again": " ".join(words[:300]).upper()})
    later = run(spark, settings).metrics  # z: J ≈ 0.5 with each of x and y
    assert (later["docs_in"], later["docs_kept"]) == (2, 0)
    rows = {r["doc_id"]: tuple(r)[1:] for r in spark.table(f"{schema}.docs_dedup").select(
        "doc_id", "cluster_id", "is_kept", "dup_reason").collect()}  # fmt: skip
    assert rows == {
        "x": ("x", True, None),
        "y": ("y", True, None),  # earlier decisions stay
        "z": ("x", False, "dup_minhash"),
        "x_again": ("x", False, "dup_exact"),
    }


def test_scratch_tables_where_checkpoints_are_refused_give_the_same_answer(spark, make_settings) -> None:
    """Databricks Serverless refuses local checkpoints: with spark.checkpoint=table every intermediate result goes
    through a scratch Delta table in the job's schema instead; dedup decides the same, and the runner drops them."""
    from backforth import keep
    from backforth.registry import get_job
    from backforth.runner import run_job

    expected = result(spark, DOCS)
    settings = make_settings(DedupConfig())
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    write_clean(spark, schema, DOCS)
    settings.spark.checkpoint = "table"
    try:
        keep.configure("table", schema)
        assert result(spark, DOCS) == expected
        made = keep.drop_scratch(spark)
        assert len(made) >= 6 and all(n.replace("`", "").startswith(f"{schema}._backforth_scratch_") for n in made)
        outcome = run_job(get_job("dedup"), settings, spark)  # the runner configures and cleans up itself
    finally:
        keep.configure("auto", None)
    assert outcome.metrics["docs_kept"] == sum(1 for _, kept, _ in expected.values() if kept)
    left = [r["tableName"] for r in spark.sql(f"SHOW TABLES IN {schema}").collect()]
    assert not [t for t in left if t.startswith("_backforth_scratch_")] and "docs_dedup" in left
