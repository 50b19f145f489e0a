"""Shared machinery of the LLM steps (backtranslate now; score, rewrite and distill build on it).

- ``step_version``: the step's declared version plus a hash of everything that decides its output (model identity,
  sampling, prompt content). Pending work is "input rows without an output row for this step_version", so changing a
  prompt or the sampling means a fresh set of rows, while the old ones stay for comparison.
- ``run_in_shards``: pending rows are hashed into shards of about ``shard_rows``; each shard is generated and written
  with one atomic Delta append, so a killed run loses at most the shard in flight and a re-run resumes. Never MERGE
  from a source that runs an LLM: MERGE may read its source twice.
- Progress on the driver's console after each shard: rows done / total, tokens/s, ETA.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from backforth.engines.base import ModelProfile, Sampling
from backforth.tables import append, ensure_table, table_exists
from udfs.prompts import PromptTemplate

log = logging.getLogger("backforth.llm")

SEED_MASK = 0x7FFFFFFF  # per-row seeds are non-negative 31-bit ints (every engine accepts them)


def step_version(declared: str, profile: ModelProfile, sampling: Sampling, *templates: PromptTemplate) -> str:
    """``bt-v1-<hash>``: changes whenever the model, the sampling or a prompt's text changes."""
    body = {
        "model": profile.identity(),
        "sampling": asdict(sampling),
        "prompts": [t.tag for t in templates],
    }
    return f"{declared}-{hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]}"


def row_seed(key: Any, base_seed: int) -> Any:
    """A per-row sampling seed from the row key and the base seed: independent of batching and partitioning."""
    from pyspark.sql import functions as F

    return F.xxhash64(key, F.lit(base_seed)).bitwiseAND(F.lit(SEED_MASK).cast("long"))


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
    key: str,
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
    pending = pending.withColumn("_shard", F.pmod(F.xxhash64(key), F.lit(shards)))
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


def latest_step_version(spark: Any, fqn: str) -> str | None:
    """The step_version of the newest row of ``fqn`` (what a later step reads by default), or None if empty."""
    from pyspark.sql import functions as F

    if not table_exists(spark, fqn):
        return None
    row = spark.table(fqn).orderBy(F.col("created_at").desc()).select("step_version").limit(1).collect()
    return row[0][0] if row else None


def resolve_input_version(spark: Any, fqn: str, requested: str | None, previous_step: str) -> str:
    """The input step version a step reads: the configured one, else the newest in ``fqn``; a clear error if none."""
    version = requested or latest_step_version(spark, fqn)
    if version is None:
        raise ValueError(f"{fqn} is empty or missing: run `backforth {previous_step}` first")
    return version


def generation_columns(profile: ModelProfile, prompt: Any, sampling: Sampling) -> list[Any]:
    """The columns every generated row carries, from the UDF's ``gen`` struct and the ``seed`` column."""
    from pyspark.sql import functions as F

    return [
        F.col("gen.text").alias("raw_output"),
        F.col("gen.error").alias("error"),
        F.col("gen.prompt_tokens").alias("prompt_tokens"),
        F.col("gen.output_tokens").alias("output_tokens"),
        F.col("gen.finish_reason").alias("finish_reason"),
        model_struct(profile).alias("model"),
        prompt_struct(prompt).alias("prompt"),
        sampling_struct(sampling, F.col("seed")).alias("sampling"),
        F.current_timestamp().alias("created_at"),
    ]


def run_tags(step: str, profile: ModelProfile, prompt: Any, version: str, sampling: Sampling) -> dict[str, str]:
    """The MLflow tags every LLM step sets; logs the profile's note (what its output is good for) as a warning."""
    tags = {
        "backforth.step_version": version,
        "backforth.model": f"{profile.name} ({profile.backend}: {profile.model})",
        f"backforth.prompt.{step}": f"{prompt.name}@{prompt.version}",
        "backforth.prompt_uri": prompt.uri,
        "backforth.sampling": json.dumps(asdict(sampling), sort_keys=True),
    }
    registered = registered_model(profile)
    if registered:  # the exact registered version, what the config asked for, and the run that trained it
        tags.update({
            "backforth.model_uri": profile.model,
            "backforth.model_version": f"{registered['name']}/{registered['version']}",
            "backforth.model_requested": registered["requested"],
            "backforth.model_source_run": str(registered.get("run_id") or ""),
        })  # fmt: skip
    if profile.note:
        tags["backforth.quality_note"] = profile.note
        log.warning("%s: %s", profile.name, profile.note)
    return tags


def outcome_counts(spark: Any, fqn: str, version: str, outcome: Any, accepted: str) -> dict[str, int]:
    """Rows of ``version`` in ``fqn`` per outcome (``outcome`` NULL = ``accepted``)."""
    from pyspark.sql import functions as F

    rows = spark.table(fqn).where(F.col("step_version") == version)
    grouped = rows.groupBy(outcome.alias("o")).agg(F.count("*").alias("n")).collect()
    return {(r["o"] or accepted): int(r["n"]) for r in grouped}


def model_struct(profile: ModelProfile) -> Any:
    """The ``model`` column of generated rows."""
    from pyspark.sql import functions as F

    return F.struct(
        F.lit(profile.name).alias("profile"),
        F.lit(profile.backend).alias("backend"),
        F.lit(profile.model).alias("uri"),  # a registered model: models:/<name>/<version>, pinned on the driver
        F.lit(registered_model(profile).get("version")).cast("string").alias("version"),
    )


def registered_model(profile: ModelProfile) -> dict[str, Any]:
    """The registered model version a profile was pinned to ({} for a folder, a hub id or the embedded model)."""
    from backforth.models import REGISTERED_OPTION

    return dict(profile.options.get(REGISTERED_OPTION) or {})


def prompt_struct(prompt: Any) -> Any:
    from pyspark.sql import functions as F

    return F.struct(
        F.lit(prompt.name).alias("name"), F.lit(prompt.version).alias("version"), F.lit(prompt.uri).alias("uri")
    )


def sampling_struct(sampling: Sampling, seed: Any) -> Any:
    from pyspark.sql import functions as F

    return F.struct(
        F.lit(sampling.temperature).alias("temperature"),
        F.lit(sampling.top_p).alias("top_p"),
        F.lit(sampling.max_tokens).alias("max_tokens"),
        seed.alias("seed"),
    )


def profile_parallelism(spark: Any, profile: ModelProfile) -> int:
    """Tasks per shard: the profile's ``parallelism`` (one engine per task at a time), else the cluster's cores."""
    return profile.parallelism or spark.sparkContext.defaultParallelism
