"""Backtranslate kept documents into the instruction each one answers: docs_dedup (kept) → instructions.

Input: ``docs_dedup`` rows with ``is_kept`` (key ``doc_id``) joined to their text in ``docs_clean``. Output:
``instructions`` (key ``doc_id, step_version``): the cleaned instruction or a ``reject_reason``, the raw output, the
engine's per-row ``error``, token counts, finish reason, and the model, prompt version and sampling that produced it.
Resumable: only documents without a row for the current step_version are generated, in shards of one Delta append.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from backforth.engines import ModelProfile, Sampling, load_profile
from backforth.plots import bar_chart
from backforth.registry import JobResult, job
from backforth.tables import pending_rows, qualify
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
from udfs.llm import make_generate_udf, make_instruction_cleaner
from udfs.prompts import PromptTemplate, load_prompt

log = logging.getLogger("backforth.backtranslate")


@dataclass
class BacktranslateConfig:
    input_table: str = "docs_dedup"
    input_text_table: str = "docs_clean"  # where the kept documents' text lives
    output_table: str = "instructions"
    model: str = "smollm2-cpu"  # a profile in conf/models/
    model_options: dict[str, Any] = field(default_factory=dict)  # overrides of that profile's keys
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=1.0, top_p=0.9, max_tokens=128))
    prompt: str = "backtranslate"  # udfs/prompts/<prompt>.yaml
    version: str = "bt-v1"  # bump when the output cleaning's code changes
    shard_rows: int = 256  # rows per Delta append: a crash loses at most one shard
    limit: int | None = None  # generate at most this many pending documents (smallest doc_id first)
    min_words: int = 3
    max_words: int = 120


def prompt_words(template: PromptTemplate) -> str:
    """The prompt's own wording (slots removed), to catch outputs that merely echo it."""
    from udfs.prompts import SLOT

    return f"{template.system}\n{SLOT.sub(' ', template.user)}"


def backtranslate(
    docs: Any, profile: ModelProfile, cfg: BacktranslateConfig, template: PromptTemplate, prompt: Any, version: str
) -> Any:
    """Pure transformation: (doc_id, text) rows → instructions rows. ``prompt`` is the registered PromptRef."""
    from pyspark.sql import functions as F

    generate = make_generate_udf(profile, cfg.sampling, template)
    clean = make_instruction_cleaner(prompt_words(template), cfg.min_words, cfg.max_words)
    seed = row_seed(F.col("doc_id"), cfg.sampling.seed)
    out = docs.select("doc_id", "text", seed.alias("seed"))
    out = out.withColumn("gen", generate(F.struct(F.col("text").alias("document")), F.col("seed")))
    out = out.withColumn("parsed", clean(F.col("gen.text"), F.col("text"), F.col("gen.finish_reason")))
    return out.select(
        "doc_id",
        F.lit(version).alias("step_version"),
        F.col("parsed.instruction").alias("instruction"),
        F.col("parsed.reject_reason").alias("reject_reason"),
        *generation_columns(profile, prompt, cfg.sampling),
    )


@job("backtranslate", config=BacktranslateConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Generate an instruction for every kept document that has none for the current step_version."""
    from pyspark.sql import functions as F

    cfg: BacktranslateConfig = settings.job
    profile = load_profile(cfg.model, cfg.model_options)
    template = load_prompt(cfg.prompt)
    version = step_version(cfg.version, profile, cfg.sampling, template)
    prompt = register_prompt(template)
    target = qualify(settings, cfg.output_table)
    kept = spark.table(qualify(settings, cfg.input_table)).where("is_kept").select("doc_id")
    docs = kept.join(spark.table(qualify(settings, cfg.input_text_table)).select("doc_id", "text"), "doc_id")
    pending = pending_rows(spark, docs, target, ["doc_id"], F.col("step_version") == version)
    if cfg.limit is not None:
        pending = pending.orderBy("doc_id").limit(cfg.limit)
    log.info(
        "step %s, model %s (%s), prompt %s v%s", version, profile.name, profile.backend, prompt.name, prompt.version
    )
    parallelism = profile_parallelism(spark, profile)
    progress = Progress("backtranslate", 0)
    totals = run_in_shards(
        spark,
        pending,
        "doc_id",
        target,
        cfg.shard_rows,
        parallelism,
        lambda part: backtranslate(part, profile, cfg, template, prompt, version),
        progress,
    )
    metrics: dict[str, float] = {f"docs_{k}" if k == "rows" else k: v for k, v in totals.items()}
    metrics["tokens_per_s"] = round(progress.tokens_per_s, 1)
    tags = run_tags("backtranslate", profile, prompt, version, cfg.sampling)
    figures = {}
    if totals["rows"]:
        outcome = F.coalesce(F.when(F.col("error").isNotNull(), F.lit("engine_error")), "reject_reason")
        counts = outcome_counts(spark, target, version, outcome, "accepted")
        total = sum(counts.values())
        metrics.update({f"outcome.{k}": v for k, v in counts.items()})
        metrics["accepted_share"] = round(counts.get("accepted", 0) / total, 4)
        figures["backtranslate_outcomes.png"] = bar_chart(
            counts,
            "outcome",
            "documents",
            f"Backtranslation outcomes, {profile.name} ({version})\n"
            "accepted = passed the output checks, not a quality judgement",
        )
    return JobResult(metrics, figures=figures, tags=tags)
