"""Deduplicate the kept documents of docs_clean into docs_dedup: exact copies, then MinHash LSH near-duplicates.

Input: ``docs_clean`` rows with ``drop_reason IS NULL`` (key ``doc_id``). Output: ``docs_dedup`` (key ``doc_id``):
``cluster_id`` (the smallest doc_id of the cluster; a singleton's own id), ``is_kept``, ``dup_reason``
(``dup_exact`` / ``dup_minhash``), ``exact_hash``; and ``dedup_signatures`` (signature and band keys per
exact-survivor), so a later batch is compared with earlier ones without recomputing them. Phases: exact hash →
signatures → bands → candidate pairs → verified edges (estimated Jaccard ≥ threshold) → connected components (large-
star / small-star rounds in Spark) → survivors (most words, then smallest doc_id: the same whatever the partitioning).
Earlier decisions are never revised: a new document that joins an earlier cluster is a duplicate of it.

The two tables are two Delta commits: docs_dedup first, then dedup_signatures. A run killed between them leaves
decisions without signatures, which the next run writes first (:func:`heal_signatures`, from docs_clean's text: the
same signatures the killed run would have stored), before it compares anything new with them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from backforth import crash
from backforth.catalog import SIGNED
from backforth.config import ConfigError
from backforth.errors import MissingInputError
from backforth.hashing import fingerprint
from backforth.keep import keep, release
from backforth.registry import JobResult, job
from backforth.spark import parallelism
from backforth.tables import append, ensure_table, pending_rows, qualify, table_exists
from backforth.udfs.minhash import SIGNATURE_SCHEMA, make_minhash_mapper

SIG_COLUMNS = ("exact_hash", "signature", "bands", "n_shingles")  # dedup_signatures, after doc_id
BROADCAST_ROWS = 2_000_000  # id lists and candidate pairs below this many rows are shipped to executors whole

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
    max_iterations: int = 100  # large/small-star rounds (a chain of 10,001 documents took 10: see tests)
    version: str = "dedup-v2"  # v2: compiled sketch (FNV token hashes, polynomial exact hash)

    def fingerprint(self) -> str:
        """``dedup-v2-<hash of the parameters that decide what is a duplicate>``."""
        keys = {
            k: v for k, v in asdict(self).items() if k in ("ngram", "bands", "rows", "num_perm", "threshold", "seed")
        }
        return f"{self.version}-{fingerprint(keys, n=8)}"


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


def candidate_pairs(nodes: Any) -> Any:
    """Pairs of node ids (a < b) that share at least one band key. ``nodes``: (id bigint, bands), plus ``new``
    (boolean) when some nodes come from earlier batches: then at least one of the two must be new. Keys already
    carry their band's index, so one shuffle buckets every band at once.

    Nearly every key belongs to one node only. A window count over the shuffled, sorted keys drops those before
    anything is collected, which is cheaper than collecting every bucket or than a hash aggregate (whose map-side
    pass cannot shrink keys that are almost all distinct); see bench/README.md."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    flags = ["new"] if "new" in nodes.columns else []
    exploded = nodes.select("id", *flags, F.explode("bands").alias("key"))  # flat fixed-width rows to shuffle
    shared = exploded.withColumn("n", F.count(F.lit(1)).over(Window.partitionBy("key"))).where("n > 1")
    buckets = shared.groupBy("key").agg(F.collect_list(F.struct("id", *flags)).alias("m"))
    pairs = buckets.select(F.explode("m").alias("x"), "m").select("x", F.explode("m").alias("y"))
    keep = F.col("x.id") < F.col("y.id")
    if flags:
        keep &= F.col("x.new") | F.col("y.new")
    return pairs.where(keep).select(F.col("x.id").alias("a"), F.col("y.id").alias("b")).distinct()


def verified_edges(pairs: Any, sigs: Any, threshold: float, broadcast: bool = False) -> Any:
    """Candidate pairs whose signatures (``sigs``: id, signature) agree on at least ``threshold`` of their positions.
    ``broadcast`` ships the pairs to the signatures instead of shuffling the signatures (right while pairs are few)."""
    from pyspark.sql import functions as F

    pairs = F.broadcast(pairs) if broadcast else pairs
    left = sigs.select(F.col("id").alias("a"), F.col("signature").alias("sa"))
    right = sigs.select(F.col("id").alias("b"), F.col("signature").alias("sb"))
    same = F.aggregate(
        F.zip_with("sa", "sb", lambda x, y: F.when(x == y, 1).otherwise(0)), F.lit(0), lambda s, v: s + v
    )
    scored = pairs.join(left, "a").join(right, "b").withColumn("jaccard", same / F.size("sa"))
    return scored.where(F.col("jaccard") >= threshold).select("a", "b", "jaccard")


def connected_components(edges: Any, max_iterations: int, edge_count: int) -> tuple[Any, int]:
    """(node, component) for every node of an edge, the component being the smallest node id in it, and the number
    of rounds it took. Alternating large-star and small-star (Kiveris et al., "Connected Components in MapReduce and
    Beyond", 2014): each round rewires the edges towards smaller ids without changing what is connected, until every
    component is a star around its smallest node. Rounds grow with log n, not with the component's diameter, so a
    chain of 10,000 near-duplicates takes a few dozen joins where label propagation took one per link.

    Edges are kept as (hi, lo), lo < hi. Large-star: every node links each larger neighbour to the smallest node of
    its closed neighbourhood. Small-star: every node links itself and its smaller neighbours to the smallest of
    them. Done when each node has one smaller neighbour and that one has none (a star). While the edges are few (at
    most ``edge_count``, which the caller has counted), the per-node minima are shipped to the edges."""
    from pyspark.sql import functions as F

    small = 2 * edge_count < BROADCAST_ROWS

    def ship(df: Any) -> Any:
        return F.broadcast(df) if small else df

    ends = edges.select(F.greatest("a", "b").alias("hi"), F.least("a", "b").alias("lo")).where("hi != lo")
    current = keep(ends.distinct())
    for rounds in range(1, max_iterations + 1):
        # large-star
        both = current.select(F.col("hi").alias("u"), F.col("lo").alias("v")).unionByName(
            current.select(F.col("lo").alias("u"), F.col("hi").alias("v"))
        )
        lowest = both.groupBy("u").agg(F.least(F.col("u"), F.min("v")).alias("m"))
        large = both.where("v > u").join(ship(lowest), "u").select(F.col("v").alias("hi"), F.col("m").alias("lo"))
        large = keep(large.distinct())
        release(current)
        # small-star
        lowest = large.groupBy("hi").agg(F.min("lo").alias("m"))
        linked = large.join(ship(lowest), "hi").select(F.explode(F.array("hi", "lo")).alias("x"), "m")
        current = keep(linked.where("x != m").select(F.col("x").alias("hi"), F.col("m").alias("lo")).distinct())
        release(large)
        # a star: no node with two smaller neighbours, no smaller neighbour that has one itself
        spread = current.groupBy("hi").agg(F.count("*").alias("n")).where("n > 1").limit(1).count()
        hubs = current.select(F.col("hi").alias("lo")).distinct()
        chained = current.join(ship(hubs), "lo").limit(1).count()
        log.info("components: round %d, %s", rounds, "stars" if not (spread or chained) else "not yet stars")
        if not (spread or chained):
            roots = current.select(F.col("lo").alias("node"), F.col("lo").alias("component")).distinct()
            return current.select(F.col("hi").alias("node"), F.col("lo").alias("component")).unionByName(roots), rounds
    raise ConfigError(f"connected components did not converge in {max_iterations} rounds (raise job.max_iterations)")


def deduplicate(spark: Any, docs: Any, cfg: DedupConfig, earlier: Any = None, earlier_sigs: Any = None) -> tuple:
    """Pure core of the job: new kept docs (doc_id, text, n_words) → (docs_dedup rows, signature rows, stats).
    ``earlier`` (doc_id, cluster_id, exact_hash) and ``earlier_sigs`` are what previous batches left.

    Graph nodes are exact-duplicate survivors, identified by their exact hash (unique among survivors of this batch
    and of every earlier one: a new text whose hash is already known joins that cluster as ``dup_exact`` and never
    becomes a node), so buckets, pairs and components shuffle 64-bit integers rather than document ids."""
    from pyspark.sql import functions as F

    cores = parallelism(spark)
    if cores > 1:  # the signature UDF is the heavy part: spread it over every core, however the input is laid out
        docs = docs.repartition(cores)
    raw = keep(signatures_of(docs, cfg))  # the one pass over the text, partition-local
    groups = exact_groups(raw.select("doc_id", "n_words", "exact_hash"))  # shuffles narrow rows, not signatures
    old_hash = None
    if earlier is None:
        groups = groups.withColumn("old_cluster", F.lit(None).cast("string"))
    else:
        old_hash = earlier.groupBy("exact_hash").agg(F.min("cluster_id").alias("old_cluster"))
        groups = groups.join(old_hash, "exact_hash", "left")
    groups = keep(groups)
    known = groups.where("old_cluster IS NOT NULL OR doc_id != exact_survivor").select("doc_id")
    known = F.broadcast(known) if known.count() < BROADCAST_ROWS else known
    fresh = keep(raw.join(known, "doc_id", "left_anti").select("doc_id", *SIG_COLUMNS))
    nodes = fresh.select(F.col("exact_hash").alias("id"), "bands")
    if earlier_sigs is not None:
        nodes = nodes.withColumn("new", F.lit(True))
        nodes = nodes.unionByName(
            earlier_sigs.select(F.col("exact_hash").alias("id"), F.lit(False).alias("new"), "bands")
        )
    pairs = keep(candidate_pairs(nodes))
    stats = {"candidate_pairs": pairs.count()}
    signatures = fresh if earlier_sigs is None else fresh.unionByName(earlier_sigs.select("doc_id", *SIG_COLUMNS))
    signatures = signatures.select(F.col("exact_hash").alias("id"), "signature")
    edges = verified_edges(pairs, signatures, cfg.threshold, broadcast=stats["candidate_pairs"] < BROADCAST_ROWS)
    edges = keep(edges)
    stats["verified_pairs"] = edges.count()
    components, stats["component_rounds"] = connected_components(edges, cfg.max_iterations, stats["verified_pairs"])
    return assemble(groups, components, old_hash, cfg), fresh, stats


def assemble(groups: Any, components: Any, old_hash: Any, cfg: DedupConfig) -> Any:
    """Cluster ids, survivors and reasons for every new document.

    A component that holds an earlier document takes that document's cluster (the smallest, if the new batch
    bridges several) and keeps nothing new; otherwise it is named by its smallest doc_id and keeps its document
    with the most words (then the smallest doc_id). A text already seen in an earlier batch is ``dup_exact`` of
    that cluster."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rows = groups.where("old_cluster IS NULL").join(
        components.withColumnRenamed("node", "exact_hash"), "exact_hash", "left"
    )
    rows = rows.withColumn("component", F.coalesce("component", "exact_hash"))
    if old_hash is not None:  # components that reach back to an earlier batch
        reached = components.join(old_hash.withColumnRenamed("exact_hash", "node"), "node")
        reached = reached.groupBy("component").agg(F.min("old_cluster").alias("earlier_cluster"))
        rows = rows.join(F.broadcast(reached), "component", "left")
    else:
        rows = rows.withColumn("earlier_cluster", F.lit(None).cast("string"))
    group = Window.partitionBy("component")
    best = group.orderBy(F.desc("n_words"), "doc_id")
    joins_earlier = F.col("earlier_cluster").isNotNull()
    is_kept = ~joins_earlier & (F.col("doc_id") == F.first("doc_id").over(best))
    reason = (
        F.when(is_kept, F.lit(None))
        .when(F.col("doc_id") != F.col("exact_survivor"), F.lit("dup_exact"))
        .otherwise(F.lit("dup_minhash"))
    )
    fresh = rows.select(
        "doc_id", F.coalesce("earlier_cluster", F.min("doc_id").over(group)).alias("cluster_id"),
        is_kept.alias("is_kept"), reason.cast("string").alias("dup_reason"), "exact_hash",
    )  # fmt: skip
    seen = groups.where("old_cluster IS NOT NULL").select(
        "doc_id", F.col("old_cluster").alias("cluster_id"), F.lit(False).alias("is_kept"),
        F.lit("dup_exact").alias("dup_reason"), "exact_hash",
    )  # fmt: skip
    return fresh.unionByName(seen).select(
        "*", F.lit(cfg.fingerprint()).alias("dedup_version"), F.current_timestamp().alias("deduped_at")
    )


@job("dedup", config=DedupConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Deduplicate kept documents not yet in docs_dedup against each other and against everything before them."""
    cfg: DedupConfig = settings.job
    source, target, sig_table = (
        qualify(settings, t) for t in (cfg.input_table, cfg.output_table, cfg.signatures_table)
    )
    if not table_exists(spark, source):
        raise MissingInputError(f"{source} is missing", "clean")
    docs = spark.table(source).where("drop_reason IS NULL").select("doc_id", "text", "n_words")
    earlier = earlier_sigs = None
    repaired = 0
    if table_exists(spark, target):
        versions = {r[0] for r in spark.table(target).select("dedup_version").distinct().collect()}
        if versions - {cfg.fingerprint()}:
            raise ConfigError(
                f"{target} was built with {', '.join(sorted(versions))}, this run is {cfg.fingerprint()}: "
                f"drop {target} and {sig_table} (or choose other tables) to deduplicate from scratch"
            )
        earlier = spark.table(target).select("doc_id", "cluster_id", "exact_hash")
        repaired = heal_signatures(spark, cfg, source, target, sig_table)  # before anything is compared with them
        earlier_sigs = spark.table(sig_table)
    docs = keep(pending_rows(spark, docs, target, ["doc_id"]))
    pending = docs.count()
    log.info("%d new documents to deduplicate (%s)", pending, cfg.fingerprint())
    if not pending:
        return JobResult({"docs_in": 0, "docs_kept": 0, "signatures_repaired": repaired})
    rows, sigs, stats = deduplicate(spark, docs, cfg, earlier, earlier_sigs)
    rows, sigs = keep(rows), keep(sigs)  # computed once, and cut loose from the targets
    ensure_table(spark, target, rows.schema)
    ensure_table(spark, sig_table, sigs.schema)
    append(rows, target)  # new doc_ids only (anti-joined above)
    crash.point("dedup.after_docs")
    append(sigs, sig_table)  # a kill before this commit: the next run re-signs these documents (heal_signatures)
    return summarize(rows, pending, {**stats, "signatures_repaired": repaired})


def heal_signatures(spark: Any, cfg: DedupConfig, source: str, target: str, sig_table: str) -> int:
    """Sign the documents of docs_dedup that should have a signature and have none (a run killed between its two
    commits, a deleted row), from their docs_clean text; returns how many. The signature depends on the text and
    the parameters only, so later batches are compared with exactly what an uninterrupted run stored. One Spark job
    when nothing is missing."""
    needed = spark.table(target).where(SIGNED).select("doc_id")
    if table_exists(spark, sig_table):
        needed = needed.join(spark.table(sig_table).select("doc_id"), "doc_id", "left_anti")
    missing = keep(needed.join(spark.table(source).select("doc_id", "text", "n_words"), "doc_id"))
    count = missing.count()
    if not count:
        return 0
    log.warning("%d documents of %s have no signature in %s (a run killed between its two commits?): "
                "signing them again from %s", count, target, sig_table, source)  # fmt: skip
    sigs = keep(signatures_of(missing, cfg).select("doc_id", *SIG_COLUMNS))
    ensure_table(spark, sig_table, sigs.schema)
    append(sigs, sig_table)
    return count


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
