"""Which run the report describes: the step versions it reads, chosen from ``ReportConfig``.

The contract is ``select_run(spark, settings) -> Versions``; everything else here is how it is done today (one small
catalog of every step version per LLM table, then a walk back from the chosen responses to the filter, score and
backtranslation they came from) and may be replaced without touching the rest of the report. What the report reads
from ``Versions``:

- the Spark aggregations (``jobs.report.aggregate``): ``responses``, ``instructions``, ``score``, ``filter``,
  ``kept``, ``filter_rule`` and ``score_runs`` (the judge's valid rate per mode and the chosen score's mode);
  ``models`` picks the tokenizer when ``tokenizer: auto``;
- the page (``jobs.report.page``): ``responses``, ``filter``, ``score``, ``instructions`` and ``notes`` in its
  header, ``models`` for the quality statement;
- the MLflow tags: ``responses``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backforth.tables import qualify, table_exists
from jobs.report.config import ReportConfig

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


def select_run(spark: Any, settings: Any) -> Versions:
    """The step versions of the run ``settings.job`` (a ReportConfig) asks for: the newest responses of its ``kind``
    unless pinned, the other kind's newest responses to the same pairs, and the filter, score and backtranslation
    those came from unless pinned. A pinned response version with no rows raises ValueError."""
    return resolve_versions(version_catalog(spark, settings), settings.job)


def version_catalog(spark: Any, settings: Any) -> dict[str, list[dict[str, Any]]]:
    """One row per step version of each LLM table (newest created_at, rows, model): four small aggregations, so
    choosing a run costs four Spark jobs whatever the number of versions."""
    from pyspark.sql import functions as F

    cfg: ReportConfig = settings.job
    model = [F.first("model.profile").alias("profile"), F.first("model.uri").alias("uri")]
    matched = F.col("pair_kind") == "matched"
    plans = {
        "instructions": (["step_version"], model),
        "scores": (["step_version", "instruction_version", "mode"], [
            *model, F.sum(matched.cast("int")).alias("matched"), F.sum((matched & F.col("valid")).cast("int")).alias(
                "valid")]),
        "pairs": (["filter_version", "score_version", "instruction_version", "filter_mode", "filter_value"], []),
        "responses": (["kind", "step_version", "source_version"], model),
    }  # fmt: skip
    catalog: dict[str, list[dict[str, Any]]] = {}
    for name, (keys, aggs) in plans.items():
        fqn = qualify(settings, getattr(cfg, f"input_{name}_table"))
        if not table_exists(spark, fqn):
            catalog[name] = []
            continue
        rows = spark.table(fqn).groupBy(*keys).agg(F.max("created_at").alias("at"), F.count("*").alias("rows"), *aggs)
        catalog[name] = [r.asDict() for r in rows.collect()]
    return catalog


def newest_of(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The newest catalog row whose fields equal ``match``."""
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return max(found, key=lambda r: r["at"]) if found else None


def resolve_versions(catalog: dict[str, list[dict[str, Any]]], cfg: ReportConfig) -> Versions:
    """Walk back from the chosen responses to the filter, score and backtranslation they came from."""
    v = Versions()
    responses = catalog["responses"]
    main = newest_of(responses, kind=cfg.kind, **_pinned(getattr(cfg, f"{cfg.kind}_version")))
    if getattr(cfg, f"{cfg.kind}_version") and main is None:
        raise ValueError(f"{cfg.kind}_version {getattr(cfg, f'{cfg.kind}_version')}: no such {cfg.kind} rows")
    if main:
        v.responses[cfg.kind], v.source = main["step_version"], main["source_version"]
    other = "distill" if cfg.kind == "rewrite" else "rewrite"
    pinned = getattr(cfg, f"{other}_version")
    chosen = newest_of(responses, kind=other, **_pinned(pinned))
    if pinned is None and v.source is not None:
        same = newest_of(responses, kind=other, source_version=v.source)
        if same is None and chosen is not None:
            v.notes.append(f"the newest {other} run ({chosen['step_version']}) answered other pairs")
        chosen = same or chosen
    if chosen:
        v.responses[other] = chosen["step_version"]
    for kind, version in v.responses.items():
        row = newest_of(responses, kind=kind, step_version=version)
        v.models[kind] = (row["profile"], row["uri"])
    pairs = catalog["pairs"]
    if cfg.filter_version:
        v.filter = cfg.filter_version
    elif v.source is not None:
        v.filter = v.source if newest_of(pairs, filter_version=v.source) else None
    elif pairs:
        v.filter = newest_of(pairs)["filter_version"]
    prow = newest_of(pairs, filter_version=v.filter) if v.filter else None
    if prow:
        v.score, v.instructions, v.kept = prow["score_version"], prow["instruction_version"], int(prow["rows"])
        v.filter_rule = f"{prow['filter_mode']} {prow['filter_value']:g}"
    v.score = cfg.score_version or v.score
    v.instructions = cfg.instruction_version or v.instructions
    if v.instructions is None and v.source is not None and v.filter is None:
        v.instructions = v.source  # responses made with input = all answer a backtranslation directly
    srow = newest_of(catalog["scores"], step_version=v.score) if v.score else None
    if v.instructions is None and srow:
        v.instructions = srow["instruction_version"]
    if v.instructions is None and catalog["instructions"]:
        v.instructions = newest_of(catalog["instructions"])["step_version"]
    if v.score is None and v.instructions is not None:
        srow = newest_of(catalog["scores"], instruction_version=v.instructions)
        v.score = srow["step_version"] if srow else None
    if srow:
        v.models["score"] = (srow["profile"], srow["uri"])
    irow = newest_of(catalog["instructions"], step_version=v.instructions) if v.instructions else None
    if irow:
        v.models = {"backtranslate": (irow["profile"], irow["uri"]), **v.models}
    v.score_runs = sorted((r for r in catalog["scores"] if r["instruction_version"] == v.instructions),
                          key=lambda r: r["at"], reverse=True)  # fmt: skip
    return v


def _pinned(version: str | None) -> dict[str, str]:
    return {"step_version": version} if version else {}
