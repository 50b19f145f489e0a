"""Deduplicate the kept documents of docs_clean into docs_dedup: exact copies, then MinHash LSH near-duplicates.

Input: ``docs_clean`` rows with ``drop_reason IS NULL`` (key ``doc_id``). Output: ``docs_dedup`` (key ``doc_id``):
``cluster_id`` (the smallest doc_id of the cluster; a singleton's own id), ``is_kept``, ``dup_reason``
(``dup_exact`` / ``dup_minhash``), ``exact_hash``; and ``dedup_signatures`` (signature and band keys per
exact-survivor), so a later batch is compared with earlier ones without recomputing them. Phases: exact hash →
signatures → bands → candidate pairs → verified edges (estimated Jaccard ≥ threshold) → connected components (label
propagation in Spark) → survivors (most words, then smallest doc_id: the same whatever the partitioning).
Earlier decisions are never revised: a new document that joins an earlier cluster is a duplicate of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from backforth.config import ConfigError
from backforth.registry import JobResult, job
from backforth.tables import append, ensure_table, pending_rows, qualify, table_exists
from udfs.minhash import SIGNATURE_SCHEMA, make_minhash_mapper

SIG_COLUMNS = ("signature", "bands", "n_shingles")
BROADCAST_PAIRS = 2_000_000  # candidate pairs (two ids each, ~100 B) below this are shipped to executors whole

log = logging.getLogger("backforth.dedup")


@dataclass
class DedupConfig:
    input_table: str = "docs_clean"
    output_table: str = "docs_dedup"
    signatures_table: str = "dedup_signatures"
    ngram: int = 5  # word n-gram shingles
    bands: int = 32  # P(candidate) = 1 - (1 - J^rows)^bands: 0.99 at J = 0.6, 0.56 at 0.4, 0.05 at 0.2
    rows: int = 4
    num_perm: int = 128  # ≥ bands × rows; the rest only sharpens the Jaccard estimate
    threshold: float = 0.6  # verified pairs need estimated Jaccard ≥ this
    seed: int = 42
    max_iterations: int = 30  # label propagation rounds; clusters of web duplicates converge in a handful
    version: str = "dedup-v1"

    def fingerprint(self) -> str:
        """``dedup-v1-<hash of the parameters that decide what is a duplicate>``."""
        keys = {
            k: v for k, v in asdict(self).items() if k in ("ngram", "bands", "rows", "num_perm", "threshold", "seed")
        }
        return f"{self.version}-{hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:8]}"


def signatures_of(docs: Any, cfg: DedupConfig) -> Any:
    """(doc_id, text, n_words) → (doc_id, n_words, exact_hash, signature, bands, n_shingles): the one pass over the
    text. Everything after it shuffles these small rows, never the documents."""
    from pyspark.sql import functions as F

    mapper = make_minhash_mapper(cfg.ngram, cfg.num_perm, cfg.bands, cfg.rows, cfg.seed)
    rows = docs.select("doc_id", F.col("n_words").cast("int"), "text")
    return rows.mapInArrow(mapper, f"doc_id string, n_words int, exact_hash bigint, {SIGNATURE_SCHEMA}")


def exact_groups(sigs: Any) -> Any:
    """+ exact_survivor: within each exact_hash, the first by most words, then doc_id."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("exact_hash").orderBy(F.desc("n_words"), "doc_id")
    return sigs.withColumn("exact_survivor", F.first("doc_id").over(order))


def candidate_pairs(new_sigs: Any, earlier_sigs: Any = None) -> Any:
    """Pairs (a < b) that share at least one band key, at least one of them new. One shuffle: documents are
    bucketed by key (keys already carry their band's index) and pairs come out of the buckets that hold several."""
    from pyspark.sql import functions as F

    tagged = new_sigs.select("doc_id", F.lit(True).alias("new"), "bands")
    if earlier_sigs is not None:
        tagged = tagged.unionByName(earlier_sigs.select("doc_id", F.lit(False).alias("new"), "bands"))
    exploded = tagged.select(F.struct("doc_id", "new").alias("d"), F.explode("bands").alias("key"))
    buckets = exploded.groupBy("key").agg(F.collect_list("d").alias("m")).where(F.size("m") > 1)
    pairs = buckets.select(F.explode("m").alias("x"), "m").select("x", F.explode("m").alias("y"))
    pairs = pairs.where((F.col("x.doc_id") < F.col("y.doc_id")) & (F.col("x.new") | F.col("y.new")))
    return pairs.select(F.col("x.doc_id").alias("a"), F.col("y.doc_id").alias("b")).distinct()


def verified_edges(pairs: Any, sigs: Any, threshold: float, broadcast: bool = False) -> Any:
    """Candidate pairs whose signatures agree on at least ``threshold`` of their positions. ``broadcast`` ships the
    pairs to the signatures instead of shuffling the signatures (the right call while pairs are few)."""
    from pyspark.sql import functions as F

    pairs = F.broadcast(pairs) if broadcast else pairs
    left = sigs.select(F.col("doc_id").alias("a"), F.col("signature").alias("sa"))
    right = sigs.select(F.col("doc_id").alias("b"), F.col("signature").alias("sb"))
    same = F.aggregate(
        F.zip_with("sa", "sb", lambda x, y: F.when(x == y, 1).otherwise(0)), F.lit(0), lambda s, v: s + v
    )
    scored = pairs.join(left, "a").join(right, "b").withColumn("jaccard", same / F.size("sa"))
    return scored.where(F.col("jaccard") >= threshold).select("a", "b", "jaccard")


def connected_components(edges: Any, seeds: Any, max_iterations: int) -> Any:
    """Label propagation: every node ends with the smallest label in its component. ``seeds`` (node, label) gives
    starting labels (earlier documents pass '0'+cluster_id so they win over new ones, which start as '1'+doc_id)."""
    from pyspark.sql import functions as F

    both = edges.select("a", "b").unionByName(edges.select(F.col("b").alias("a"), F.col("a").alias("b")))
    nodes = both.select(F.col("a").alias("node")).distinct()
    labels = nodes.join(seeds, "node", "left").select(
        "node", F.coalesce("label", F.concat(F.lit("1"), "node")).alias("label")
    )
    labels = labels.localCheckpoint()
    for iteration in range(max_iterations):
        spread = both.join(labels.withColumnRenamed("node", "b"), "b").groupBy(F.col("a").alias("node"))
        proposed = spread.agg(F.min("label").alias("offer"))
        updated = (
            labels.join(proposed, "node", "left")
            .select(
                "node",
                F.least("label", F.coalesce("offer", "label")).alias("label"),
                (F.col("offer") < F.col("label")).alias("moved"),
            )
            .localCheckpoint()
        )
        moved = updated.where("moved").count()
        labels = updated.drop("moved")
        log.info("components: round %d, %d labels changed", iteration + 1, moved)
        if moved == 0:
            return labels
    raise RuntimeError(f"connected components did not converge in {max_iterations} rounds (raise job.max_iterations)")


def deduplicate(spark: Any, docs: Any, cfg: DedupConfig, earlier: Any = None, earlier_sigs: Any = None) -> tuple:
    """Pure core of the job: new kept docs (doc_id, text, n_words) → (docs_dedup rows, signature rows, stats).
    ``earlier`` (doc_id, cluster_id, exact_hash) and ``earlier_sigs`` are what previous batches left."""
    from pyspark.sql import functions as F

    if docs.rdd.getNumPartitions() < spark.sparkContext.defaultParallelism:  # the UDF is the heavy part: use all cores
        docs = docs.repartition(spark.sparkContext.defaultParallelism)
    sigs = exact_groups(signatures_of(docs, cfg))
    if earlier is None:
        earlier = spark.createDataFrame([], "doc_id string, cluster_id string, exact_hash bigint")
        sigs = sigs.withColumn("old_cluster", F.lit(None).cast("string"))
    else:
        old_hash = earlier.groupBy("exact_hash").agg(F.min("cluster_id").alias("old_cluster"))
        sigs = sigs.join(old_hash, "exact_hash", "left")
    sigs = sigs.localCheckpoint()
    fresh = sigs.where("old_cluster IS NULL AND doc_id = exact_survivor").select("doc_id", *SIG_COLUMNS)
    pairs = candidate_pairs(fresh, earlier_sigs).localCheckpoint()
    stats = {"candidate_pairs": pairs.count()}
    every = fresh if earlier_sigs is None else fresh.unionByName(earlier_sigs.select("doc_id", *SIG_COLUMNS))
    edges = verified_edges(pairs, every, cfg.threshold, broadcast=stats["candidate_pairs"] < BROADCAST_PAIRS)
    edges = edges.localCheckpoint()
    stats["verified_pairs"] = edges.count()
    seeds = earlier.select(F.col("doc_id").alias("node"), F.concat(F.lit("0"), "cluster_id").alias("label"))
    labels = connected_components(edges, seeds, cfg.max_iterations)
    return assemble(sigs, labels, cfg), fresh, stats


def assemble(docs: Any, labels: Any, cfg: DedupConfig) -> Any:
    """Cluster ids, survivors and reasons for every new document."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lab = labels.select(F.col("node").alias("exact_survivor"), "label")
    rows = docs.join(lab, "exact_survivor", "left")
    rows = rows.withColumn("label", F.coalesce("label", F.concat(F.lit("1"), "exact_survivor")))
    rows = rows.withColumn("cluster_id", F.coalesce("old_cluster", F.expr("substring(label, 2)")))
    joins_earlier = F.col("old_cluster").isNotNull() | F.col("label").startswith("0")
    best = Window.partitionBy("cluster_id").orderBy(F.desc("n_words"), "doc_id")
    survivor = F.first("doc_id").over(best)
    is_kept = ~joins_earlier & (F.col("doc_id") == survivor)
    reason = (
        F.when(is_kept, F.lit(None))
        .when(F.col("old_cluster").isNotNull() | (F.col("doc_id") != F.col("exact_survivor")), F.lit("dup_exact"))
        .otherwise(F.lit("dup_minhash"))
    )
    return rows.select(
        "doc_id", "cluster_id", is_kept.alias("is_kept"), reason.cast("string").alias("dup_reason"), "exact_hash",
        F.lit(cfg.fingerprint()).alias("dedup_version"), F.current_timestamp().alias("deduped_at"),
    )  # fmt: skip


@job("dedup", config=DedupConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Deduplicate kept documents not yet in docs_dedup against each other and against everything before them."""
    cfg: DedupConfig = settings.job
    source, target, sig_table = (
        qualify(settings, t) for t in (cfg.input_table, cfg.output_table, cfg.signatures_table)
    )
    docs = spark.table(source).where("drop_reason IS NULL").select("doc_id", "text", "n_words")
    earlier = earlier_sigs = None
    if table_exists(spark, target):
        versions = {r[0] for r in spark.table(target).select("dedup_version").distinct().collect()}
        if versions - {cfg.fingerprint()}:
            raise ConfigError(
                f"{target} was built with {', '.join(sorted(versions))}, this run is {cfg.fingerprint()}: "
                f"drop {target} and {sig_table} (or choose other tables) to deduplicate from scratch"
            )
        earlier = spark.table(target).select("doc_id", "cluster_id", "exact_hash")
        earlier_sigs = spark.table(sig_table)
    docs = pending_rows(spark, docs, target, ["doc_id"]).localCheckpoint()
    pending = docs.count()
    log.info("%d new documents to deduplicate (%s)", pending, cfg.fingerprint())
    if not pending:
        return JobResult({"docs_in": 0, "docs_kept": 0})
    rows, sigs, stats = deduplicate(spark, docs, cfg, earlier, earlier_sigs)
    rows, sigs = rows.localCheckpoint(), sigs.localCheckpoint()  # computed once, and cut loose from the targets
    ensure_table(spark, target, rows.schema)
    ensure_table(spark, sig_table, sigs.schema)
    append(rows, target)  # new doc_ids only (anti-joined above)
    append(sigs, sig_table)
    return summarize(rows, pending, stats)


def summarize(rows: Any, pending: int, stats: dict) -> JobResult:
    """Metrics per reason and a cluster-size histogram."""
    from backforth.plots import bar_chart

    counts = {r["dup_reason"] or "kept": r["count"] for r in rows.groupBy("dup_reason").count().collect()}
    sizes = rows.groupBy("cluster_id").count().withColumnRenamed("count", "size").groupBy("size").count().collect()
    histogram = {int(r["size"]): int(r["count"]) for r in sizes}
    metrics = {
        "docs_in": pending,
        "docs_kept": counts.get("kept", 0),
        "dropped.dup_exact": counts.get("dup_exact", 0),
        "dropped.dup_minhash": counts.get("dup_minhash", 0),
        "duplicate_rate": 1 - counts.get("kept", 0) / pending,
        "clusters_multi": sum(v for k, v in histogram.items() if k > 1),
        **stats,
    }
    log.info("kept %d of %d (%d exact, %d near duplicates)", metrics["docs_kept"], pending,
             metrics["dropped.dup_exact"], metrics["dropped.dup_minhash"])  # fmt: skip
    figure = bar_chart(
        histogram, "documents in cluster (this batch)", "clusters", "Duplicate cluster sizes", log_y=True
    )
    return JobResult(metrics, figures={"dedup_cluster_sizes.png": figure})
