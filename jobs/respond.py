"""Answer the kept instructions: rewrite (the method) and distill (the baseline) → responses.

Input: the pairs of one filter run (``input: filtered``, the default and the paper's best variant) or every accepted
instruction of one backtranslate run (``input: all``, "rewriting without filtering"); the newest finished run unless
``input_version`` pins one. Output: ``responses`` (key ``doc_id, step_version``; ``kind`` says rewrite or distill),
so both kinds of answer to the same instruction sit side by side.

- ``rewrite`` turns the document into an assistant answer. The answer is prefilled with ``[RES]`` and generation
  stops at ``[/RES]``; extraction handles missing and unclosed tags, echoes of the prompt's own sentence about the
  tags, refusals, copies of the instruction and outputs cut at the token cap, each a ``status`` (accepted: ok,
  ok_unclosed, ok_untagged).
- ``distill`` (paper §5.1) answers the instruction from the model's own knowledge, without the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from backforth.config import at_least
from backforth.engines import Sampling
from backforth.llm import Context, LLMStep, llm_step
from backforth.udfs.llm import make_response_extractor
from backforth.udfs.prompts import HERE as PROMPTS


@dataclass
class RewriteConfig:
    input: Literal["filtered", "all"] = "filtered"
    input_text_table: str = "docs_clean"
    input_version: str | None = None  # the filter (or backtranslate) step_version to answer; null = newest finished
    output_table: str = "responses"
    model: str = "smollm2-cpu"
    model_options: dict[str, Any] = field(default_factory=dict)
    sampling: Sampling = field(
        default_factory=lambda: Sampling(temperature=1.0, top_p=0.9, max_tokens=512, stop=["[/RES]"])
    )
    prompt: str = "rewrite"
    accept_untagged: bool = True  # an output without any tag is taken whole (status ok_untagged)
    # null = free text; rewrite's `tags` = the answer (after the prefilled [RES]) holds no other [RES]/[/RES]-like
    # tag and ends with [/RES] or the end of text; or a constraint mapping (regex / choice / json): backforth.structured
    structured: str | dict[str, Any] | None = None
    version: str = "rw-v1"
    shard_rows: int | None = at_least(1)  # rows per Delta append; null = engines × engine batch × 4 (backforth.shards)
    shards_in_flight: int = at_least(1, 2)  # shards generating at once: engines never wait for a shard's tail or commit
    limit: int | None = at_least(0)


@dataclass
class DistillConfig(RewriteConfig):
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=1.0, top_p=0.9, max_tokens=512))
    prompt: str = "distill"
    version: str = "ds-v1"


# The answer after the prefilled "[RES]": no "[R", "[/" or "[[" inside (no second tag, no echo of the prompt's
# sentence about the tags), ended by "[/RES]" (the stop string: the engine stops there and returns what came before)
# or by the model's end of text. Requiring the closing tag was measured and dropped: a model that does not close it by
# itself then runs to the token cap (13 of 13 rewrites cut on the CPU demo, against 7 of 13 free).
TAGGED_ANSWER = r"(?:[^\[]|\[[^R/\[])*(?:\[/RES\])?"


def pairs(ctx: Context) -> Any:
    """(doc_id, instruction, source_version[, text]): the instructions of the input run, with the document's text
    when the prompt asks for it."""
    from pyspark.sql import functions as F

    rows = ctx.read_upstream().where(F.col("instruction").isNotNull())
    if "drop_reason" in rows.columns:  # a filter run's pairs people rejected (backforth.reviews) are not answered
        rows = rows.where(F.col("drop_reason").isNull())
    rows = rows.select("doc_id", "instruction", F.col("step_version").alias("source_version"))
    if "document" in ctx.template.variables:
        rows = rows.join(ctx.read(ctx.cfg.input_text_table).select("doc_id", "text"), "doc_id")
    return rows


def extract(ctx: Context) -> Any:
    from pyspark.sql import functions as F

    document = F.col("text") if "document" in ctx.template.variables else F.lit(None).cast("string")
    extractor = make_response_extractor(ctx.template.prefill, ctx.cfg.accept_untagged)
    return extractor(F.col("gen.text"), F.col("instruction"), document, F.col("gen.finish_reason"))


def declare(kind: str, config: type, description: str) -> LLMStep:
    def seed_key(cfg: Any) -> Any:  # the seed depends on the kind: rewrite and distill sample independently
        from pyspark.sql import functions as F

        return F.concat("doc_id", F.lit(kind))

    def columns(ctx: Context) -> list[Any]:
        from pyspark.sql import functions as F

        return [F.lit(kind).alias("kind"), "source_version", "instruction", "parsed.response", "parsed.status"]

    return llm_step(
        LLMStep(
            name=kind,
            description=description,
            config=config,
            table="responses",
            prompts=PROMPTS,
            reads=lambda cfg: "filter" if cfg.input == "filtered" else "backtranslate",
            rows=pairs,
            seed_key=seed_key,
            variables={"instruction": "instruction", "document": "text"},
            params=lambda cfg: {"kind": kind},
            parse=extract,
            columns=columns,
            outcome="status",
            outcome_metric="status",
            rows_metric="pairs",
            structured={"tags": lambda cfg: {"regex": TAGGED_ANSWER}} if kind == "rewrite" else {},
        )
    )


REWRITE = declare("rewrite", RewriteConfig, "Rewrite each kept pair's document into an assistant answer.")
DISTILL = declare("distill", DistillConfig, "Distillation baseline: answer each kept instruction without its document.")
