"""The report's sections, one pure function each: plain data in (what ``jobs.report.aggregate`` computed), the
section's metrics, figures, MLflow tables and page section out. No Spark and no MLflow here; the page's text comes
from ``prose.txt`` (``config.prose``), the figures from ``backforth.plots``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backforth.jobs.report.config import KIND_LABELS, KINDS, ReportConfig, prose
from backforth.llm import TRUNCATION_WARN_SHARE, truncation_warning
from backforth.plots import bar_chart, funnel_figure, grouped_bars, lengths_figure, win_rate_figure
from backforth.report_html import Section, Table
from backforth.udfs.report_metrics import (
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

if TYPE_CHECKING:
    from backforth.jobs.report.aggregate import RunData

# x vs x = two disjoint halves of one set (the paper's distilled vs distilled)
MAUVE_PAIRS = [("distill", "distill"), ("distill", "rewrite"), ("distill", "raw"), ("rewrite", "rewrite"),
               ("rewrite", "raw"), ("raw", "raw")]  # fmt: skip
Freq = dict[tuple[str, str], dict[int, int]]  # (kind, 'instruction' | 'response') → {tokens: rows}
Sample = dict[str, Sequence[Any]]  # kind → rows with 'instruction' and 'response' (dicts or Spark rows)


@dataclass
class SectionResult:
    """One section of the report: its page section, and what goes to MLflow (metrics, figures by file name, tables
    as columns); ``skipped`` says what was not computed and why (MAUVE pairs)."""

    section: Section
    metrics: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def report_sections(cfg: ReportConfig, data: RunData) -> dict[str, SectionResult]:
    """Every section, in page order: funnel, lengths, diversity, judge, mauve, samples, evaluation."""
    present, absent = kinds_present(data.freq)
    return {
        "funnel": funnel_section(data.stages),
        "lengths": lengths_section(data.freq, present, absent, data.method, data.truncation),
        "diversity": diversity_section(data.sample, present, absent, cfg.diversity_examples),
        "judge": judge_section(data.judge),
        "mauve": mauve_section(data.sample, present, absent, cfg),
        "samples": samples_section(data.side_by_side, cfg.excerpt_chars),
        "evaluation": evaluation_section(data.evaluation),
    }


def kinds_present(freq: Freq) -> tuple[list[str], list[str]]:
    """(kinds with responses, labels of the kinds without), in KINDS order."""
    present = [k for k in KINDS if freq.get((k, "response"))]
    return present, [KIND_LABELS[k] for k in KINDS if k not in present]


def funnel_section(stages: Sequence[tuple[str, int, dict[str, int]]]) -> SectionResult:
    """Rows per stage and drops per reason, as metrics (``funnel.<stage>``, ``funnel.<stage>.drop.<reason>``)."""
    funnel = assemble_funnel(stages)
    metrics, figures, tables = {}, {}, {}
    rows = funnel_rows(funnel)
    for stage in funnel:
        key = stage.name.replace(" ", "_")
        metrics[f"funnel.{key}"] = stage.count
        for reason, n in stage.drops.items():
            metrics[f"funnel.{key}.drop.{re.sub(r'[^A-Za-z0-9_.-]', '_', reason.split(' ')[0])}"] = n
    tables["funnel"] = {c: [r[c] for r in rows] for c in ("stage", "reason", "rows", "share_of_first")}
    figures["funnel.png"] = funnel_figure(funnel)
    section = Section(
        prose()("funnel.title"), prose().paragraphs("funnel.text"),
        [Table(prose()("funnel.table"), ["stage", "reason", "rows", "share_of_first"],
               [[r["stage"], r["reason"], r["rows"], r["share_of_first"]] for r in rows])],
        ["funnel.png"],
    )  # fmt: skip
    return SectionResult(section, metrics, figures, tables)


def lengths_section(freq: Freq, present: list[str], absent: list[str], method: str,
                    truncation: Sequence[dict[str, Any]] = ()) -> SectionResult:  # fmt: skip
    """The paper's Table 6 layout: lengths in tokens per kind, with the paper's means beside ours; beside them, per
    LLM step, the outputs cut at the token cap (which bias those lengths short), with a warning above
    TRUNCATION_WARN_SHARE."""
    metrics, figures, tables = {}, {}, {}
    cut_rows, warnings = truncation_rows(truncation, metrics)
    if cut_rows:
        tables["truncation"] = columns(["step", "outputs", "hit_cap", "share", "cap"], cut_rows)
    stats = {key: length_stats(f) for key, f in freq.items()}
    length_rows = []
    for kind in present:
        ins, res = stats[(kind, "instruction")], stats[(kind, "response")]
        row = [KIND_LABELS[kind], ins["n"], ins["mean"], ins["median"], ins["p90"], ins["max"], res["mean"],
               res["median"], res["p90"], res["max"]]  # fmt: skip
        length_rows.append(row)
        for fld, s in (("instruction", ins), ("response", res)):
            for stat in ("mean", "median", "p90", "max"):
                metrics[f"tokens.{kind}.{fld}.{stat}"] = round(s[stat], 2)
        metrics[f"pairs.{kind}"] = ins["n"]
    tables["token_lengths"] = columns(["kind", "pairs", *(f"{f}_{m}" for f in ("instruction", "response")
                                                               for m in ("mean", "median", "p90", "max"))],
                                          length_rows)  # fmt: skip
    paper_rows = [["instruction, any kind", PAPER["instruction_mean_tokens"][0], _ours(stats, "raw", "instruction")],
                  ["response, raw document", PAPER["raw_response_mean_tokens"][0], _ours(stats, "raw", "response")],
                  ["response, rewritten", PAPER["rewrite_response_mean_tokens"][0],
                   _ours(stats, "rewrite", "response")]]  # fmt: skip
    length_figs = []
    if present:
        histograms = {key: length_histogram(f) for key, f in freq.items()}
        figures["token_lengths.png"] = lengths_figure(histograms, {k: KIND_LABELS[k] for k in present}, method)
        length_figs = ["token_lengths.png"]
    section = Section(
        prose()("lengths.title"), [prose()("lengths.text", method=method), _absent_text(absent)],
        [Table(prose()("lengths.table"), ["kind", "pairs", "instruction mean", "instruction median",
                                          "instruction p90", "instruction max", "response mean", "response median",
                                          "response p90", "response max"], length_rows),
         Table(prose()("lengths.paper_table"), ["measure", "paper", "this run"], paper_rows,
               note=prose()("lengths.paper_note")),
         *([Table(prose()("lengths.cap_table"), ["step", "outputs", "hit the cap", "share", "cap (tokens)"], cut_rows,
                  note=prose()("lengths.cap_note", share=f"{TRUNCATION_WARN_SHARE:.0%}"))] if cut_rows else [])],
        length_figs, warnings=warnings,
    )  # fmt: skip
    return SectionResult(section, metrics, figures, tables)


def truncation_rows(truncation: Sequence[dict[str, Any]], metrics: dict[str, float]) -> tuple[list[list[Any]],
                                                                                               list[str]]:  # fmt: skip
    """Table rows (step, outputs, hit the cap, share, cap) and the warnings above TRUNCATION_WARN_SHARE; adds the
    ``truncated.<step>`` and ``truncated_share.<step>`` metrics."""
    rows, warnings = [], []
    for t in truncation:
        share = round(t["truncated"] / t["outputs"], 4) if t["outputs"] else 0.0
        rows.append([t["step"], t["outputs"], t["truncated"], share, t["cap"] if t["cap"] is not None else "n/a"])
        metrics[f"truncated.{t['step']}"] = t["truncated"]
        metrics[f"truncated_share.{t['step']}"] = share
        warning = truncation_warning(t["step"], t["truncated"], t["outputs"], t["cap"] or 0)
        if warning:
            warnings.append(warning)
    return rows, warnings


def diversity_section(sample: Sample, present: list[str], absent: list[str], examples: int) -> SectionResult:
    """Unique word trigrams of instructions and responses per kind, all kinds at the same N (``examples``, or the
    smallest kind's size if that is fewer)."""
    metrics, figures, tables = {}, {}, {}
    n_div = min([examples] + [len(sample[k]) for k in present]) if present else 0
    metrics["diversity.n"] = n_div
    div_rows, div_series = [], {"instructions": {}, "responses": {}}
    for kind in present:
        rows_k = sample[kind][:n_div]
        ins = trigram_diversity(r["instruction"] or "" for r in rows_k)
        res = trigram_diversity(r["response"] or "" for r in rows_k)
        div_rows.append([KIND_LABELS[kind], n_div, ins["unique_trigrams"], ins["distinct_ratio"],
                         res["unique_trigrams"], res["distinct_ratio"]])  # fmt: skip
        metrics[f"diversity.{kind}.instruction_trigrams"] = ins["unique_trigrams"]
        metrics[f"diversity.{kind}.response_trigrams"] = res["unique_trigrams"]
        div_series["instructions"][KIND_LABELS[kind]] = ins["unique_trigrams"]
        div_series["responses"][KIND_LABELS[kind]] = res["unique_trigrams"]
    tables["diversity"] = columns(["kind", "examples", "instruction_unique_trigrams", "instruction_distinct_ratio",
                                       "response_unique_trigrams", "response_distinct_ratio"], div_rows)  # fmt: skip
    div_figs = []
    if div_rows:
        figures["diversity.png"] = grouped_bars(
            div_series, "unique word trigrams", f"Diversity at N = {n_div} examples"
        )
        div_figs = ["diversity.png"]
    ending = prose()("diversity.cut" if n_div < examples else "diversity.uncut")
    section = Section(
        prose()("diversity.title"),
        [prose()("diversity.text", n=n_div, configured=examples, ending=ending), _absent_text(absent)],
        [Table(prose()("diversity.table"), ["kind", "examples", "instruction unique trigrams",
                                            "instruction distinct ratio", "response unique trigrams",
                                            "response distinct ratio"], div_rows)],
        div_figs,
    )  # fmt: skip
    return SectionResult(section, metrics, figures, tables)


def judge_section(judge: dict[str, Any] | None) -> SectionResult:
    """Valid-score rate (per mode), kept share, score histogram and the matched-vs-mismatched AUC; ``judge`` is
    ``aggregate.judge_stats`` (None: no scores for this run)."""
    if judge is None:
        return SectionResult(Section(prose()("judge.title"), [prose()("judge.none")]))
    metrics, figures, tables = {}, {}, {}
    jm = judge["metrics"]
    metrics.update({f"judge.{k}": val for k, val in jm.items() if isinstance(val, (int, float))})
    metrics["judge.kept_share"] = judge["kept_share"]
    rows_j = [["mode", judge["mode"], ""],
              ["matched pairs scored", jm.get("scored_pairs", 0), ""],
              ["valid-score rate", jm.get("valid_rate", math.nan), PAPER["valid_score_rate"][0]],
              ["kept by the filter", judge["kept"] if judge["kept"] is not None else "n/a", ""],
              ["kept share (of scored pairs)", judge["kept_share"], PAPER["score5_share"][0]],
              ["sanity AUC, matched vs mismatched", jm.get("sanity_auc", math.nan), ""],
              ["control pairs", jm.get("sanity_pairs", 0), ""]]  # fmt: skip
    tables["judge"] = columns(["measure", "value", "paper"], [[str(x) for x in r] for r in rows_j])
    mode_rows = [[m["mode"], m["step_version"], m["pairs"], m["valid_rate"]] for m in judge["modes"]]
    for m in judge["modes"]:
        metrics[f"judge.valid_rate.{m['mode']}"] = m["valid_rate"]
    judge_figs = []
    if judge["histogram"]:
        figures["judge_scores.png"] = bar_chart(judge["histogram"], "score", "matched pairs",
                                                    f"Judge scores ({judge['mode']} mode)")  # fmt: skip
        judge_figs = ["judge_scores.png"]
    section = Section(
        prose()("judge.title"), prose().paragraphs("judge.text", sanity=judge["sanity"]),
        [Table(prose()("judge.table"), ["measure", "this run", "paper"], rows_j),
         Table(prose()("judge.modes_table"), ["mode", "step version", "matched pairs", "valid rate"], mode_rows)],
        judge_figs,
    )  # fmt: skip
    return SectionResult(section, metrics, figures, tables)


def mauve_section(sample: Sample, present: list[str], absent: list[str], cfg: ReportConfig,
                  embed: Callable[[list[str]], Any] = embed_texts) -> SectionResult:  # fmt: skip
    """MAUVE between the kinds' responses (and each kind's two halves) on ``embed``'s features (sentence embeddings
    unless given); ``skipped`` lists the pairs not computed, with the reason."""
    metrics, figures, tables, skipped = {}, {}, {}, []
    mauve_rows, mauve_values, mauve_refs = [], {}, {}
    sizes = {k: min(len(sample.get(k, [])), cfg.mauve_samples) for k in present}
    pairs_run = [(a, b) for a, b in MAUVE_PAIRS if a in present and b in present]
    features: dict[str, Any] = {}
    for a, b in pairs_run:
        enough = sizes[a] // 2 >= cfg.mauve_min_samples if a == b else min(sizes[a], sizes[b]) >= cfg.mauve_min_samples
        for kind in {a, b} if enough else ():
            if kind not in features:  # each kind is embedded once, and only when some pair can use it
                features[kind] = embed([r["response"] or "" for r in sample[kind][: sizes[kind]]])
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
            metrics[f"mauve.{name}"] = result.value
            mauve_values[label] = result.value
            if not math.isnan(paper):
                mauve_refs[label] = paper
        else:
            skipped.append(f"{label}: {result.reason}")
    tables["mauve"] = columns(["pair", "n_p", "n_q", "mauve", "paper", "num_buckets", "status"], mauve_rows)
    mauve_figs = []
    if mauve_values:
        figures["mauve.png"] = grouped_bars(
            {"this run": mauve_values}, "MAUVE", "MAUVE between response sets (dashed: the paper)", refs=mauve_refs
        )
        mauve_figs = ["mauve.png"]
    buckets = prose()("mauve.auto_buckets") if cfg.mauve_num_buckets is None else cfg.mauve_num_buckets
    text = prose()("mauve.text", model=EMBEDDING_MODEL, buckets=buckets, seed=cfg.mauve_seed,
                   samples=cfg.mauve_samples, min_samples=cfg.mauve_min_samples)  # fmt: skip
    section = Section(
        prose()("mauve.title"), [text, _absent_text(absent)],
        [Table(prose()("mauve.table"), ["pair", "n_p", "n_q", "MAUVE", "paper", "buckets", "status"], mauve_rows)],
        mauve_figs,
    )  # fmt: skip
    return SectionResult(section, metrics, figures, tables, skipped)


def samples_section(sample_rows: list[list[Any]], excerpt_chars: int) -> SectionResult:
    """A few pairs side by side: document excerpt, instruction, rewrite, distillation."""
    table = columns(["doc_id", "document", "instruction", "rewrite", "distill"], sample_rows)
    section = Section(
        prose()("samples.title"), [prose()("samples.text", n=len(sample_rows), chars=excerpt_chars)],
        [Table(prose()("samples.table"), ["doc_id", "document excerpt", "instruction", "rewrite", "distillation"],
               sample_rows, text_columns=("document excerpt", "instruction", "rewrite", "distillation"))],
    )  # fmt: skip
    return SectionResult(section, tables={"samples": table})


def evaluation_section(ev: dict[str, Any] | None) -> SectionResult:
    """The newest pairwise evaluation of this run's training set (``aggregate.evaluation_stats``; None: none yet)."""
    if ev is None:
        return SectionResult(Section(prose()("eval.title"), [prose()("eval.none")]))
    s = ev["summary"]
    rows = [["candidate", ev["candidate"]], ["baseline", ev["baseline"]], ["judge", ev["judge"]],
            ["instructions (with a verdict)", f"{s.items} ({s.judged})"],
            ["win rate of the candidate (ties ½)", s.win_rate],
            ["95 % interval (bootstrap)", f"{s.ci_low} – {s.ci_high}"],
            ["wins / ties / losses", " / ".join(str(s.counts.get(k, 0)) for k in ("win", "tie", "loss"))],
            ["judge outputs without a verdict", s.invalid_orders],
            ["order consistency", s.consistent], ["judge picked the first answer", s.first_position]]  # fmt: skip
    title = f"{ev['candidate']} vs {ev['baseline']}"
    figure = win_rate_figure([s.counts.get(k, 0) for k in ("win", "tie", "loss")], s.win_rate, s.ci_low, s.ci_high,
                             title)  # fmt: skip
    metrics = {f"eval.{k}": val for k, val in s.metrics().items()}
    table = Table(prose()("eval.table"), ["measure", "value"], rows)
    text = prose().paragraphs("eval.text", version=ev["version"])
    section = Section(prose()("eval.title"), text, [table], ["evaluate_win_rate.png"])
    return SectionResult(
        section,
        metrics,
        {"evaluate_win_rate.png": figure},
        {"evaluation": columns(["measure", "value"], [[str(x) for x in r] for r in rows])},
    )


def columns(names: list[str], rows: list[list[Any]]) -> dict[str, list[Any]]:
    """Rows → the column-oriented dict ``mlflow.log_table`` takes."""
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def _ours(stats: dict[tuple[str, str], dict[str, float]], kind: str, fld: str) -> float:
    return stats.get((kind, fld), {}).get("mean", math.nan)


def _absent_text(absent: list[str]) -> str:
    return prose()("absent", kinds=", ".join(absent)) if absent else ""


def _placeholder(n: int) -> Any:
    """n rows without features: enough for MAUVE's sample-size check to say why it was not computed."""
    import numpy as np

    return np.zeros((n, 0), dtype=np.float32)
