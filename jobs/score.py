"""Score (instruction, document) pairs with the 5-point judge: instructions (accepted) + docs_clean → scores.

Input: ``instructions`` rows with an instruction, of one backtranslate step version (default: the newest), paired with
their document's text from ``docs_clean`` as the candidate answer. Output: ``scores`` (key ``pair_id, step_version``).
Two modes: ``text`` (the judge reasons, then writes ``Score: N``; tolerant parsing, the last score wins) and
``logprob`` (the judge's answer is prefilled up to "Score: " and one forward pass reads the probabilities of 1–5:
expected score, most likely digit, and the probability mass on the digits, invalid below ``min_digit_mass``).
Each run also scores ``sanity_pairs`` control pairs whose instruction belongs to another document (``pair_kind =
control``) and reports the AUC of matched vs control scores: 0.5 means the judge cannot tell them apart.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from backforth.engines import ModelProfile, Sampling, load_profile
from backforth.plots import bar_chart
from backforth.registry import JobResult, job
from backforth.tables import pending_rows, qualify, table_exists
from backforth.tracking import register_prompt
from jobs._llm import (
    Progress,
    generation_columns,
    profile_parallelism,
    resolve_input_version,
    row_seed,
    run_in_shards,
    run_tags,
    step_version,
)
from udfs.llm import make_generate_udf, make_score_parser
from udfs.prompts import PromptTemplate, load_prompt
from udfs.stats import auc

log = logging.getLogger("backforth.score")
DIGITS = ["1", "2", "3", "4", "5"]
SCORE_PREFILL = "Score: "  # with the space: small models' tokenizers put the space and the digit in separate tokens


@dataclass
class ScoreConfig:
    input_table: str = "instructions"
    input_text_table: str = "docs_clean"
    output_table: str = "scores"
    input_step_version: str | None = None  # which backtranslation to judge; null = the newest
    mode: Literal["text", "logprob"] = "text"
    model: str = "smollm2-cpu"
    model_options: dict[str, Any] = field(default_factory=dict)
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=1.0, top_p=0.9, max_tokens=192))
    prompt: str = "score"
    min_digit_mass: float = 0.5  # logprob mode: below this probability on 1-5 the score is invalid
    sanity_pairs: int = 20  # control pairs with another document's instruction (0 = no sanity check)
    version: str = "score-v1"
    shard_rows: int = 256
    limit: int | None = None


def judge_template(cfg: ScoreConfig) -> PromptTemplate:
    template = load_prompt(cfg.prompt)
    return replace(template, prefill=SCORE_PREFILL) if cfg.mode == "logprob" else template


def score_pairs(pairs: Any, profile: ModelProfile, cfg: ScoreConfig, template: PromptTemplate, prompt: Any,
                version: str) -> Any:  # fmt: skip
    """Pure transformation: (pair_id, doc_id, pair_kind, instruction, text) → scores rows."""
    from pyspark.sql import functions as F

    candidates = DIGITS if cfg.mode == "logprob" else None
    generate = make_generate_udf(profile, cfg.sampling, template, candidates)
    seed = row_seed(F.col("pair_id"), cfg.sampling.seed)
    out = pairs.withColumn("seed", seed).withColumn(
        "gen", generate(F.struct(F.col("instruction"), F.col("text").alias("response")), F.col("seed"))
    )
    out = out.withColumn(
        "parsed", make_score_parser()(F.col("gen.text"), F.col("gen.probs"), F.lit(cfg.mode), F.lit(cfg.min_digit_mass))
    )
    return out.select(
        "pair_id",
        "doc_id",
        "pair_kind",
        F.lit(version).alias("step_version"),
        "instruction_version",
        "instruction",
        F.lit(cfg.mode).alias("mode"),
        F.col("parsed.score").alias("score"),
        F.col("parsed.expected_score").alias("expected_score"),
        F.col("parsed.digit_mass").alias("digit_mass"),
        (F.col("parsed.score").isNotNull()).alias("valid"),
        F.coalesce(F.col("parsed.invalid_reason"), F.when(F.col("gen.error").isNotNull(), F.lit("engine_error"))).alias(
            "invalid_reason"
        ),
        *generation_columns(profile, prompt, cfg.sampling),
    )


def with_controls(matched: Any, n: int) -> Any:
    """``n`` control pairs: documents in a fixed hash order, each paired with the next one's instruction."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    empty = (
        matched.where(F.lit(False))
        .select("doc_id", "doc_id", F.lit("control").alias("pair_kind"), "instruction_version", "instruction", "text")
        .toDF("pair_id", "doc_id", "pair_kind", "instruction_version", "instruction", "text")
    )
    if n <= 0:
        return empty
    order = Window.orderBy(F.xxhash64("doc_id"), "doc_id")
    picked = matched.withColumn("_rn", F.row_number().over(order)).where(F.col("_rn") <= n)
    size = picked.count()
    if size < 2:
        return empty
    donors = picked.select(((F.col("_rn") % size) + 1).alias("_rn"), F.col("instruction").alias("_other"))
    return picked.join(donors, "_rn").select(
        F.concat("doc_id", F.lit(":control")).alias("pair_id"),
        "doc_id",
        F.lit("control").alias("pair_kind"),
        "instruction_version",
        F.col("_other").alias("instruction"),
        "text",
    )


@job("score", config=ScoreConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Judge every accepted instruction of the chosen backtranslation that has no score for this step_version."""
    from pyspark.sql import functions as F

    cfg: ScoreConfig = settings.job
    source = qualify(settings, cfg.input_table)
    input_version = resolve_input_version(spark, source, cfg.input_step_version, "backtranslate")
    profile = load_profile(cfg.model, cfg.model_options)
    template = judge_template(cfg)
    sampling = cfg.sampling if cfg.mode == "text" else replace(cfg.sampling, max_tokens=1)
    version = step_version(cfg.version, profile, sampling, template) + f"-{cfg.mode}-{input_version[-8:]}"
    prompt = register_prompt(template)
    target = qualify(settings, cfg.output_table)
    texts = spark.table(qualify(settings, cfg.input_text_table)).select("doc_id", "text")
    matched = (
        spark.table(source)
        .where((F.col("step_version") == input_version) & F.col("instruction").isNotNull())
        .select("doc_id", F.col("step_version").alias("instruction_version"), "instruction")
        .join(texts, "doc_id")
    )
    pairs = matched.select(
        F.col("doc_id").alias("pair_id"), "doc_id", F.lit("matched").alias("pair_kind"), "instruction_version",
        "instruction", "text",
    ).unionByName(with_controls(matched, cfg.sanity_pairs))  # fmt: skip
    pairs = pending_rows(spark, pairs, target, ["pair_id"], F.col("step_version") == version)
    if cfg.limit is not None:
        pairs = pairs.orderBy("pair_id").limit(cfg.limit)
    log.info("judging %s with %s (%s mode), step %s", input_version, profile.name, cfg.mode, version)
    progress = Progress("score", 0)
    totals = run_in_shards(
        spark, pairs, "pair_id", target, cfg.shard_rows, profile_parallelism(spark, profile),
        lambda part: score_pairs(part, profile, replace(cfg, sampling=sampling), template, prompt, version),
        progress,
    )  # fmt: skip
    metrics: dict[str, float] = {f"pairs_{k}" if k == "rows" else k: v for k, v in totals.items()}
    metrics["tokens_per_s"] = round(progress.tokens_per_s, 1)
    tags = run_tags("score", profile, prompt, version, sampling)
    tags["backforth.score.mode"] = cfg.mode
    tags["backforth.input_step_version"] = input_version
    figures: dict[str, Any] = {}
    rows = spark.table(target).where(F.col("step_version") == version) if table_exists(spark, target) else None
    if rows is not None:
        summary = judge_summary(rows)
        metrics.update(summary["metrics"])
        tags["backforth.judge_sanity"] = summary["sanity"]
        log.info("%s", summary["sanity"])
        if summary["histogram"]:
            figures["score_histogram.png"] = bar_chart(
                summary["histogram"], "score", "pairs",
                f"Judge scores ({profile.name}, {cfg.mode} mode), matched pairs",
            )  # fmt: skip
    return JobResult(metrics, figures=figures, tags=tags)


def judge_summary(rows: Any) -> dict[str, Any]:
    """Valid-score rate, score histogram, and the matched-vs-control AUC for one step version."""
    from pyspark.sql import functions as F

    stats = rows.groupBy("pair_kind", "score", "invalid_reason").agg(F.count("*").alias("n")).collect()
    matched = [r for r in stats if r["pair_kind"] == "matched"]
    total = sum(r["n"] for r in matched)
    valid = sum(r["n"] for r in matched if r["score"] is not None)
    metrics: dict[str, float] = {"scored_pairs": total, "valid_scores": valid}
    metrics["valid_rate"] = round(valid / total, 4) if total else 0.0
    for r in matched:
        if r["invalid_reason"]:
            metrics[f"invalid.{r['invalid_reason']}"] = metrics.get(f"invalid.{r['invalid_reason']}", 0) + r["n"]
    histogram = {str(s): 0 for s in range(1, 6)}
    for r in matched:
        if r["score"] is not None:
            histogram[str(r["score"])] += r["n"]
    for s, n in histogram.items():
        metrics[f"score.{s}"] = n
    controls = rows.where("pair_kind = 'control'").select("doc_id", F.col("expected_score").alias("c"))
    paired = (
        rows.where("pair_kind = 'matched'")
        .select("doc_id", F.col("expected_score").alias("m"))
        .join(controls, "doc_id")
    )
    got = paired.collect()
    value = auc([r["m"] for r in got], [r["c"] for r in got])
    metrics["sanity_pairs"] = len(got)
    if math.isnan(value):
        sanity = "judge sanity check: not enough valid control pairs to compute an AUC"
    else:
        metrics["sanity_auc"] = round(value, 4)
        verdict = (
            "the judge cannot tell matched from mismatched pairs: its scores are not a quality signal"
            if value < 0.6
            else "the judge separates matched from mismatched pairs"
        )
        sanity = f"judge sanity AUC {value:.2f} on {len(got)} control pairs (0.5 = chance): {verdict}"
    return {"metrics": metrics, "histogram": histogram if valid else {}, "sanity": sanity}
