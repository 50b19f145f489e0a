"""The dataset report's metrics on hand-checked inputs, MAUVE's sanity, and the HTML page (no Spark)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from backforth.report_html import Page, Section, Table, figure_png, render_page
from backforth.udfs.report_metrics import (
    NOT_PROCESSED,
    assemble_funnel,
    frontier_area,
    funnel_rows,
    halves,
    length_histogram,
    length_stats,
    mauve_score,
    trigram_diversity,
    word_trigrams,
)
from backforth.udfs.stats import auc


def test_trigrams_are_counted_per_text_and_deduplicated_across_texts() -> None:
    assert word_trigrams("The cat sat, on the MAT!") == [
        ("the", "cat", "sat"), ("cat", "sat", "on"), ("sat", "on", "the"), ("on", "the", "mat"),
    ]  # fmt: skip
    # text 1 has 4 trigrams, text 2 one (a repeat of text 1's first), text 3 none: trigrams never span two texts
    got = trigram_diversity(["the cat sat on the mat", "The cat sat.", "two words"])
    assert got == {"texts": 3, "trigrams": 5, "unique_trigrams": 4, "distinct_ratio": 0.8}
    assert trigram_diversity(["a b", "c d"])["unique_trigrams"] == 0
    assert math.isnan(trigram_diversity([])["distinct_ratio"])


def test_length_stats_from_a_frequency_table() -> None:
    # lengths 10, 10, 10, 20, 100
    stats = length_stats({10: 3, 20: 1, 100: 1})
    assert stats == {"n": 5, "mean": 30.0, "min": 10.0, "median": 10.0, "p90": 100.0, "max": 100.0}
    # lengths 1..10: nearest-rank median is the 5th value, p90 the 9th
    stats = length_stats(dict.fromkeys(range(1, 11), 1))
    assert (stats["mean"], stats["median"], stats["p90"]) == (5.5, 5.0, 9.0)
    empty = length_stats({})
    assert empty["n"] == 0 and math.isnan(empty["mean"])


def test_length_histogram_bins_cover_every_row() -> None:
    hist = length_histogram({5: 2, 15: 1, 16: 1, 8191: 3, 8192: 4, 10_000: 1})
    assert hist["<16"] == 3 and hist["16-31"] == 1 and hist["4096-8191"] == 3 and hist["≥8192"] == 5
    assert sum(hist.values()) == 12 and list(hist)[0] == "<16" and list(hist)[-1] == "≥8192"


def test_auc_of_matched_vs_mismatched_scores() -> None:
    assert auc([4, 5], [1, 2]) == 1.0
    assert auc([1, 2], [4, 5]) == 0.0
    assert auc([3], [3]) == 0.5  # a tie counts half
    # (pos, neg) pairs: (1,2) 0, (1,0) 1, (3,2) 1, (3,0) 1, (2,2) ½, (2,0) 1
    assert auc([1, 3, 2], [2, 0]) == pytest.approx((0 + 1 + 1 + 1 + 0.5 + 1) / 6)
    assert math.isnan(auc([], [1.0]))


def test_funnel_adds_up_to_the_ingest_count() -> None:
    funnel = assemble_funnel([
        ("records read", 12, {}),
        ("documents ingested", 10, {"malformed_json": 2}),
        ("kept after cleaning", 6, {"too_short": 3}),  # 1 document not cleaned yet
        ("kept after dedup", 5, {"dup_exact": 1}),
        ("instructions accepted", 3, {"describes_text": 1}),  # 1 not backtranslated (a limit)
    ])  # fmt: skip
    assert [s.count for s in funnel] == [12, 10, 6, 5, 3]
    assert funnel[2].drops == {"too_short": 3, NOT_PROCESSED: 1}
    assert funnel[4].drops == {"describes_text": 1, NOT_PROCESSED: 1}
    assert funnel[1].count == funnel[-1].count + sum(s.dropped for s in funnel[2:])  # ingested = final + drops
    assert funnel[0].count == funnel[-1].count + sum(s.dropped for s in funnel[1:])
    rows = funnel_rows(funnel)
    assert rows[0] == {"stage": "records read", "reason": "", "rows": 12, "share_of_first": 1.0}
    assert {"stage": "kept after cleaning", "reason": "too_short", "rows": -3, "share_of_first": 0.25} in rows
    drops = -sum(r["rows"] for r in rows if r["reason"])  # drop rows are negative
    assert drops == 2 + (10 - 3)  # ingest rejects + what left between ingest and the last stage
    with pytest.raises(ValueError, match="different runs"):
        assemble_funnel([("a", 5, {}), ("b", 4, {"x": 2})])


def test_mauve_without_enough_samples_is_nan_with_the_reason() -> None:
    rng = np.random.default_rng(0)
    small = mauve_score(rng.standard_normal((5, 4)), rng.standard_normal((7, 4)), min_samples=20)
    assert math.isnan(small.value) and small.reason.startswith("too few samples (5 vs 7") and small.num_buckets is None
    assert small.settings["min_samples"] == 20 and small.settings["seed"] == 25
    first, second = halves(list(range(7)))
    assert first == [0, 2, 4, 6] and second == [1, 3, 5]


def test_frontier_area_of_equal_histograms_is_1() -> None:
    flat = np.array([[1.0, 0.0]] + [[1.0, 1.0]] * 25 + [[0.0, 1.0]])  # p = q: every inner point is (1, 1)
    assert frontier_area(flat) == pytest.approx(1.0)
    # a square frontier through (0.5, 0.5): x sorted, ties in any order
    curve = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.0, 1.0]])
    assert frontier_area(curve) == pytest.approx(0.5)


def test_html_page_embeds_every_figure_and_needs_no_network() -> None:
    from backforth.plots import bar_chart

    pngs = {
        "funnel.png": figure_png(bar_chart({"a": 3, "b": 1}, "x", "y", "funnel")),
        "mauve.png": figure_png(bar_chart({"p": 0.5}, "x", "y", "mauve")),
    }
    page = Page(
        "report",
        "Data produced by fake <engine>.",
        [
            Section(
                "Funnel",
                ["rows & drops"],
                [Table("t", ["stage", "rows"], [["ingest", 12], ["x", math.nan]])],
                ["funnel.png"],
            ),
            Section("MAUVE", ["", "not computed"], figures=["mauve.png"]),
        ],  # fmt: skip
        {"run": "abc"},
    )
    text = render_page(page, pngs)
    assert text.startswith("<!DOCTYPE html>") and "fake &lt;engine&gt;" in text and "rows &amp; drops" in text
    for name in pngs:
        assert f'id="fig-{name}"' in text
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert sorted(n for n, _ in images) == sorted(pngs) and all(len(data) > 1000 for _, data in images)
    assert not re.search(r"(src|href)=\"(https?:|//)", text) and "<script" not in text and "<link" not in text
    assert '<td class="num">12</td>' in text and '<td class="num">n/a</td>' in text and "<p></p>" not in text
    with pytest.raises(KeyError, match="promised"):
        render_page(page, {"funnel.png": pngs["funnel.png"]})


def test_prose_blocks_join_lines_split_paragraphs_and_fill_values() -> None:
    from backforth.report_html import Prose

    prose = Prose.parse("# a comment\n[a]\nOne $x\nline.\n\nSecond ${x}s.\n[b]\n.\n")
    assert prose.paragraphs("a", x="two") == ["One two line.", "Second twos."] and prose("b") == "."
    with pytest.raises(ValueError, match="not one"):
        prose("a", x="y")
    with pytest.raises(KeyError):
        prose.paragraphs("a")  # a value left out is an error, not a literal $x on the page
    with pytest.raises(KeyError, match="no prose block"):
        prose("c")


def test_funnel_section_on_plain_stages() -> None:
    from backforth.jobs.report.sections import funnel_section

    out = funnel_section([
        ("records read", 10, {}),
        ("documents ingested", 9, {"malformed_json": 1}),
        ("pairs kept by the filter", 4, {"below_filter (threshold 4)": 3}),  # 2 rows not processed
    ])  # fmt: skip
    assert out.metrics == {"funnel.records_read": 10, "funnel.documents_ingested": 9,
                           "funnel.documents_ingested.drop.malformed_json": 1, "funnel.pairs_kept_by_the_filter": 4,
                           "funnel.pairs_kept_by_the_filter.drop.below_filter": 3,
                           "funnel.pairs_kept_by_the_filter.drop.not_processed": 2}  # fmt: skip
    assert out.tables["funnel"]["rows"] == [10, 9, -1, 4, -3, -2] and list(out.figures) == ["funnel.png"]
    assert out.section.title == "Funnel" and out.section.figures == ["funnel.png"] and not out.skipped
    assert out.section.paragraphs[0].startswith("Rows reaching each stage")


def test_lengths_and_diversity_sections_on_plain_data() -> None:
    from backforth.jobs.report.sections import diversity_section, kinds_present, lengths_section

    freq = {("raw", "instruction"): {10: 2, 30: 1}, ("raw", "response"): {100: 3},
            ("rewrite", "instruction"): {12: 1}, ("rewrite", "response"): {40: 1}}  # fmt: skip
    present, absent = kinds_present(freq)
    assert present == ["raw", "rewrite"] and absent == ["distilled"]
    lengths = lengths_section(freq, present, absent, "estimate")
    assert lengths.metrics["pairs.raw"] == 3 and lengths.metrics["tokens.raw.instruction.mean"] == pytest.approx(16.67)
    assert lengths.metrics["tokens.rewrite.response.max"] == 40 and list(lengths.figures) == ["token_lengths.png"]
    assert lengths.tables["token_lengths"]["kind"] == ["raw document", "rewritten"]
    assert "counted in Spark with estimate." in lengths.section.paragraphs[0]
    assert lengths.section.paragraphs[1] == "No rows for: distilled (that step has not run for this selection)."

    sample = {"raw": [{"instruction": "how do bees fly", "response": "bees fly with four wings"}] * 3,
              "rewrite": [{"instruction": "how do bees fly", "response": "wings beat fast"},
                          {"instruction": "why is the sea salty", "response": None}]}  # fmt: skip
    div = diversity_section(sample, present, absent, examples=5)  # the smallest kind has 2: all cut to 2
    assert div.metrics["diversity.n"] == 2 and div.metrics["diversity.raw.response_trigrams"] == 3
    instructions = ["how do bees fly", "why is the sea salty"]
    assert div.metrics["diversity.rewrite.instruction_trigrams"] == trigram_diversity(instructions)["unique_trigrams"]
    assert "the configured N is 5, but the smallest kind has fewer examples" in div.section.paragraphs[0]
    assert "configured N is 2. The distinct ratio" in diversity_section(sample, present, [], 2).section.paragraphs[0]


def test_judge_and_mauve_sections_without_enough_data() -> None:
    from backforth.jobs.report.config import ReportConfig
    from backforth.jobs.report.sections import judge_section, mauve_section

    none = judge_section(None)
    assert none.section.paragraphs == ["No scores for this run."] and not (none.metrics or none.tables)
    judge = {"metrics": {"scored_pairs": 4, "valid_rate": 0.75, "sanity_auc": 1.0, "note": "x"}, "kept": 2,
             "kept_share": 0.5, "mode": "text", "sanity": "AUC 1.0 on 4 control pairs", "histogram": {4: 1, 5: 2},
             "modes": [{"mode": "text", "step_version": "s1", "pairs": 4, "valid_rate": 0.75}]}  # fmt: skip
    out = judge_section(judge)
    assert out.metrics == {"judge.scored_pairs": 4, "judge.valid_rate": 0.75, "judge.sanity_auc": 1.0,
                           "judge.kept_share": 0.5, "judge.valid_rate.text": 0.75}  # fmt: skip
    assert list(out.figures) == ["judge_scores.png"] and out.tables["judge"]["value"][0] == "text"
    assert out.section.paragraphs[0].startswith("AUC 1.0 on 4 control pairs. The AUC compares")

    embedded = []
    sample = {k: [{"response": f"{k} {i}"} for i in range(6)] for k in ("raw", "rewrite")}
    cfg = ReportConfig(mauve_min_samples=10, mauve_num_buckets=3)
    mauve = mauve_section(sample, ["raw", "rewrite"], ["distilled"], cfg, embed=embedded.append)
    assert embedded == [] and not mauve.metrics and not mauve.figures  # 6 per set < 10: nothing embedded
    assert mauve.tables["mauve"]["pair"] == ["rewritten vs rewritten (two halves)", "rewritten vs raw document",
                                             "raw document vs raw document (two halves)"]  # fmt: skip
    assert len(mauve.skipped) == 3 and mauve.skipped[1] == "rewritten vs raw document: " + (
        "too few samples (6 vs 6; at least 10 per set)"
    )
    assert "k-means with 3 buckets, seed 25" in mauve.section.paragraphs[0]
