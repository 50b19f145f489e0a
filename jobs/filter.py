"""Keep the best-judged pairs: scores (matched, valid) → pairs_filtered, a versioned selection.

Input: ``scores`` of one score run (default: the newest finished one; ``input_version`` pins a step version). Output:
``pairs_filtered`` (key ``doc_id, step_version``). Two modes: ``threshold`` keeps pairs with score ≥ ``threshold``
(the papers keep 5); ``top_fraction`` keeps the best ``fraction`` by expected score (the paper's score-5 pairs were
13.6 % of the pool), so a run with a weak judge still yields pairs. The filter is deterministic, so a run replaces its
own version's rows in one atomic overwrite by condition; other versions stay for comparison.
Pairs people rejected in ``backforth review`` (backforth.reviews) are never selected: they stay in the table with
``drop_reason = 'human_reject'`` (the kept rows have NULL), and in ``top_fraction`` mode their slots go to the next
best pairs, which the next rewrite run of the same version answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from backforth import lineage
from backforth import reviews as review_table
from backforth.hashing import fingerprint
from backforth.keep import keep
from backforth.lineage import InputRef, StepRun
from backforth.plots import bar_chart
from backforth.registry import JobResult, job
from backforth.tables import add_missing_columns, ensure_table, qualify, table_version

log = logging.getLogger("backforth.filter")


@dataclass
class FilterConfig:
    output_table: str = "pairs_filtered"
    input_version: str | None = None  # which scoring to filter (a step_version); null = the newest finished
    mode: Literal["threshold", "top_fraction"] = "threshold"
    threshold: int = 5  # threshold mode: keep score >= threshold
    fraction: float = 0.136  # top_fraction mode: the share of valid pairs to keep, best expected score first


def rule(cfg: FilterConfig) -> str:
    return f"ge{cfg.threshold}" if cfg.mode == "threshold" else f"top{cfg.fraction:g}"


def filter_version(cfg: FilterConfig, score_version: str) -> str:
    """``filter-<rule>-<hash>``: the rule and the scoring it reads decide the output."""
    return f"filter-{rule(cfg)}-{fingerprint({'rule': rule(cfg), 'input': score_version}, 8)}"


def select_pairs(scores: Any, cfg: FilterConfig, version: str, rejected: Any = None) -> Any:
    """Pure transformation: scores rows of one version → the kept pairs (``drop_reason`` NULL), and with
    ``rejected`` (doc_id, instruction_version of pairs people rejected) those pairs, never selected, with
    ``drop_reason = 'human_reject'`` (their slots go to the next best pairs)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    valid = scores.where("pair_kind = 'matched' AND valid")
    if rejected is not None:
        dropped = valid.join(rejected, ["doc_id", "instruction_version"])
        valid = valid.join(rejected, ["doc_id", "instruction_version"], "left_anti")
    if cfg.mode == "threshold":
        kept = valid.where(F.col("score") >= cfg.threshold)
    else:
        total = valid.count()
        keep = max(1, round(total * cfg.fraction)) if total else 0
        order = Window.orderBy(F.col("expected_score").desc(), F.col("score").desc(), "doc_id")
        kept = valid.withColumn("_rank", F.row_number().over(order)).where(F.col("_rank") <= keep).drop("_rank")
    out = as_pairs(kept, cfg, version, None)
    return out if rejected is None else out.unionByName(as_pairs(dropped, cfg, version, review_table.HUMAN_REJECT))


def as_pairs(rows: Any, cfg: FilterConfig, version: str, reason: str | None) -> Any:
    from pyspark.sql import functions as F

    return rows.select(
        "doc_id",
        F.lit(version).alias("step_version"),
        "instruction",
        "instruction_version",
        "score",
        "expected_score",
        F.col("step_version").alias("score_version"),
        F.lit(cfg.mode).alias("filter_mode"),
        F.lit(float(cfg.threshold if cfg.mode == "threshold" else cfg.fraction)).alias("filter_value"),
        F.current_timestamp().alias("created_at"),
        F.lit(reason).cast("string").alias("drop_reason"),
    )


@job("filter", config=FilterConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Select the pairs to keep from one scoring run; replaces this filter version's rows."""
    from pyspark.sql import functions as F

    cfg: FilterConfig = settings.job
    upstream = lineage.resolve(spark, settings, "score", cfg.input_version)
    score_version = upstream.step_version or ""
    version = filter_version(cfg, score_version)
    source = upstream.output_table or qualify(settings, "scores")
    read = InputRef(source, "score", score_version, table_version(spark, source))
    scores = spark.table(source).where(F.col("step_version") == score_version)
    inputs, rejected = [read], None
    reviews = review_table.read(spark, settings, inputs)
    if reviews is not None:  # pairs people rejected in `backforth review` are not selected (their slots go on)
        rejected = review_table.rejected_pairs(reviews)
    rows = keep(select_pairs(scores, cfg, version, rejected))
    target = qualify(settings, cfg.output_table)
    ensure_table(spark, target, rows.schema)
    add_missing_columns(spark, target, rows.schema)  # a table written before drop_reason existed
    rows.writeTo(target).overwrite(F.col("step_version") == version)  # atomic; other versions stay
    # one pass over the matched scores: totals and the histogram of valid ones
    groups = scores.where("pair_kind = 'matched'").groupBy("valid", "score").count().collect()
    pairs_in = sum(r["count"] for r in groups)
    histogram = {str(s): 0 for s in range(1, 6)}
    for r in groups:
        if r["valid"]:
            histogram[str(r["score"])] += r["count"]
    outcome = {r["drop_reason"]: int(r["count"]) for r in rows.groupBy("drop_reason").count().collect()}
    n_kept, human_reject = outcome.get(None, 0), outcome.get(review_table.HUMAN_REJECT, 0)
    metrics = {"pairs_in": pairs_in, "valid_in": sum(histogram.values()), "pairs_kept": n_kept,
               "human_reject": human_reject}  # fmt: skip
    metrics["kept_share"] = round(n_kept / pairs_in, 4) if pairs_in else 0.0
    text = f"score ≥ {cfg.threshold}" if cfg.mode == "threshold" else f"best {cfg.fraction:.1%} by expected score"
    log.info("kept %d of %d pairs (%s)", n_kept, pairs_in, text)
    tags = {
        "backforth.filter_version": version,
        "backforth.filter_rule": text,
        "backforth.score_version": score_version,
    }
    figure = bar_chart(histogram, "judge score", "valid pairs", f"Score histogram; kept: {text} ({n_kept} pairs)")
    params = {"rule": rule(cfg), "text": text}
    run = StepRun("filter", step_version=version, inputs=inputs, output_table=target, params=params,
                  rows_in=pairs_in, rows_out=n_kept)  # fmt: skip
    return JobResult(metrics, figures={"filter_score_histogram.png": figure}, tags=tags, lineage=run)
