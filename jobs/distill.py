"""Distillation baseline (paper §5.1): answer each instruction without its document → responses (kind = distill).

Same inputs and output table as rewrite (key ``doc_id, kind, step_version``), so rewritten and distilled answers to
the same instructions sit side by side: ``SELECT * FROM responses WHERE doc_id = ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backforth.engines import Sampling
from backforth.registry import JobResult, job
from jobs.rewrite import RewriteConfig, run_response_step


@dataclass
class DistillConfig(RewriteConfig):
    sampling: Sampling = field(default_factory=lambda: Sampling(temperature=1.0, top_p=0.9, max_tokens=512))
    prompt: str = "distill"
    version: str = "ds-v1"


@job("distill", config=DistillConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Answer each pending pair's instruction from the model's own knowledge."""
    return run_response_step(spark, settings, settings.job, "distill")
