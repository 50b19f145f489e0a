"""Backtranslate kept documents into the instruction each one answers: docs_dedup (kept) → instructions.

Input: ``docs_dedup`` rows with ``is_kept`` (key ``doc_id``) joined to their text in ``docs_clean``. Output:
``instructions`` (key ``doc_id, step_version``): the cleaned instruction or a ``reject_reason``, the raw output, the
engine's per-row ``error``, token counts, finish reason, and the model, prompt version and sampling that produced it.
Resumable: only documents without a row for the current step_version are generated, in shards of one Delta append.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backforth.config import at_least
from backforth.engines import Sampling
from backforth.llm import Context, LLMStep, llm_step
from backforth.udfs.llm import make_instruction_cleaner
from backforth.udfs.prompts import HERE as PROMPTS
from backforth.udfs.prompts import SLOT, PromptTemplate


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
    shard_rows: int | None = at_least(1)  # rows per Delta append; null = engines × engine batch × 4 (backforth.shards)
    shards_in_flight: int = at_least(1, 2)  # shards generating at once: engines never wait for a shard's tail or commit
    limit: int | None = at_least(0)  # generate at most this many pending documents (smallest doc_id first)
    min_words: int = 3
    max_words: int = 120
    # null = free text; `line` = one line that starts with a visible character and ends with . ? or ! (no
    # preamble line, no answer below it); or a constraint mapping (regex / choice / json): backforth.structured
    structured: str | dict[str, Any] | None = None


# One request: a single line, then the end of the output (the model may stop only after closing punctuation).
ONE_LINE = r"[^\s][^\n]*[.?!]"


def prompt_words(template: PromptTemplate) -> str:
    """The prompt's own wording (slots removed), to catch outputs that merely echo it."""
    return f"{template.system}\n{SLOT.sub(' ', template.user)}"


def kept_documents(ctx: Context) -> Any:
    """(doc_id, text) of every document dedup kept."""
    kept = ctx.read(ctx.cfg.input_table).where("is_kept").select("doc_id")
    return kept.join(ctx.read(ctx.cfg.input_text_table).select("doc_id", "text"), "doc_id")


def parse(ctx: Context) -> Any:
    """The cleaned instruction, or why the output is not one."""
    from pyspark.sql import functions as F

    clean = make_instruction_cleaner(prompt_words(ctx.template), ctx.cfg.min_words, ctx.cfg.max_words)
    return clean(F.col("gen.text"), F.col("text"), F.col("gen.finish_reason"))


STEP = llm_step(
    LLMStep(
        name="backtranslate",
        description=__doc__.splitlines()[0],
        config=BacktranslateConfig,
        table="instructions",
        prompts=PROMPTS,
        rows=kept_documents,
        variables={"document": "text"},
        parse=parse,
        columns=lambda ctx: ["parsed.instruction", "parsed.reject_reason"],
        outcome="coalesce(CASE WHEN error IS NOT NULL THEN 'engine_error' END, reject_reason, 'accepted')",
        rows_metric="docs",
        structured={"line": lambda cfg: {"regex": ONE_LINE}},
        figure_title=lambda ctx: (
            f"Backtranslation outcomes, {ctx.profile.name} ({ctx.version})\n"
            "accepted = passed the output checks, not a quality judgement"
        ),
    )
)
