"""Outputs cut at the token cap: counted per step run, and a warning above a share (a length bias in the data)."""

from __future__ import annotations

import logging
from typing import Any

from backforth.registry import JobResult

log = logging.getLogger("backforth.llm")

# Above this share of a step's outputs cut at ``sampling.max_tokens`` the run and the report warn: the kept data would
# lose its longest answers and its length statistics would be biased short.
TRUNCATION_WARN_SHARE = 0.05


def truncation_warning(step: str, truncated: int, outputs: int, cap: int) -> str | None:
    """The one-line warning when more than TRUNCATION_WARN_SHARE of ``outputs`` hit the ``cap``; None below it."""
    if not outputs or truncated / outputs <= TRUNCATION_WARN_SHARE:
        return None
    return (f"{step}: {truncated} of {outputs} outputs ({truncated / outputs:.1%}) stopped at the {cap}-token cap "
            f"(more than {TRUNCATION_WARN_SHARE:.0%}): the longest answers are cut or rejected and lengths biased "
            f"short; raise it with --set {step}.sampling.max_tokens={2 * cap}")  # fmt: skip


def add_truncation(step: str, cap: int, written: Any, result: JobResult) -> None:
    """``truncated`` (outputs whose finish_reason is 'length': cut at ``max_tokens``) and ``truncated_share`` of the
    generated outputs (rows without an engine error) of this version; above TRUNCATION_WARN_SHARE a WARNING line in
    the run's log and the same text as the run's ``backforth.truncation_warning`` tag."""
    from pyspark.sql import functions as F

    row = written.agg(
        F.count(F.when(F.col("error").isNull(), 1)).alias("outputs"),
        F.count(F.when(F.col("finish_reason") == "length", 1)).alias("truncated"),
    ).first()
    outputs, truncated = int(row["outputs"] or 0), int(row["truncated"] or 0)
    result.metrics.update({"truncated": truncated, "truncated_share": round(truncated / outputs, 4) if outputs else 0.0,
                           "max_tokens": cap})  # fmt: skip
    warning = truncation_warning(step, truncated, outputs, cap)
    if warning:
        log.warning("%s", warning)
        result.tags["backforth.truncation_warning"] = warning
