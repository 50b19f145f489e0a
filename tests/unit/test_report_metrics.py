"""The dataset report's metrics on hand-checked inputs, MAUVE's sanity, and the HTML page (no Spark)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from backforth.report_html import Page, Section, Table, figure_png, render_page
from udfs.report_metrics import (
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
from udfs.stats import auc


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
