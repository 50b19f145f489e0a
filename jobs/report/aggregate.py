"""The report's Spark work: every count it shows, computed from the pipeline tables at the selected step versions
and handed back as plain Python data (``RunData``); no figures, no page, no MLflow here.

Aggregations run in Spark (stage counts, drop reasons, token counts with the generation model's tokenizer, judge
histograms); only a sample of at most ``max(diversity_examples, mauve_samples)`` rows per kind and ``samples`` rows
side by side reach the driver."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backforth import catalog, lineage
from backforth.jobs.report.config import KIND_LABELS, ReportConfig
from backforth.jobs.report.selection import Versions
from backforth.keep import keep, release
from backforth.tables import qualify, table_exists
from backforth.udfs.parsing import ACCEPTED_RESPONSE
from backforth.udfs.report_metrics import make_token_count_udf

log = logging.getLogger("backforth.report")


@dataclass
class RunData:
    """What Spark computed for one run, as plain data: the input of the report's sections."""

    stages: list[tuple[str, int, dict[str, int]]]  # funnel: (stage, rows, drops per reason), ingest to export
    freq: dict[tuple[str, str], dict[int, int]]  # (kind, 'instruction' | 'response') → {tokens: rows}
    method: str  # how tokens were counted (which tokenizer, or the chars/4 estimate, and why)
    sample: dict[str, list[dict[str, Any]]]  # kind → rows (doc_id, instruction, response), pseudo-random order
    judge: dict[str, Any] | None  # judge_stats; None = no scores for this run
    side_by_side: list[list[Any]]  # doc_id, document excerpt, instruction, rewrite, distillation
    # per LLM step of the run whose outputs a cap can cut: step, outputs, truncated (hit max_tokens), cap
    truncation: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None  # evaluation_stats: the newest evaluation of this run's export


def aggregate_run(spark: Any, settings: Any, v: Versions) -> RunData:
    """Every aggregation of the report for the run ``v`` (see ``RunData``)."""
    cfg: ReportConfig = settings.job
    stages = funnel_stages(spark, settings, v)
    sets = keep(kind_sets(spark, settings, v))
    tokenizer, method = resolve_report_tokenizer(cfg, v)
    freq = token_frequencies(sets, tokenizer, cfg.max_text_chars)
    sample = driver_sample(sets, max(cfg.diversity_examples, cfg.mauve_samples))
    release(sets)
    judge = judge_stats(spark, settings, v)
    return RunData(stages, freq, method, sample, judge, side_by_side(spark, settings, v),
                   truncation_stats(spark, settings, v), evaluation_stats(spark, settings, v))  # fmt: skip


# --- funnel
def funnel_stages(spark: Any, settings: Any, v: Versions) -> list[tuple[str, int, dict[str, int]]]:
    """(stage, rows, drops per reason) from the records read to the export: the catalog's funnel of the run
    (backforth.catalog, the same numbers as the pipeline summary and the dataset card), with what only the report
    shows: the records read (documents plus ingest rejects, by reason), the filter's drops and the kind's label."""
    from pyspark.sql import functions as F

    cfg: ReportConfig = settings.job
    docs = qualify(settings, cfg.input_docs_table)
    if not table_exists(spark, docs):
        return []
    runs = dict(v.runs)
    if cfg.kind not in v.responses:  # no responses of the followed kind: the funnel stops before the answers
        runs = {k: r for k, r in runs.items() if k not in ("rewrite", "distill", "export")}
    else:
        runs = {k: r for k, r in runs.items() if k != ("distill" if cfg.kind == "rewrite" else "rewrite")}
        export = next((r for r in lineage.runs(spark, settings, "export") if r.input(cfg.kind) and
                       r.input(cfg.kind).step_version == v.responses[cfg.kind]), None)  # fmt: skip
        if export is not None:
            runs["export"] = export
    rejects_fqn = qualify(settings, cfg.input_rejects_table)
    rejected: dict[str, int] = {}
    if table_exists(spark, rejects_fqn):
        rows = spark.table(rejects_fqn).groupBy("reason").agg(F.count("*").alias("n")).collect()
        rejected = {r["reason"] or "unknown": int(r["n"]) for r in rows}
    stages: list[tuple[str, int, dict[str, int]]] = []
    for s in catalog.funnel(spark, settings, runs):
        reasons = dict(s.reasons)
        if s.table == "docs_raw":
            stages.append(("records read", s.rows + sum(rejected.values()), {}))
            reasons = rejected
        elif s.table == "pairs_filtered":
            valid = stages[-1][1] if stages and stages[-1][0] == "pairs with a valid score" else s.kept
            label = f"below_filter ({v.filter_rule})" if v.filter_rule else "below_filter"
            people = {k: n for k, n in reasons.items() if k != "dropped"}  # human_reject: from `backforth review`
            reasons = {label: max(0, valid - s.kept - sum(people.values())), **people}
        label = f"{KIND_LABELS[cfg.kind]} responses accepted" if s.table == "responses" else s.label
        stages.append((label, s.kept, reasons))
    return stages


# --- per-kind sets
def run_pairs(spark: Any, settings: Any, v: Versions) -> Any:
    """(doc_id, instruction, text) of the run's pairs: the filter's kept pairs, else the accepted instructions (what
    the responses answered); None when neither exists."""
    from pyspark.sql import functions as F

    cfg: ReportConfig = settings.job
    pairs_fqn, instr_fqn = output_table(settings, v, "filter"), output_table(settings, v, "backtranslate")
    if v.filter and table_exists(spark, pairs_fqn):
        base = spark.table(pairs_fqn).where(F.col("step_version") == v.filter)
        if "drop_reason" in base.columns:  # pairs people rejected stay in the table, with their reason
            base = base.where(F.col("drop_reason").isNull())
    elif v.instructions and table_exists(spark, instr_fqn):
        base = spark.table(instr_fqn).where(
            (F.col("step_version") == v.instructions) & F.col("instruction").isNotNull()
        )
    else:
        return None
    text = spark.table(qualify(settings, cfg.input_clean_table)).select("doc_id", "text")
    return base.select("doc_id", "instruction").join(text, "doc_id")


def kind_sets(spark: Any, settings: Any, v: Versions) -> Any:
    """(kind, doc_id, instruction, response) rows: the raw-document pairs, and the accepted responses per kind."""
    from pyspark.sql import functions as F

    parts = []
    base = run_pairs(spark, settings, v)
    if base is not None:
        parts.append(base.select(F.lit("raw").alias("kind"), "doc_id", "instruction", F.col("text").alias("response")))
    for kind, version in v.responses.items():
        rows = spark.table(output_table(settings, v, kind)).where(
            (F.col("kind") == kind) & (F.col("step_version") == version) & F.col("status").isin(*ACCEPTED_RESPONSE)
        )
        parts.append(rows.select(F.lit(kind).alias("kind"), "doc_id", "instruction", "response"))
    if not parts:
        return spark.createDataFrame([], "kind string, doc_id string, instruction string, response string")
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def resolve_report_tokenizer(cfg: ReportConfig, v: Versions) -> tuple[str | None, str]:
    """(tokenizer path or None, how lengths were counted). ``auto``: the tokenizer of the model that generated the
    responses (else the instructions); a model without a local tokenizer.json falls back to chars/4, said so."""
    from backforth.models import resolve_tokenizer
    from backforth.pipeline import profile_or_none
    from backforth.udfs.tokens import CHARS_PER_TOKEN_ESTIMATE, tokenizer_file

    estimate = f"estimate: characters / {CHARS_PER_TOKEN_ESTIMATE}"
    ref, origin = cfg.tokenizer, "configured"
    if ref == "auto":
        ref, origin = None, "no generation model found"
        for step in (cfg.kind, "backtranslate"):
            name = v.models.get(step, (None, None))[0]
            profile = profile_or_none(name) if name else None
            if profile is not None:
                ref, origin = profile.tokenizer or profile.model, f"model profile {profile.name}"
                break
    if ref is None:
        return None, f"{estimate} ({origin})"
    try:
        path = resolve_tokenizer(ref)
        tokenizer_file(path)
    except (FileNotFoundError, OSError, ValueError) as exc:
        log.warning("report: tokenizer %s unusable (%s); counting chars/%d", ref, exc, CHARS_PER_TOKEN_ESTIMATE)
        return None, f"{estimate} ({origin}: no local tokenizer.json for '{ref}')"
    return path, f"tokenizer {Path(tokenizer_file(path)).parent.name} ({origin})"


def token_frequencies(sets: Any, tokenizer: str | None, max_chars: int) -> dict[tuple[str, str], dict[int, int]]:
    """{(kind, 'instruction' | 'response'): {tokens: rows}}, counted in Spark (one pandas UDF pass per column)."""
    from pyspark.sql import functions as F

    tokens = make_token_count_udf(tokenizer, max_chars)
    long = sets.select(
        "kind",
        F.explode(F.array(
            F.struct(F.lit("instruction").alias("field"), tokens("instruction").alias("tokens")),
            F.struct(F.lit("response").alias("field"), tokens("response").alias("tokens")),
        )).alias("t"),
    )  # fmt: skip
    freq: dict[tuple[str, str], dict[int, int]] = {}
    for r in long.groupBy("kind", "t.field", "t.tokens").count().collect():
        freq.setdefault((r["kind"], r["field"]), {})[int(r["tokens"])] = int(r["count"])
    return freq


def driver_sample(sets: Any, n: int) -> dict[str, list[dict[str, Any]]]:
    """At most ``n`` rows per kind in a fixed pseudo-random order (hash of doc_id), collected to the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("kind").orderBy(F.xxhash64("doc_id"), "doc_id")
    rows = sets.withColumn("_rn", F.row_number().over(order)).where(F.col("_rn") <= n).orderBy("kind", "_rn")
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows.collect():
        out.setdefault(r["kind"], []).append({k: r[k] for k in ("doc_id", "instruction", "response")})
    return out


# --- judge stats
def judge_stats(spark: Any, settings: Any, v: Versions) -> dict[str, Any] | None:
    """The chosen score version's summary (jobs.score.judge_summary), kept share, and valid rate per judge mode."""
    from pyspark.sql import functions as F

    from backforth.udfs.judge import judge_summary

    fqn = output_table(settings, v, "score")
    run = next((r for r in v.score_runs if r["step_version"] == v.score), None)
    if run is None or not table_exists(spark, fqn):
        return None
    summary = judge_summary(spark.table(fqn).where(F.col("step_version") == v.score))
    modes = []
    for r in v.score_runs:  # newest first: the first run of each mode
        if r["mode"] not in {m["mode"] for m in modes}:
            rate = round(int(r["valid"] or 0) / int(r["matched"]), 4) if r["matched"] else math.nan
            modes.append({"mode": r["mode"], "step_version": r["step_version"], "pairs": int(r["matched"] or 0),
                          "valid_rate": rate})  # fmt: skip
    scored = summary["metrics"].get("scored_pairs", 0)
    summary["kept"] = v.kept
    summary["kept_share"] = round(v.kept / scored, 4) if v.kept is not None and scored else math.nan
    summary["modes"] = modes
    summary["mode"] = run["mode"]
    return summary


# --- outputs cut at the token cap
LLM_STEPS = ("backtranslate", "score", "rewrite", "distill")


def truncation_stats(spark: Any, settings: Any, v: Versions) -> list[dict[str, Any]]:
    """Per LLM step of the run (in pipeline order): its generated outputs (rows without an engine error), how many
    stopped at the cap (finish_reason 'length') and the cap (the rows' sampling.max_tokens, else the run's). A score
    run in logprob mode is left out: it reads one token on purpose (backforth.llm, ``LLMStep.capped``)."""
    from pyspark.sql import functions as F

    out = []
    for step in LLM_STEPS:
        run = v.runs.get(step)
        fqn = output_table(settings, v, step)
        if run is None or run.params.get("mode") == "logprob" or not table_exists(spark, fqn):
            continue
        rows = spark.table(fqn).where(F.col("step_version") == run.step_version)
        if "finish_reason" not in rows.columns:  # a table written before generations carried it
            continue
        cap = F.max("sampling.max_tokens") if "sampling" in rows.columns else F.lit(None)
        r = rows.agg(
            F.count(F.when(F.col("error").isNull(), 1) if "error" in rows.columns else F.lit(1)).alias("outputs"),
            F.count(F.when(F.col("finish_reason") == "length", 1)).alias("truncated"),
            cap.alias("cap"),
        ).first()
        cap_value = r["cap"] if r["cap"] is not None else (run.sampling or {}).get("max_tokens")
        out.append({"step": step, "outputs": int(r["outputs"] or 0), "truncated": int(r["truncated"] or 0),
                    "cap": int(cap_value) if cap_value is not None else None})  # fmt: skip
    return out


# --- pairwise evaluation of the exported training set
def evaluation_stats(spark: Any, settings: Any, v: Versions) -> dict[str, Any] | None:
    """The newest finished ``evaluate`` run whose candidate or baseline is an export of this run's responses:
    its sets, judge and summary (backforth.evaluation) from eval_verdicts; None when there is none."""
    from pyspark.sql import functions as F

    from backforth.evaluation import summarize

    answered = set(v.responses.values())
    exports = {r.step_version for r in lineage.runs(spark, settings, "export")
               if any(i.step_version in answered for i in r.inputs)}  # fmt: skip
    run = next((r for r in lineage.runs(spark, settings, "evaluate")
                if any(i.step_version in exports for i in r.inputs)), None)  # fmt: skip
    if run is None or not run.output_table or not table_exists(spark, run.output_table):
        return None
    rows = spark.table(run.output_table).where(F.col("step_version") == run.step_version).collect()
    if not rows:
        return None
    first = rows[0]
    return {"version": run.step_version, "candidate": f"{first['candidate_set']} ({first['candidate_export']})",
            "baseline": f"{first['baseline_set']} ({first['baseline_export']})", "judge": first["judge"],
            "summary": summarize([(r["verdict_ab"], r["verdict_ba"]) for r in rows])}  # fmt: skip


# --- samples side by side
def side_by_side(spark: Any, settings: Any, v: Versions) -> list[list[Any]]:
    """Up to ``samples`` rows: doc_id, document excerpt, instruction, rewrite, distillation (or why there is none)."""
    from pyspark.sql import functions as F

    cfg: ReportConfig = settings.job
    base = run_pairs(spark, settings, v)
    if base is None:
        return []
    score = F.lit(0)
    for kind in ("rewrite", "distill"):
        version = v.responses.get(kind)
        if version:
            rows = spark.table(output_table(settings, v, kind)).where(
                (F.col("kind") == kind) & (F.col("step_version") == version)
            )
            base = base.join(rows.select("doc_id", F.col("response").alias(kind), F.col("status").alias(f"{kind}_st")),
                             "doc_id", "left")  # fmt: skip
            score = score + F.coalesce(F.col(f"{kind}_st").isin(*ACCEPTED_RESPONSE).cast("int"), F.lit(0))
        else:
            base = base.withColumn(kind, F.lit(None).cast("string")).withColumn(
                f"{kind}_st", F.lit(None).cast("string")
            )
    picked = base.orderBy(score.desc(), F.xxhash64("doc_id"), "doc_id").limit(cfg.samples)
    out = []
    for r in picked.collect():
        cells = [r["doc_id"], _excerpt(r["text"], cfg.excerpt_chars), r["instruction"]]
        for kind in ("rewrite", "distill"):
            if not v.responses.get(kind):
                cells.append(f"(no {kind} run)")
            elif r[f"{kind}_st"] is None:
                cells.append("(no response for this pair yet)")
            elif r[f"{kind}_st"] in ACCEPTED_RESPONSE:
                cells.append(r[kind])
            else:
                cells.append(f"(rejected: {r[f'{kind}_st']})")
        out.append(cells)
    return out


def output_table(settings: Any, v: Versions, step: str) -> str:
    """The table the run of ``step`` wrote (from its lineage row), else the catalog's table of that step."""
    run = v.runs.get(step)
    if run is not None and run.output_table:
        return run.output_table
    entry = catalog.written_by(step)
    return qualify(settings, entry.name if entry else step)


def _excerpt(text: str | None, n: int) -> str:
    text = text or ""
    return text if len(text) <= n else text[: n - 1] + "…"
