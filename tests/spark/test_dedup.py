"""dedup on real Spark + Delta: exact and near duplicates, deterministic survivors, re-runs and incremental batches."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from backforth import crash
from backforth.config import ConfigError
from backforth.jobs.dedup import DedupConfig, connected_components, deduplicate, run

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


def test_components_match_union_find_on_a_random_graph(spark) -> None:
    """Large/small-star rounds name every component by its smallest node, as a union-find over the same edges."""
    rng = random.Random(3)
    nodes = list({rng.randrange(-(2**63), 2**63) for _ in range(400)})  # exact hashes are signed 64-bit
    edges = {(rng.choice(nodes), rng.choice(nodes)) for _ in range(330)}  # sparse: many components, some chains
    parent = {n: n for n in nodes}

    def root(n: int) -> int:
        while parent[n] != n:
            n = parent[n]
        return n

    for a, b in edges:
        ra, rb = root(a), root(b)
        parent[max(ra, rb)] = min(ra, rb)
    touched = {n for e in edges for n in e if e[0] != e[1]}
    expected = {n: min(m for m in touched if root(m) == root(n)) for n in touched}
    frame = spark.createDataFrame([(a, b, 1.0) for a, b in edges], "a long, b long, jaccard double")
    components, rounds = connected_components(frame, 100, len(edges))
    got = {r["node"]: r["component"] for r in components.collect()}
    assert got == expected
    assert len(set(expected.values())) > 5 and rounds >= 2  # several components, not solved by the first round


def test_a_chain_of_10000_near_duplicates_is_one_cluster_in_logarithmic_rounds(spark) -> None:
    """Each document is the previous one shifted by 10 of its 100 words (estimated Jaccard ~0.8 with its neighbour,
    ~0.65 two steps away, ~0.5 three away): 10,001 documents linked end to end, whose ends share nothing. Label
    propagation needed a round per link of the longest path (thousands; it gave up after 30)."""
    rng = random.Random(11)
    words = [f"t{rng.randrange(10**9)}" for _ in range(10 * 10_000 + 100)]
    docs = {f"d{i:05d}": " ".join(words[10 * i : 10 * i + 100]) for i in range(10_001)}
    rows, _, stats = deduplicate(spark, frame(spark, docs).repartition(2), DedupConfig())
    assert stats["verified_pairs"] < 3 * 10_000  # near-duplicates only of near neighbours: a long chain, not a clique
    assert [r["doc_id"] for r in rows.where("is_kept").collect()] == ["d00000"]
    assert rows.select("cluster_id").distinct().collect()[0]["cluster_id"] == "d00000"
    assert rows.count() == 10_001
    assert stats["component_rounds"] <= 2 * math.ceil(math.log2(10_001))


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


REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def cli(*args: str, data: Path, crash_at: str | None = None) -> tuple[int, str]:
    """``backforth <args>`` in a process of its own (its own JVM and metastore, in ``data``): exit code and output.
    A process killed at a crash point leaves its JVM behind for a moment: it goes with the process group."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", crash.ENV)}
    if crash_at:
        env[crash.ENV] = crash_at
    log = data.parent / f"{data.name}-{len(list(data.parent.glob(f'{data.name}-*.log')))}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "backforth"), *args, "--set", f"data_dir={data}"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            code = proc.wait(timeout=300)
        finally:
            if crash_at or proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return code, log.read_text()


def printed_metric(output: str, name: str) -> float:
    return next(float(p[1]) for p in (line.split() for line in output.splitlines()) if len(p) == 2 and p[0] == name)


def one_word_edit(t: str, seed: int) -> str:
    rng = random.Random(seed)
    words = t.split()
    words[rng.randrange(len(words))] = rng.choice(VOCAB)
    return " ".join(words)


def decisions(df) -> dict:
    return {r["doc_id"]: (r["cluster_id"], r["is_kept"], r["dup_reason"], r["exact_hash"]) for r in df.collect()}


def stored_signatures(df) -> dict:
    return {r["doc_id"]: (r["exact_hash"], tuple(r["signature"]), tuple(r["bands"]), r["n_shingles"])
            for r in df.collect()}  # fmt: skip


@pytest.mark.timeout(900)
def test_killed_between_its_two_commits_a_rerun_repairs_and_later_batches_match_an_uninterrupted_run(
    spark, make_settings, tmp_path: Path
) -> None:
    """The kill the issue found: docs_dedup committed, dedup_signatures not. The rerun signs the documents again, so
    a later batch of one-word-edited copies is caught exactly as without the kill (compared with an uninterrupted
    run of the same batches)."""
    rng = random.Random(11)
    first = {f"doc{i:03d}": " ".join(rng.choice(VOCAB) for _ in range(300)) for i in range(240)}
    first.update({f"doc{i:03d}_copy": first[f"doc{i:03d}"].upper() for i in range(0, 20, 4)})
    first.update({f"doc{i:03d}_near": edit(first[f"doc{i:03d}"], 0.02, i) for i in range(1, 20, 4)})
    later = {f"doc{i:03d}_edit": one_word_edit(first[f"doc{i:03d}"], i) for i in range(20, 80)}
    later.update({f"new{i:02d}": " ".join(rng.choice(VOCAB) for _ in range(300)) for i in range(10)})

    settings = make_settings(DedupConfig())  # the uninterrupted run, in this process
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    write_clean(spark, schema, first)
    run(spark, settings)
    write_clean(spark, schema, later)
    run(spark, settings)
    expected = decisions(spark.table(f"{schema}.docs_dedup"))
    expected_sigs = stored_signatures(spark.table(f"{schema}.dedup_signatures"))
    assert all(expected[k][1:3] == (False, "dup_minhash") for k in later if k.endswith("_edit"))

    data, clean = tmp_path / "killed", tmp_path / "docs_clean"  # the killed run's own data folder, through the CLI
    frame(spark, first).selectExpr("*", "CAST(NULL AS string) AS drop_reason").write.format("delta").save(str(clean))
    code, out = cli("sql", "CREATE SCHEMA IF NOT EXISTS backforth",
                    f"CREATE TABLE backforth.docs_clean USING DELTA LOCATION '{clean}'", data=data)  # fmt: skip
    assert code == 0, out[-3000:]
    code, out = cli("dedup", data=data, crash_at="dedup.after_docs")
    assert code == -signal.SIGKILL and f"{crash.ENV}=dedup.after_docs" in out, out[-3000:]
    tables = data / "warehouse" / "backforth.db"
    signed = sum(1 for k, v in expected.items() if k in first and (v[1] or v[2] == "dup_minhash"))
    assert spark.read.format("delta").load(str(tables / "docs_dedup")).count() == len(first)
    assert spark.read.format("delta").load(str(tables / "dedup_signatures")).count() == 0

    code, out = cli("check", data=data)
    assert code == 1 and "has its signature in dedup_signatures" in out and "backforth dedup" in out, out[-3000:]
    code, out = cli("dedup", data=data)  # the rerun: nothing pending, the missing signatures written
    assert code == 0, out[-3000:]
    assert (printed_metric(out, "docs_in"), printed_metric(out, "signatures_repaired")) == (0, signed)

    frame(spark, later).selectExpr("*", "CAST(NULL AS string) AS drop_reason").write.format("delta").mode(
        "append"
    ).save(str(clean))
    code, out = cli("dedup", data=data)
    assert code == 0, out[-3000:]
    assert printed_metric(out, "dropped.dup_minhash") == 60 and printed_metric(out, "docs_kept") == 10
    assert decisions(spark.read.format("delta").load(str(tables / "docs_dedup"))) == expected
    assert stored_signatures(spark.read.format("delta").load(str(tables / "dedup_signatures"))) == expected_sigs
