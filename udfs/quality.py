"""Document quality statistics and rules, as Spark column expressions (JVM-side; no Python per row).

Rules follow the spirit of Gopher (Rae et al., 2021) and C4 (Raffel et al., 2020) but are tuned so documentation
pages survive: line-level rules (short, bullet, navigation, link lines) look only at the *prose* of a page, i.e. the
text with fenced code blocks removed, and the symbol rule counts characters, not Gopher's "words without a letter",
which drops most pages that show commands or code. Each rule has a snake_case name that becomes the drop reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backforth.udfs.text import CODE_FENCE

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

BOILERPLATE = (
    r"(?i)(cookie|javascript|lorem ipsum|all rights reserved|privacy policy|terms of (use|service)|"
    r"accept all|sign in|log ?in|subscribe to|newsletter|skip to (main )?content)"
)
NAV_LINE = r"^\s*([^|·»›/\n]{1,30}\s*[|·»›]\s*){2,}[^|·»›/\n]{0,30}\s*$"  # "Home | About | Blog"
LINK_LINE = r"(?i)(https?://|www\.)\S+|^\s*(related|see also|more|read more)\s*:"
BULLET_LINE = r"^\s*([-*•‣◦·▪]|\d+[.)])\s+"


@dataclass
class QualityThresholds:
    """Drop thresholds; each comment names the rule (= drop reason). Shares are of non-empty lines. The line and
    repetition thresholds come from measured distributions on real documentation pages and injected junk
    (bench/realdocs.py): each sits above the 99th percentile of good pages where the junk it is for lies far above."""

    min_words: int = 50  # too_short
    max_words: int = 100_000  # too_long
    max_chars: int = 1_000_000  # too_long; statistics read at most this many characters, so a 10 MB page is cheap
    min_mean_word_length: float = 3.0  # mean_word_length
    max_mean_word_length: float = 12.0  # mean_word_length (identifiers in docs run long; Gopher uses 10)
    max_symbol_char_share: float = 0.40  # symbol_soup: punctuation/symbol chars over all non-space chars
    max_hash_ellipsis_ratio: float = 0.30  # hash_ellipsis: '#' and '...' per word, prose only (Gopher: 0.10)
    max_ellipsis_line_share: float = 0.30  # ellipsis_lines
    max_bullet_line_share: float = 0.90  # bullet_lines (prose only)
    max_short_line_share: float = 0.70  # short_lines: prose lines of <= 3 words (menus; also tables of contents)
    max_nav_line_share: float = 0.30  # navigation: "A | B | C" lines
    max_link_line_share: float = 0.50  # link_list
    max_boilerplate_line_share: float = 0.30  # boilerplate: cookie/javascript/login/... lines
    max_dup_line_share: float = 0.50  # dup_lines: repeated lines (>= 10 chars) over such lines
    max_dup_paragraph_share: float = 0.50  # dup_paragraphs
    max_binary_char_share: float = 0.01  # binary_junk: control and replacement characters
    max_markup_char_share: float = 0.50  # markup: characters inside <...> tags


def share(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator, 0 when the denominator is 0."""
    from pyspark.sql import functions as F

    return F.when(denominator > 0, numerator / denominator).otherwise(F.lit(0.0))


def count_matching(lines: Column, pattern: str) -> Column:
    """How many elements of ``lines`` match ``pattern``."""
    from pyspark.sql import functions as F

    return F.size(F.filter(lines, lambda line: line.rlike(pattern)))


PARTS = ("_t", "_prose", "_words", "_lines", "_plines", "_pwords", "_long", "_paras")


def with_quality_stats(df: DataFrame, text: str, max_chars: int) -> DataFrame:
    """``df`` plus a ``stats`` struct of per-document statistics the rules read; stored as is, so thresholds can be
    re-tried in SQL. Everything but ``n_chars`` is measured on the first ``max_chars`` characters. The word and line
    arrays are columns of their own first, so Spark splits each text once rather than once per statistic."""
    from pyspark.sql import functions as F

    nonblank = lambda xs: F.filter(xs, lambda x: F.trim(x) != "")  # noqa: E731
    parts = df.withColumn("_t", F.substring(text, 1, max_chars))
    parts = parts.withColumn("_prose", F.regexp_replace("_t", CODE_FENCE, "\n"))
    parts = parts.select(
        "*",
        F.filter(F.split("_t", r"\s+"), lambda w: w != "").alias("_words"),
        nonblank(F.split("_t", "\n")).alias("_lines"),
        nonblank(F.split("_prose", "\n")).alias("_plines"),
        F.filter(F.split("_prose", r"\s+"), lambda w: w != "").alias("_pwords"),
        nonblank(F.split("_t", r"\n\s*\n")).alias("_paras"),
    ).withColumn("_long", F.filter("_lines", lambda line: F.length(F.trim(line)) >= 10))
    t, prose, words, lines, plines = (F.col(c) for c in ("_t", "_prose", "_words", "_lines", "_plines"))
    n_words, non_space = F.size(words), F.length(F.regexp_replace(t, r"\s", ""))
    stats = F.struct(
        F.length(text).alias("n_chars"),
        n_words.alias("n_words"),
        F.size(lines).alias("n_lines"),
        share(F.aggregate(words, F.lit(0), lambda acc, w: acc + F.length(w)), n_words).alias("mean_word_length"),
        share(F.length(F.regexp_replace(t, r"[\p{L}\p{N}\s]", "")), non_space).alias("symbol_char_share"),
        share(F.size(F.split(prose, "#")) - 1 + F.size(F.split(prose, r"\.\.\.|…")) - 1, F.size("_pwords")).alias(
            "hash_ellipsis_ratio"
        ),
        share(count_matching(lines, r"(\.\.\.|…)\s*$"), F.size(lines)).alias("ellipsis_line_share"),
        share(count_matching(plines, BULLET_LINE), F.size(plines)).alias("bullet_line_share"),
        share(F.size(F.filter(plines, lambda line: F.size(F.split(F.trim(line), r"\s+")) <= 3)), F.size(plines)).alias(
            "short_line_share"
        ),
        share(count_matching(plines, NAV_LINE), F.size(plines)).alias("nav_line_share"),
        share(count_matching(plines, LINK_LINE), F.size(plines)).alias("link_line_share"),
        share(count_matching(lines, BOILERPLATE), F.size(lines)).alias("boilerplate_line_share"),
        duplicate_share("_long").alias("dup_line_share"),
        duplicate_share("_paras").alias("dup_paragraph_share"),
        share(F.length(F.regexp_replace(t, r"[^\x00-\x08\x0E-\x1F\uFFFD]", "")), F.length(t)).alias(
            "binary_char_share"
        ),
        share(F.length(F.concat_ws("", F.regexp_extract_all(t, F.lit(r"(<[^>\n]{1,300}>)"), 1))), non_space).alias(
            "markup_char_share"
        ),
        t.rlike(r"(?i)lorem ipsum").alias("has_lorem_ipsum"),
    )
    return parts.withColumn("stats", stats).drop(*PARTS)


def duplicate_share(items: str) -> Column:
    """Share of the elements of array column ``items`` that repeat an earlier one (compared trimmed)."""
    from pyspark.sql import functions as F

    col = F.col(items)
    return share(F.size(col) - F.size(F.array_distinct(F.transform(col, F.trim))), F.size(col))


def failed_rules(stats: Column, t: QualityThresholds) -> Column:
    """Names of the rules ``stats`` fails, in a fixed order (the first is the drop reason)."""
    from pyspark.sql import functions as F

    checks = [
        ("binary_junk", stats.binary_char_share > t.max_binary_char_share),
        ("markup", stats.markup_char_share > t.max_markup_char_share),
        ("too_short", stats.n_words < t.min_words),
        ("too_long", (stats.n_words > t.max_words) | (stats.n_chars > t.max_chars)),
        ("lorem_ipsum", stats.has_lorem_ipsum),
        # structural rules first: they explain a drop better than the generic statistics after them
        ("navigation", stats.nav_line_share > t.max_nav_line_share),
        ("link_list", stats.link_line_share > t.max_link_line_share),
        ("boilerplate", stats.boilerplate_line_share > t.max_boilerplate_line_share),
        ("dup_lines", stats.dup_line_share > t.max_dup_line_share),
        ("dup_paragraphs", stats.dup_paragraph_share > t.max_dup_paragraph_share),
        ("bullet_lines", stats.bullet_line_share > t.max_bullet_line_share),
        ("short_lines", stats.short_line_share > t.max_short_line_share),
        ("symbol_soup", stats.symbol_char_share > t.max_symbol_char_share),
        ("mean_word_length", (stats.mean_word_length < t.min_mean_word_length)
         | (stats.mean_word_length > t.max_mean_word_length)),
        ("hash_ellipsis", stats.hash_ellipsis_ratio > t.max_hash_ellipsis_ratio),
        ("ellipsis_lines", stats.ellipsis_line_share > t.max_ellipsis_line_share),
    ]  # fmt: skip
    return F.filter(F.array(*[F.when(cond, F.lit(name)) for name, cond in checks]), lambda x: x.isNotNull())
