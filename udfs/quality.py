"""Document quality statistics and rules.

The statistics exist twice, computed alike: :func:`quality_stats`, plain Python over one document, which the clean
job runs inside its one pandas UDF beside normalisation, language ID and token counts (one pass per document); and
:func:`with_quality_stats`, the same statistics as Spark column expressions, kept as the readable reference that a
test compares the Python pass with, value for value (Java's regex semantics included: ``\\s`` is ASCII whitespace,
``trim`` strips spaces only, ``(?i)`` folds ASCII only). The rules (:func:`failed_rules`) stay Spark expressions
over the stored statistics, so thresholds re-run in SQL.

Rules follow the spirit of Gopher (Rae et al., 2021) and C4 (Raffel et al., 2020) but are tuned so documentation
pages survive: line-level rules (short, bullet, navigation, link lines) look only at the *prose* of a page, i.e. the
text with fenced code blocks removed, and the symbol rule counts characters, not Gopher's "words without a letter",
which drops most pages that show commands or code. Each rule has a snake_case name that becomes the drop reason.
"""

from __future__ import annotations

import re
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


STATS_SCHEMA = (
    "n_chars int, n_words int, n_lines int, mean_word_length double, symbol_char_share double, "
    "hash_ellipsis_ratio double, ellipsis_line_share double, bullet_line_share double, short_line_share double, "
    "nav_line_share double, link_line_share double, boilerplate_line_share double, dup_line_share double, "
    "dup_paragraph_share double, binary_char_share double, markup_char_share double, has_lorem_ipsum boolean"
)
STATS_FIELDS = tuple(f.split()[0] for f in STATS_SCHEMA.split(", "))

# Java's regex, as Spark runs it, in Python's: \s and \d are ASCII, (?i) folds ASCII letters only
JAVA_WS = " \t\n\x0b\f\r"
_A = re.ASCII
_WS = re.compile(r"\s+", _A)
_PARA = re.compile(r"\n\s*\n", _A)
_FENCE = re.compile(CODE_FENCE)
# The line rules as one MULTILINE pass over the text: ^ and $ at line ends, and whitespace inside a line spelled
# without the newline (in a single line \s never meets one), so no match crosses a line
_IN_LINE_WS = r"[ \t\x0b\f\r]"
_BULLET = re.compile(BULLET_LINE.replace(r"\s", _IN_LINE_WS), _A | re.MULTILINE)
# LINK_LINE and BOILERPLATE on ASCII-lowered bytes: a URL (one non-space after the scheme is enough to find the line),
# a "see also:" right after a newline, and the boilerplate phrases (spaces in them, never newlines)
_URL_B = re.compile(rb"(?:https?://|www\.)\S")
_LEAD_B = re.compile(rb"\n[ \t\x0b\f\r]*(?:related|see also|more|read more)[ \t\x0b\f\r]*:")
_BOILER_B = re.compile(BOILERPLATE.removeprefix("(?i)").encode())
_NEWLINE_B = re.compile(b"\n")
# Java's $ outside MULTILINE also stops before a line's last terminator (\r, U+0085, U+2028, U+2029)
_ELLIPSIS_END = re.compile(r"(\.\.\.|…)" + _IN_LINE_WS + r"*[\r\u0085\u2028\u2029]?$", _A | re.MULTILINE)
_NEWLINE = re.compile("\n")
_TERMINATORS = "\r\u0085\u2028\u2029"
_BINARY = re.compile(r"[\x00-\x08\x0E-\x1F\uFFFD]")
_MARKUP = re.compile(r"<[^>\n]{1,300}>")
_LOREM = re.compile(r"lorem ipsum", re.IGNORECASE | _A)
_OTHER_SPACE = re.compile(r"[\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_NAV_SEPARATORS = re.compile(r"[|·»›]")
_ASCII_ALNUM_WS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + JAVA_WS.encode()


def _words(text: str) -> list[str]:
    """The non-empty pieces of ``text`` between runs of ASCII whitespace (``str.split()`` where that agrees)."""
    if _OTHER_SPACE.search(text) is None:
        return text.split()
    return [w for w in _WS.split(text) if w]


def _nonblank(parts: list[str]) -> list[str]:
    return [p for p in parts if p.strip(" ")]


def _symbols(text: str) -> int:
    """Characters that are neither letters, numbers nor ASCII whitespace (Java's ``[\\p{L}\\p{N}\\s]`` removed).
    ASCII letters, digits and spaces go in one bytes pass; only the non-ASCII characters left are looked up."""
    import unicodedata

    rest = text.encode("utf-8").translate(None, _ASCII_ALNUM_WS).decode("utf-8")
    if rest.isascii():
        return len(rest)
    wide = _NON_ASCII.findall(rest)
    return len(rest) - sum(1 for c in wide if c.isalpha() or unicodedata.category(c)[0] == "N")


def _lines_with(found: list[int], text: str | bytes) -> int:
    """How many distinct lines of ``text`` the offsets ``found`` lie in (newlines are looked up only for two or
    more)."""
    import bisect

    if len(found) < 2:
        return len(found)
    newlines = [m.start() for m in (_NEWLINE_B if isinstance(text, bytes) else _NEWLINE).finditer(text)]
    return len({bisect.bisect_left(newlines, at) for at in found})


def _offsets(pattern: re.Pattern, text: str | bytes) -> list[int]:
    return [m.start() for m in pattern.finditer(text)]


def _link_lines(prose: str) -> int:
    """Lines :data:`LINK_LINE` finds something in, over the prose's bytes lowered once ((?i) folds ASCII only, as
    ``bytes.lower`` does): a URL anywhere, or a "see also:" at a line's start (found from the newline before it)."""
    low = prose.encode("utf-8").lower()
    found = _offsets(_URL_B, low) + _offsets(_LEAD_B, b"\n" + low)  # a match at the newline: its line starts there
    return _lines_with(found, low)


def _boilerplate_lines(t: str) -> int:
    low = t.encode("utf-8").lower()
    found = _offsets(_BOILER_B, low)
    return _lines_with(found, low)


def _short(line: str) -> bool:
    """Java's ``size(split(trim(line), "\\s+")) <= 3``: an empty piece counts at either end."""
    core = line.strip(" ")
    if _OTHER_SPACE.search(core) is not None:
        return len(_WS.split(core)) <= 3
    pieces = len(core.split()) + (core[:1] in JAVA_WS and core != "") + (core[-1:] in JAVA_WS and core != "")
    return (pieces or 1) <= 3


def nav_line(line: str) -> bool:
    """Whether :data:`NAV_LINE` matches ``line`` (one line: no newline in it) as Java decides, without the pattern,
    whose nested repetitions backtrack for a long time on table rows in Python's engine. Every separator ends a
    group, so the line is its pieces between separators: each piece before the last needs at least one character
    and at most 30 besides the whitespace at its ends, the last at most 30 such, and nothing may be a slash. Java's
    ``$`` may also stop before a last line terminator."""
    if line and line[-1] in _TERMINATORS and nav_line(line[:-1]):
        return True
    if "/" in line:
        return False
    pieces = _NAV_SEPARATORS.split(line)
    if len(pieces) < 3 or len(pieces[-1].strip(JAVA_WS)) > 30:
        return False
    return all(piece and len(piece.strip(JAVA_WS)) <= 30 for piece in pieces[:-1])


def quality_stats(text: str | None, max_chars: int) -> tuple | None:
    """The :data:`STATS_SCHEMA` values of one document, as :func:`with_quality_stats` computes them in Spark."""
    if text is None:
        return None
    t = text[:max_chars]
    prose = _FENCE.sub("\n", t)
    words = _words(t)
    lines = _nonblank(t.split("\n"))
    plines = _nonblank(prose.split("\n"))
    n_pwords = len(_words(prose))
    paras = _nonblank(_PARA.split(t))
    long = [line.strip(" ") for line in lines if len(line.strip(" ")) >= 10]
    n_words, n_lines, n_plines = len(words), len(lines), len(plines)
    spaces = sum(t.count(c) for c in JAVA_WS)
    word_chars = sum(map(len, words))
    non_space = len(t) - spaces

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else 0.0

    return (
        len(text),
        n_words,
        n_lines,
        ratio(word_chars, n_words),
        ratio(_symbols(t), non_space),
        ratio(prose.count("#") + prose.count("...") + prose.count("…"), n_pwords),
        ratio(_lines_with(_offsets(_ELLIPSIS_END, t), t), n_lines),
        ratio(_lines_with(_offsets(_BULLET, prose), prose), n_plines),
        ratio(sum(1 for line in plines if _short(line)), n_plines),
        ratio(sum(1 for line in plines if nav_line(line)), n_plines),
        ratio(_link_lines(prose), n_plines),
        ratio(_boilerplate_lines(t), n_lines),
        ratio(len(long) - len(set(long)), len(long)),
        ratio(len(paras) - len({p.strip(" ") for p in paras}), len(paras)),
        ratio(len(_BINARY.findall(t)), len(t)),
        ratio(sum(len(m) for m in _MARKUP.findall(t)), non_space),
        _LOREM.search(t) is not None,
    )


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
    # a lambda, not F.trim itself: transform passes (element, index) to a function of two parameters, and
    # F.trim(x, index) strips the index's digits instead of spaces (clean-v2 compared lines untrimmed that way)
    trimmed = F.transform(col, lambda x: F.trim(x))
    return share(F.size(col) - F.size(F.array_distinct(trimmed)), F.size(col))


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
