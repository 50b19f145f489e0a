"""Rewrite documents into assistant answers for their instructions: pairs_filtered + docs_clean → responses.

Input: the kept pairs of one filter version (``input: filtered``, the default and the paper's best variant) or every
accepted instruction of one backtranslation (``input: all``, "rewriting without filtering"), with the document's
text as the draft. Output: ``responses`` (key ``doc_id, kind, step_version``) with ``kind = rewrite``. The answer is
prefilled with ``[RES]`` and generation stops at ``[/RES]``; extraction handles missing and unclosed tags, echoes of
the prompt's own sentence about the tags, refusals, copies of the instruction and outputs cut at the token cap,
each a ``status`` (accepted: ok, ok_unclosed, ok_untagged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from backforth.engines import ModelProfile, Sampling, load_profile
from backforth.plots import bar_chart
from backforth.registry import JobResult, job
from backforth.tables import pending_rows, qualify, table_exists
from backforth.tracking import register_prompt
from jobs._llm import (
    Progress,
    generation_columns,
    outcome_counts,
    profile_parallelism,
    row_seed,
    run_in_shards,
    run_tags,
    step_version,
)
from udfs.llm import make_generate_udf, make_response_extractor
from udfs.parsing import ACCEPTED_RESPONSE
from udfs.prompts import PromptTemplate, load_prompt

log = logging.getLogger("backforth.rewrite")


@dataclass
class RewriteConfig:
    input: Literal["filtered", "all"] = "filtered"
    input_table: str = "pairs_filtered"  # input = filtered
    input_instructions_table: str = "instructions"  # input = all
    input_text_table: str = "docs_clean"
    input_step_version: str | None = None  # the filter version (or backtranslate version); null = the newest
    output_table: str = "responses"
    model: str = "smollm2-cpu"
    model_options: dict[str, Any] = field(default_factory=dict)
    sampling: Sampling = field(
        default_factory=lambda: Sampling(temperature=1.0, top_p=0.9, max_tokens=512, stop=["[/RES]"])
    )
    prompt: str = "rewrite"
    accept_untagged: bool = True  # an output without any tag is taken whole (status ok_untagged)
    version: str = "rw-v1"
    shard_rows: int = 128
    limit: int | None = None


def source_pairs(spark: Any, settings: Any, cfg: RewriteConfig) -> tuple[Any, str]:
    """(doc_id, instruction, source_version) rows to answer, and the version they come from."""
    from pyspark.sql import functions as F

    if cfg.input == "filtered":
        table, version_col = qualify(settings, cfg.input_table), "filter_version"
    else:
        table, version_col = qualify(settings, cfg.input_instructions_table), "step_version"
    if not table_exists(spark, table):
        raise ValueError(f"{table} is missing: run the earlier steps first (backtranslate, score, filter)")
    version = cfg.input_step_version
    if version is None:
        newest = spark.table(table).orderBy(F.col("created_at").desc()).select(version_col).limit(1).collect()
        if not newest:
            raise ValueError(f"{table} is empty: nothing to answer")
        version = newest[0][0]
    rows = spark.table(table).where((F.col(version_col) == version) & F.col("instruction").isNotNull())
    return rows.select("doc_id", "instruction", F.lit(version).alias("source_version")), version


def respond(
    pairs: Any, profile: ModelProfile, cfg: Any, template: PromptTemplate, prompt: Any, version: str, kind: str
) -> Any:
    """Pure transformation: (doc_id, instruction, source_version[, text]) → responses rows of ``kind``."""
    from pyspark.sql import functions as F

    generate = make_generate_udf(profile, cfg.sampling, template)
    extract = make_response_extractor(template.prefill, cfg.accept_untagged)
    variables = [F.col("instruction")] + ([F.col("text").alias("document")] if "document" in template.variables else [])
    document = F.col("text") if "text" in pairs.columns else F.lit(None).cast("string")
    out = pairs.withColumn("seed", row_seed(F.concat("doc_id", F.lit(kind)), cfg.sampling.seed))
    out = out.withColumn("gen", generate(F.struct(*variables), F.col("seed")))
    out = out.withColumn("ex", extract(F.col("gen.text"), "instruction", document, F.col("gen.finish_reason")))
    return out.select(
        "doc_id",
        F.lit(kind).alias("kind"),
        F.lit(version).alias("step_version"),
        "source_version",
        "instruction",
        F.col("ex.response").alias("response"),
        F.col("ex.status").alias("status"),
        *generation_columns(profile, prompt, cfg.sampling),
    )


def run_response_step(spark: Any, settings: Any, cfg: Any, kind: str) -> JobResult:
    """Shared by rewrite and distill: pending pairs → responses rows, shard by shard."""
    from pyspark.sql import functions as F

    profile = load_profile(cfg.model, cfg.model_options)
    template = load_prompt(cfg.prompt)
    pairs, source_version = source_pairs(spark, settings, cfg)
    version = step_version(cfg.version, profile, cfg.sampling, template) + f"-{source_version[-8:]}"
    prompt = register_prompt(template)
    if "document" in template.variables:
        texts = spark.table(qualify(settings, cfg.input_text_table)).select("doc_id", "text")
        pairs = pairs.join(texts, "doc_id")
    target = qualify(settings, cfg.output_table)
    done = (F.col("step_version") == version) & (F.col("kind") == kind)
    pairs = pending_rows(spark, pairs, target, ["doc_id"], done)
    if cfg.limit is not None:
        pairs = pairs.orderBy("doc_id").limit(cfg.limit)
    log.info("%s from %s with %s, step %s", kind, source_version, profile.name, version)
    progress = Progress(kind, 0)
    totals = run_in_shards(
        spark, pairs, "doc_id", target, cfg.shard_rows, profile_parallelism(spark, profile),
        lambda part: respond(part, profile, cfg, template, prompt, version, kind), progress,
    )  # fmt: skip
    metrics: dict[str, float] = {f"pairs_{k}" if k == "rows" else k: v for k, v in totals.items()}
    metrics["tokens_per_s"] = round(progress.tokens_per_s, 1)
    tags = run_tags(kind, profile, prompt, version, cfg.sampling)
    tags["backforth.input_step_version"] = source_version
    figures: dict[str, Any] = {}
    counts = outcome_counts(spark, target, version, F.col("status"), "?") if table_exists(spark, target) else {}
    if counts:
        total = sum(counts.values())
        metrics.update({f"status.{k}": v for k, v in counts.items()})
        metrics["accepted_share"] = round(sum(counts.get(s, 0) for s in ACCEPTED_RESPONSE) / total, 4)
        figures[f"{kind}_status.png"] = bar_chart(counts, "status", "pairs", f"{kind} outcomes ({profile.name})")
    return JobResult(metrics, figures=figures, tags=tags)


@job("rewrite", config=RewriteConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Rewrite each pending pair's document into an answer to its instruction."""
    return run_response_step(spark, settings, settings.job, "rewrite")
