"""Score (instruction, document) pairs with the 5-point judge: instructions (accepted) + docs_clean → scores.

Input: ``instructions`` rows with an instruction, of one backtranslate step version (default: the newest), paired with
their document's text from ``docs_clean`` as the candidate answer. Output: ``scores`` (key ``doc_id, pair_kind,
step_version``).
Two modes: ``text`` (the judge reasons, then writes ``Score: N``; tolerant parsing, the last score wins) and
``logprob`` (the judge's answer is prefilled up to "Score: " and one forward pass reads the probabilities of 1–5:
expected score, most likely digit, and the probability mass on the digits, invalid below ``min_digit_mass``).
Each run also scores ``sanity_pairs`` control pairs whose instruction belongs to another document (``pair_kind =
control``) and reports the AUC of matched vs control scores: 0.5 means the judge cannot tell them apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from backforth.config import ConfigError, at_least
from backforth.engines import Sampling
from backforth.llm import Context, LLMStep, llm_step
from backforth.plots import bar_chart
from backforth.registry import JobResult
from backforth.udfs.judge import judge_summary
from backforth.udfs.llm import make_score_parser
from backforth.udfs.prompts import HERE as PROMPTS
from backforth.udfs.prompts import PromptTemplate

log = logging.getLogger("backforth.score")
DIGITS = ["1", "2", "3", "4", "5"]
SCORE_PREFILL = "Score: "  # with the space: small models' tokenizers put the space and the digit in separate tokens


@dataclass
class ScoreConfig:
    input_text_table: str = "docs_clean"
    output_table: str = "scores"
    input_version: str | None = None  # which backtranslation to judge (a step_version); null = the newest finished
    mode: Literal["text", "logprob"] = "text"
    model: str = "smollm2-cpu"
    model_options: dict[str, Any] = field(default_factory=dict)
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=1.0, top_p=0.9, max_tokens=192))
    prompt: str = "score"
    min_digit_mass: float = 0.5  # logprob mode: below this probability on 1-5 the score is invalid
    sanity_pairs: int = 20  # control pairs with another document's instruction (0 = no sanity check)
    # text mode only. null = free text; `reasoning` = one paragraph of reasons (at most 2 characters per token of
    # the cap, so the verdict always fits) then "Score: N" on its own line; `digit` = the answer prefilled with
    # "Score: " and held to one of 1-5; or a constraint mapping (regex / choice / json): backforth.structured
    structured: str | dict[str, Any] | None = None
    version: str = "score-v1"
    shard_rows: int | None = at_least(1)  # rows per Delta append; null = engines × engine batch × 4 (backforth.shards)
    shards_in_flight: int = at_least(1, 2)  # shards generating at once: engines never wait for a shard's tail or commit
    limit: int | None = at_least(0)


def judge_template(cfg: ScoreConfig, template: PromptTemplate) -> PromptTemplate:
    if cfg.mode == "logprob" and cfg.structured not in (None, "off"):
        raise ConfigError("score.structured: logprob mode generates no text to constrain (it reads the digits' "
                          "probabilities); use mode: text with structured, or structured: null")  # fmt: skip
    prefilled = cfg.mode == "logprob" or cfg.structured == "digit"
    return replace(template, prefill=SCORE_PREFILL) if prefilled else template


def reasoning_then_score(cfg: ScoreConfig) -> dict[str, str]:
    """One paragraph of reasons, short enough that ``Score: N`` fits in the token cap, then the verdict line."""
    chars = max(16, 2 * (cfg.sampling.max_tokens - 8))
    return {"regex": rf"[^\n]{{1,{chars}}}\nScore: [1-5]"}


PRESETS = {"reasoning": reasoning_then_score, "digit": lambda cfg: {"choice": DIGITS}}


def pairs(ctx: Context) -> Any:
    """(doc_id, pair_kind, instruction_version, instruction, text): every accepted instruction of the input run
    with its document, plus the control pairs."""
    from pyspark.sql import functions as F

    texts = ctx.read(ctx.cfg.input_text_table).select("doc_id", "text")
    matched = (
        ctx.read_upstream()
        .where(F.col("instruction").isNotNull())
        .select("doc_id", F.col("step_version").alias("instruction_version"), "instruction")
        .join(texts, "doc_id")
    )
    own = matched.select("doc_id", F.lit("matched").alias("pair_kind"), "instruction_version", "instruction", "text")
    return own.unionByName(with_controls(matched, ctx.cfg.sanity_pairs))


def with_controls(matched: Any, n: int) -> Any:
    """``n`` control pairs: documents in a fixed hash order, each paired with the next one's instruction."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    empty = matched.where(F.lit(False)).select(
        "doc_id", F.lit("control").alias("pair_kind"), "instruction_version", "instruction", "text"
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
        "doc_id", F.lit("control").alias("pair_kind"), "instruction_version", F.col("_other").alias("instruction"),
        "text",
    )  # fmt: skip


def parse(ctx: Context) -> Any:
    from pyspark.sql import functions as F

    return make_score_parser()(
        F.col("gen.text"), F.col("gen.probs"), F.lit(ctx.cfg.mode), F.lit(ctx.cfg.min_digit_mass)
    )


def columns(ctx: Context) -> list[Any]:
    from pyspark.sql import functions as F

    return [
        "instruction_version",
        "instruction",
        F.lit(ctx.cfg.mode).alias("mode"),
        F.col("parsed.score").alias("score"),
        F.col("parsed.expected_score").alias("expected_score"),
        F.col("parsed.digit_mass").alias("digit_mass"),
        (F.col("parsed.score").isNotNull()).alias("valid"),
        F.coalesce(F.col("parsed.invalid_reason"), F.when(F.col("gen.error").isNotNull(), F.lit("engine_error"))).alias(
            "invalid_reason"
        ),
    ]


def seed_key(cfg: ScoreConfig) -> Any:
    """The row's seed key: the document, and for a control pair the document marked as such."""
    from pyspark.sql import functions as F

    return F.when(F.col("pair_kind") == "control", F.concat("doc_id", F.lit(":control"))).otherwise(F.col("doc_id"))


def summary(ctx: Context, rows: Any) -> JobResult:
    out = judge_summary(rows)
    result = JobResult(
        out["metrics"], tags={"backforth.judge_sanity": out["sanity"], "backforth.score.mode": ctx.cfg.mode}
    )
    log.info("%s", out["sanity"])
    if out["histogram"]:
        result.figures["score_histogram.png"] = bar_chart(
            out["histogram"], "score", "pairs", f"Judge scores ({ctx.profile.name}, {ctx.cfg.mode} mode), matched pairs"
        )
    return result


STEP = llm_step(
    LLMStep(
        name="score",
        description=__doc__.splitlines()[0],
        config=ScoreConfig,
        table="scores",
        prompts=PROMPTS,
        reads=lambda cfg: "backtranslate",
        rows=pairs,
        key=("doc_id", "pair_kind"),
        seed_key=seed_key,
        variables={"instruction": "instruction", "response": "text"},
        template=judge_template,
        sampling=lambda cfg: cfg.sampling if cfg.mode == "text" else replace(cfg.sampling, max_tokens=1),
        candidates=lambda cfg: DIGITS if cfg.mode == "logprob" else None,
        capped=lambda cfg: cfg.mode == "text",  # logprob mode reads one token by design: no truncation to count
        params=lambda cfg: {"mode": cfg.mode},
        parse=parse,
        columns=columns,
        rows_metric="pairs",
        structured=PRESETS,
        summary=summary,
    )
)
