"""Which run the report describes, read from the lineage table (``step_runs``).

``select_run(spark, settings) -> Versions``: the newest finished run of the configured ``kind`` (or the pinned
``<kind>_version``), the other kind's newest finished run over the same pairs, and the filter, score and
backtranslation runs they read (backforth.lineage.chain), each of which can be pinned. What the report reads from
``Versions``: the runs for the funnel (backforth.catalog), the step versions for its per-kind sets, judge statistics
and samples, the models for the tokenizer and the quality statement, and the notes for the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backforth import lineage
from backforth.errors import MissingInputError
from backforth.jobs.report.config import ReportConfig
from backforth.lineage import StepRun
from backforth.tables import table_exists

__all__ = ["Versions", "select_run"]


@dataclass
class Versions:
    """The step versions one report reads (None = that step has no rows for this run), and what the catalog says
    about them: models, the filter's rule and size, the judge's runs per mode."""

    responses: dict[str, str] = field(default_factory=dict)  # kind → step_version
    source: str | None = None  # what the responses answered: a filter version or a backtranslate version
    filter: str | None = None
    score: str | None = None
    instructions: str | None = None
    kept: int | None = None  # pairs kept by the filter version
    filter_rule: str = ""  # e.g. "threshold 4" (filter_mode filter_value), shown beside the filter's drops
    models: dict[str, tuple[str, str]] = field(default_factory=dict)  # step → (profile, model uri)
    # every scoring of the same instructions, newest first: step_version, mode, matched (pairs), valid (pairs), at
    score_runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said on the page (e.g. a newest run that answered other pairs)
    runs: dict[str, StepRun] = field(default_factory=dict)  # step → the run read (what the catalog's funnel counts)


def select_run(spark: Any, settings: Any) -> Versions:
    """The runs ``settings.job`` (a ReportConfig) asks for; see the module docstring. A pinned version without a
    finished run is a user error."""
    cfg: ReportConfig = settings.job
    finished = lineage.runs(spark, settings)
    by_step: dict[str, list[StepRun]] = {}
    for run in finished:
        by_step.setdefault(run.step, []).append(run)

    def pick(step: str, pinned: str | None, **params: str) -> StepRun | None:
        try:
            return lineage.resolve(spark, settings, step, pinned, params or None, by_step.get(step, []))
        except MissingInputError:
            return None

    v = Versions()
    other = "distill" if cfg.kind == "rewrite" else "rewrite"
    main = pick(cfg.kind, getattr(cfg, f"{cfg.kind}_version"))
    start = main or pick("filter", cfg.filter_version) or pick("score", cfg.score_version)
    start = start or pick("backtranslate", cfg.instruction_version)
    runs = lineage.chain(spark, settings, start) if start is not None else {}
    for step, pinned in (("filter", cfg.filter_version), ("score", cfg.score_version),
                         ("backtranslate", cfg.instruction_version)):  # fmt: skip
        if pinned:
            runs[step] = pick(step, pinned)  # type: ignore[assignment]
    if main is not None:
        v.responses[cfg.kind] = main.step_version or ""
        source = next((i for i in main.inputs if i.step in ("filter", "backtranslate")), None)
        v.source = source.step_version if source else None
    pinned_other = getattr(cfg, f"{other}_version")
    chosen = pick(other, pinned_other)
    if pinned_other is None and v.source is not None:
        same = next((r for r in by_step.get(other, []) if any(i.step_version == v.source for i in r.inputs)), None)
        if same is None and chosen is not None:
            v.notes.append(f"the newest {other} run ({chosen.step_version}) answered other pairs")
        chosen = same or chosen
    if chosen is not None:
        v.responses[other] = chosen.step_version or ""
        runs[other] = chosen
    v.runs = {k: r for k, r in runs.items() if r is not None}
    for step in ("backtranslate", "score", *v.responses):
        if step in v.runs and v.runs[step].model:
            model = v.runs[step].model or {}
            v.models[step] = (model.get("profile"), model.get("uri"))
    if "filter" in v.runs:
        f = v.runs["filter"]
        v.filter, v.kept, v.filter_rule = f.step_version, f.rows_out, f.params.get("text", "")
    v.score = v.runs["score"].step_version if "score" in v.runs else None
    v.instructions = v.runs["backtranslate"].step_version if "backtranslate" in v.runs else None
    if v.instructions is not None:
        v.score_runs = score_runs(spark, by_step.get("score", []), v.instructions)
    return v


def score_runs(spark: Any, candidates: list[StepRun], instructions: str) -> list[dict[str, Any]]:
    """Every finished scoring of the ``instructions`` version, newest first, with its matched and valid pairs (one
    small aggregation per scores table)."""
    from pyspark.sql import functions as F

    runs = [r for r in candidates if any(i.step_version == instructions for i in r.inputs)]
    counts: dict[str, Any] = {}
    for table in {r.output_table for r in runs if r.output_table}:
        if not table_exists(spark, table):
            continue
        matched = F.col("pair_kind") == "matched"
        rows = (
            spark.table(table)
            .where(F.col("step_version").isin([r.step_version for r in runs]))
            .groupBy("step_version")
            .agg(
                F.sum(matched.cast("int")).alias("matched"),
                F.sum((matched & F.col("valid")).cast("int")).alias("valid"),
            )
            .collect()
        )
        counts.update({r["step_version"]: r for r in rows})
    out = []
    for r in runs:
        row = counts.get(r.step_version)
        out.append({"step_version": r.step_version, "mode": r.params.get("mode"), "at": r.started_at,
                    "matched": row["matched"] if row else 0, "valid": row["valid"] if row else 0})  # fmt: skip
    return out
