"""Generation in shards: pending rows are hashed into shards of about ``shard_rows``; each shard is generated and
written with one atomic Delta append, so a killed run loses at most the shard in flight and a re-run resumes. Never
MERGE from a source that runs an LLM: MERGE may read its source twice. Progress on the driver's console after each
shard: rows done / total, tokens/s, ETA.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backforth.tables import append, ensure_table, table_exists

log = logging.getLogger("backforth.llm")


@dataclass
class Progress:
    """Rows done / total, tokens/s and ETA, logged after every shard."""

    step: str
    total: int
    done: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)

    def update(self, rows: int, tokens: int) -> str:
        self.done += rows
        self.tokens += tokens
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "?"
        line = (
            f"{self.step}: {self.done}/{self.total} rows ({100 * self.done / max(self.total, 1):.0f} %), "
            f"{self.tokens / elapsed:.0f} tokens/s, {elapsed:.0f} s elapsed, ETA {eta_text}"
        )
        log.info(line)
        return line

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(time.perf_counter() - self.started, 1e-9)


def run_in_shards(
    spark: Any,
    pending: Any,
    key: list[str],
    target: str,
    shard_rows: int,
    parallelism: int,
    generate: Callable[[Any], Any],
    progress: Progress,
) -> dict[str, float]:
    """Generate ``pending`` shard by shard into ``target`` (one append each); returns row and token totals.

    ``generate(df)`` turns a shard's input rows into output rows (it applies the LLM UDF). ``pending`` is
    checkpointed first (it is deterministic; the anti-join it usually contains is then computed once).
    """
    from pyspark.sql import functions as F

    pending = pending.localCheckpoint()
    total = pending.count()
    progress.total = total
    totals = {"rows": 0, "prompt_tokens": 0, "output_tokens": 0, "errors": 0, "shards": 0}
    if total == 0:  # nothing pending: do not start an engine for an empty shard
        log.info("%s: nothing to generate", progress.step)
        pending.unpersist()
        return totals
    shards = max(1, math.ceil(total / max(1, shard_rows)))
    pending = pending.withColumn("_shard", F.pmod(F.xxhash64(*key), F.lit(shards)))
    for shard in range(shards):
        part = pending.where(F.col("_shard") == shard).drop("_shard").repartition(max(1, parallelism))
        batch_id = uuid.uuid4().hex
        rows = generate(part).withColumn("batch_id", F.lit(batch_id))
        if not table_exists(spark, target):
            ensure_table(spark, target, rows.schema)
        append(rows, target)  # the LLM runs here, once per row: one atomic commit per shard
        stats = (
            spark.table(target)
            .where(F.col("batch_id") == batch_id)
            .agg(
                F.count("*").alias("rows"),
                F.coalesce(F.sum("prompt_tokens"), F.lit(0)).alias("prompt_tokens"),
                F.coalesce(F.sum("output_tokens"), F.lit(0)).alias("output_tokens"),
                F.count("error").alias("errors"),
            )
            .collect()[0]
        )
        for name in ("rows", "prompt_tokens", "output_tokens", "errors"):
            totals[name] += int(stats[name])
        totals["shards"] += 1
        progress.update(int(stats["rows"]), int(stats["prompt_tokens"]) + int(stats["output_tokens"]))
    pending.unpersist()
    return totals
