"""Generation in shards: pending rows are hashed into shards; each shard is generated and written with one atomic
Delta append, so a killed run loses at most the shards in flight and a re-run resumes. Never MERGE from a source that
runs an LLM: MERGE may read its source twice.

Shards overlap: ``in_flight`` shards are submitted as concurrent Spark jobs from driver threads (FIFO scheduling, so
the older shard's tasks go first), and the next shard's tasks take each engine as soon as the previous shard's task on
it finishes — engines do not wait for a shard's slowest task, its Delta commit or its bookkeeping. Blind Delta appends
never conflict with each other, so concurrent shards commit independently.

The shard size is derived from the cluster unless set: engines × rows per engine call (the profile's
``max_num_seqs``, else its ``batch_size``) × :data:`BATCHES_PER_TASK`, so every task hands its engine several full
batches in one call. Progress on the driver's console after each shard: rows done / total, rows/s, ETA.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from backforth import crash
from backforth.engines import ModelProfile
from backforth.keep import keep, release
from backforth.spark import conf_value, executor_count, parallelism
from backforth.tables import append, ensure_table, table_exists

log = logging.getLogger("backforth.llm")

BATCHES_PER_TASK = 4  # full engine batches per task and shard: the engine's own tail is paid once per 4 batches
TOTALS = ("rows", "prompt_tokens", "output_tokens", "errors", "engine_s")


@dataclass(frozen=True)
class ShardPlan:
    """How pending rows are cut: ``rows`` per shard, ``tasks`` per shard (one engine each), ``in_flight`` shards at
    once (1 = one after another)."""

    rows: int
    tasks: int
    in_flight: int = 2

    @property
    def rows_per_call(self) -> int:
        """Rows one task hands its engine in one call: its whole share of a shard."""
        return math.ceil(self.rows / self.tasks)

    @classmethod
    def derive(cls, engines: int, engine_batch: int, rows: int | None = None, in_flight: int = 2) -> ShardPlan:
        """``rows`` if given, else engines × ``engine_batch`` × :data:`BATCHES_PER_TASK`."""
        engines = max(1, engines)
        derived = engines * max(1, engine_batch) * BATCHES_PER_TASK
        return cls(rows=max(1, rows if rows else derived), tasks=engines, in_flight=max(1, in_flight))


@dataclass
class Progress:
    """Rows done / total, rows/s and ETA, logged after every shard (thread-safe: shards finish concurrently)."""

    step: str
    total: int
    done: int = 0
    started: float = field(default_factory=time.perf_counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, rows: int) -> str:
        with self.lock:
            self.done += rows
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "?"
            line = (
                f"{self.step}: {self.done}/{self.total} rows ({100 * self.done / max(self.total, 1):.0f} %), "
                f"{rate:.1f} rows/s, {elapsed:.0f} s elapsed, ETA {eta_text}"
            )
        log.info(line)
        return line


def run_in_shards(
    spark: Any,
    pending: Any,
    key: list[str],
    target: str,
    plan: ShardPlan,
    generate: Callable[[Any], Any],
    progress: Progress,
) -> dict[str, float]:
    """Generate ``pending`` into ``target``, one append per shard, ``plan.in_flight`` shards at once; returns row,
    token and engine-second totals plus ``shards`` and ``generation_s`` (first shard submitted → last committed).

    ``generate(df)`` turns a shard's input rows into output rows (it applies the LLM UDF). ``pending`` is
    checkpointed first (it is deterministic; the anti-join it usually contains is then computed once). On the first
    failing shard no further shard starts; shards already running finish and stay committed; the error is raised.
    """
    from pyspark.sql import functions as F

    pending = keep(pending)
    total = pending.count()
    progress.total = total
    totals: dict[str, float] = {name: 0 for name in (*TOTALS, "shards", "generation_s")}
    if total == 0:  # nothing pending: do not start an engine for an empty shard
        log.info("%s: nothing to generate", progress.step)
        release(pending)
        return totals
    shards = max(1, math.ceil(total / plan.rows))
    log.info("%s: %d pending rows in %d shards of ~%d rows, %d tasks each, %d in flight", progress.step, total,
             shards, math.ceil(total / shards), plan.tasks, min(plan.in_flight, shards))  # fmt: skip
    started = time.perf_counter()
    # Every shard's input is split into its tasks up front (one small shuffle per shard, several at once) and kept:
    # no shuffle then runs between shards, so the next shard's tasks start the moment an engine frees, even on
    # executors whose only core is generating. The clock includes it.
    keyed = pending.withColumn("_shard", F.pmod(F.xxhash64(*key), F.lit(shards)))

    def lay_out(shard: int) -> Any:
        return keep(keyed.where(F.col("_shard") == shard).drop("_shard").repartition(plan.tasks))

    with ThreadPoolExecutor(max_workers=min(4, shards), thread_name_prefix=f"{progress.step}-layout") as pool:
        parts = list(pool.map(lay_out, range(shards)))
    release(pending)

    def output(shard: int, batch_id: str) -> Any:
        return generate(parts[shard]).withColumn("batch_id", F.lit(batch_id))

    if not table_exists(spark, target):  # before any shard runs: concurrent appends then all find the table
        ensure_table(spark, target, output(0, "").schema)
    lock = threading.Lock()

    batches: list[str] = []

    def one(shard: int) -> None:
        batch_id = uuid.uuid4().hex
        # The LLM runs here: one atomic commit per shard, tagged with its batch id. Its row count comes back from the
        # commit's own metrics (the Delta log, read on the driver): no Spark job between shards, whose tasks would
        # queue behind the next shard's generation and hold back the shard after it.
        append(output(shard, batch_id), target, merge_schema=True, user_metadata=batch_id)
        rows = committed_rows(spark, target, batch_id)
        with lock:
            batches.append(batch_id)
            totals["shards"] += 1
            first = totals["shards"] == 1
        progress.update(rows)
        if first:
            crash.point(f"{progress.step}.after_shard")

    pool = ThreadPoolExecutor(max_workers=min(plan.in_flight, shards), thread_name_prefix=f"{progress.step}-shard")
    try:
        futures: list[Future] = [pool.submit(one, shard) for shard in range(shards)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # running shards finish and commit; queued ones never start
            raise failed.exception()  # type: ignore[misc]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        totals["generation_s"] = round(time.perf_counter() - started, 3)
        for part in parts:
            release(part)
    totals.update(batch_totals(spark, target, batches))  # one job for every committed shard
    return totals


def committed_rows(spark: Any, target: str, batch_id: str) -> int:
    """Rows of the commit whose user metadata is ``batch_id`` (its operation metrics; the newest commits first)."""
    from backforth.tables import quote

    for row in spark.sql(f"DESCRIBE HISTORY {quote(target)} LIMIT 64").collect():
        if row["userMetadata"] == batch_id:
            return int((row["operationMetrics"] or {}).get("numOutputRows", 0))
    return 0


def batch_totals(spark: Any, target: str, batches: list[str]) -> dict[str, float]:
    """Rows, tokens, errors and engine seconds of the shards this run committed, read back in one aggregation."""
    from pyspark.sql import functions as F

    if not batches:
        return {name: 0 for name in TOTALS}
    stats = (
        spark.table(target)
        .where(F.col("batch_id").isin(batches))
        .agg(
            F.count("*").alias("rows"),
            F.coalesce(F.sum("prompt_tokens"), F.lit(0)).alias("prompt_tokens"),
            F.coalesce(F.sum("output_tokens"), F.lit(0)).alias("output_tokens"),
            F.count("error").alias("errors"),
            F.coalesce(F.sum("engine_s"), F.lit(0.0)).alias("engine_s"),
        )
        .collect()[0]
    )
    return {name: round(float(stats[name]), 3) if name == "engine_s" else int(stats[name]) for name in TOTALS}


def engine_slots(spark: Any, profile: ModelProfile) -> int:
    """Engines that run at once, i.e. tasks per shard, from the session's conf (which Spark Connect serves too):
    the profile's ``parallelism``; else, for a GPU profile on executors that declare GPUs, executors × GPUs per
    executor ÷ GPUs per engine; else ``spark.default.parallelism``, the N of ``local[N]``, else the shuffle
    partitions."""
    if profile.parallelism:
        return profile.parallelism
    per_executor = float(conf_value(spark, "spark.executor.resource.gpu.amount") or 0)
    executors = executor_count(spark)
    if profile.gpus_per_engine and per_executor and executors:
        return max(1, executors * int(per_executor // profile.gpus_per_engine))
    return parallelism(spark)


LIGHT_BACKENDS = ("fake", "sim", "openai")  # engines that hold no model: any number may run side by side


def shard_plan(spark: Any, cfg: Any, profile: ModelProfile, bounded: bool = False) -> ShardPlan:
    """The job's ``shard_rows`` and ``shards_in_flight`` over the engines the cluster runs at once. Shards overlap
    only where something bounds the engines running at once: the generation stage's GPU ResourceProfile
    (``bounded``), or an engine that holds no model. Elsewhere (vLLM's CPU build or transformers on a laptop, a GPU
    engine in local mode) a second shard in flight would start a second engine beside the first, so shards go one
    at a time."""
    in_flight = getattr(cfg, "shards_in_flight", 2)
    if in_flight > 1 and not bounded and profile.backend not in LIGHT_BACKENDS:
        log.info("%s engines are not bounded by a GPU resource profile here: one shard at a time", profile.backend)
        in_flight = 1
    return ShardPlan.derive(engine_slots(spark, profile), profile.engine_batch, cfg.shard_rows, in_flight)
