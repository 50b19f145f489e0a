"""Text and identity helpers shared by jobs: stable document ids as a Python function and as a Spark column.

The two forms must agree bit for bit (a test checks it): the Python one documents the rule and serves tests and
drivers, the column one runs at scale without a Python UDF.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from backforth.cache import ProcessCache

if TYPE_CHECKING:
    from pyspark.sql import Column

ID_SEP = "\x1f"  # ASCII unit separator: cannot occur in ids or URLs by accident
ID_HEX_CHARS = 32  # 128 bits: collision-free in practice at 10^9 documents


def doc_id(source: str | None, source_id: str | None, url: str | None, text: str) -> str:
    """Stable id: the source's own id when it has one, else the URL and the content.

    >>> doc_id("cc", "abc", None, "x") == doc_id("cc", "abc", "https://other", "changed")
    True
    >>> doc_id(None, None, "https://a", "x") != doc_id(None, None, "https://b", "x")
    True
    """
    if source_id is not None:
        key = ID_SEP.join(["id", source or "", source_id])
    else:
        key = ID_SEP.join(["ct", url or "", text])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def doc_id_column(source: str = "source", source_id: str = "source_id", url: str = "url", text: str = "text") -> Column:
    """The same rule as :func:`doc_id`, as a Spark column expression."""
    from pyspark.sql import functions as F

    sep = F.lit(ID_SEP)
    by_id = F.concat(F.lit("id"), sep, F.coalesce(F.col(source), F.lit("")), sep, F.col(source_id))
    by_content = F.concat(F.lit("ct"), sep, F.coalesce(F.col(url), F.lit("")), sep, F.col(text))
    key = F.when(F.col(source_id).isNotNull(), by_id).otherwise(by_content)
    return F.substring(F.sha2(key, 256), 1, ID_HEX_CHARS)


# ---------------------------------------------------------------------------------------------------------------
# Normalisation, language and repetition: the parts of cleaning that need Python (one vectorised UDF)

CODE_FENCE = r"(?s)```.*?```"  # a fenced code block; Python's re and Java's regex read this pattern alike
TABLE_ROW = r"(?m)^[ \t]*[|│├┌└┬┴┼─╞═].*$"  # a markdown or box-drawn table row (option tables, parameter lists)
ZERO_WIDTH_CHARS = "\u200b\u200c\u200d\u2060\ufeff"
ZERO_WIDTH = dict.fromkeys(map(ord, ZERO_WIDTH_CHARS), None)
LANGID_CHARS = 5_000  # language of the first 5k characters of prose: enough for a stable call, bounded cost
REPETITION_WORDS = 20_000  # repetition stats on the first 20k words; a longer page fails too_long anyway


def normalize_whitespace(text: str) -> str:
    """Unix newlines, no trailing spaces, at most one blank line in a row; indentation kept (code needs it).

    >>> normalize_whitespace("a  \\r\\n\\n\\n\\n  b\\t\\n")
    'a\\n\\n  b'
    """
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n")


def normalize_text(text: str) -> str:
    """Whitespace as above, plus Unicode NFC, no zero-width characters, no-break spaces as spaces.

    >>> normalize_text("cafe\\u0301\\u00a0bar\\u200b")
    'café bar'
    """
    import unicodedata

    if text.isascii():  # NFC, zero-width and no-break spaces concern other characters only
        return normalize_whitespace(text)
    if not unicodedata.is_normalized("NFC", text):  # the check is much cheaper than normalising
        text = unicodedata.normalize("NFC", text)
    if any(ch in text for ch in ZERO_WIDTH_CHARS):  # str.translate walks the text in Python-level steps
        text = text.translate(ZERO_WIDTH)
    return normalize_whitespace(text.replace("\u00a0", " "))


def prose_of(text: str) -> str:
    """The text without fenced code blocks and table rows: language ID and the repetition rules read prose.
    Reference pages repeat themselves in their tables by nature ("Returns the value of …" per row)."""
    import re

    return re.sub(TABLE_ROW, "", re.sub(CODE_FENCE, "\n", text))


def repetition_stats_reference(text: str) -> tuple[float, float, float, float]:
    """Gopher-style repetition, written plainly (the spec :func:`repetition_stats` computes faster): the character
    share of the most frequent 2-, 3- and 4-gram (the first seen among equally frequent ones), and the share of
    characters inside word 5-grams that occur more than once.

    >>> repetition_stats_reference("a b " * 10)[0] > 0.9
    True
    """
    from collections import Counter

    words = text.lower().split()[:REPETITION_WORDS]
    total = sum(len(w) for w in words)
    if total == 0 or len(words) < 5:
        return 0.0, 0.0, 0.0, 0.0
    tops = []
    for n in (2, 3, 4):
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        gram, count = grams.most_common(1)[0]
        tops.append(count * sum(len(w) for w in gram) / total if count > 1 else 0.0)
    fives = [tuple(words[i : i + 5]) for i in range(len(words) - 4)]
    counts = Counter(fives)
    covered = [False] * len(words)
    for i, gram in enumerate(fives):
        if counts[gram] > 1:
            covered[i : i + 5] = [True] * 5
    dup = sum(len(w) for w, c in zip(words, covered, strict=True) if c) / total
    return tops[0], tops[1], tops[2], dup


def repetition_stats(text: str) -> tuple[float, float, float, float]:
    """:func:`repetition_stats_reference`'s values, with numpy: words become integer ids, each n-gram one integer
    (the (n-1)-gram's id × vocabulary + the next word's id), counted by sorting rather than in dictionaries.

    >>> repetition_stats("a b " * 10) == repetition_stats_reference("a b " * 10)
    True
    """
    import numpy as np

    words = text.lower().split()[:REPETITION_WORDS]
    n = len(words)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=n)
    total = int(lengths.sum())
    if total == 0 or n < 5:
        return 0.0, 0.0, 0.0, 0.0
    index: dict[str, int] = {}
    ids = np.fromiter((index.setdefault(w, len(index)) for w in words), dtype=np.int64, count=n)
    vocab = len(index)
    grams, chars = ids, lengths  # 1-grams: their ids and character counts
    tops = []
    for size in (2, 3, 4, 5):
        grams = grams[:-1] * vocab + ids[size - 1 :]  # < n × vocab ≤ 4·10^8: no overflow
        chars = chars[:-1] + lengths[size - 1 :]
        _, grams, counts = np.unique(grams, return_inverse=True, return_counts=True)
        grams = grams.ravel()
        if size < 5:
            top = counts.max()
            first = int(np.flatnonzero(counts[grams] == top)[0])  # the first n-gram seen with the top count
            tops.append(int(top) * int(chars[first]) / total if top > 1 else 0.0)
    repeated = counts[grams] > 1  # per 5-gram position
    covered = np.zeros(n + 1, dtype=np.int64)
    starts = np.flatnonzero(repeated)
    np.add.at(covered, starts, 1)
    np.add.at(covered, starts + 5, -1)
    dup = int(lengths[np.cumsum(covered[:n]) > 0].sum()) / total
    return tops[0], tops[1], tops[2], dup


CLEAN_TEXT_SCHEMA = (
    "text string, text_original string, lang string, lang_score double, top_2gram_share double, "
    "top_3gram_share double, top_4gram_share double, dup_5gram_share double, n_tokens int, token_method string, "
    "pii_email int, pii_phone int, pii_ip_address int, pii_credit_card int, pii_api_key int"
)  # the pii_* counts are backforth.udfs.pii.PII_FIELDS (a test checks)
_LANGID: ProcessCache[Any] = ProcessCache("langid")  # per Python worker


def load_langid() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_of(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) from py3langid's bundled model, on the prose; ('und', 0) for no letters."""
    if not any(ch.isalpha() for ch in text[:LANGID_CHARS]):
        return "und", 0.0
    lang, prob = _LANGID.get_or_create("model", load_langid).classify(text[:LANGID_CHARS])
    return str(lang), float(prob)


def make_clean_text_udf(
    tokenizer: str | None,
    max_token_chars: int,
    max_stat_chars: int | None = None,
    reference: bool = False,
    pii_types: tuple[str, ...] = (),
    keep_original: bool = False,
):
    """A pandas UDF: raw text → struct of normalised text, original (if more than whitespace changed), language,
    repetition stats, token count and PII counts, and with ``max_stat_chars`` the quality statistics too (the fields
    of ``backforth.udfs.quality.STATS_SCHEMA``, measured on the first ``max_stat_chars`` characters): one pass over
    each document. ``pii_types``: the PII redacted (``backforth.udfs.pii``) after normalisation, before everything
    measured; the counts of other types are NULL. Where PII was found the original is kept only with
    ``keep_original`` (NULL otherwise, so no copy of the PII survives). ``reference``: the plain implementations
    (the same values, slower; for tests and the bench). Only small config values are captured; models load on the
    executor."""
    import unicodedata

    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    from backforth.udfs.pii import PII_FIELDS, TYPES, redact_pii
    from backforth.udfs.quality import STATS_FIELDS, STATS_SCHEMA, quality_stats
    from backforth.udfs.tokens import count_tokens

    schema = CLEAN_TEXT_SCHEMA + (f", {STATS_SCHEMA}" if max_stat_chars else "")
    repeated = repetition_stats_reference if reference else repetition_stats

    none = (None,) * len(PII_FIELDS)

    def clean_text(raw: pd.Series) -> pd.DataFrame:
        rows, texts, stats, found = [], [], [], []
        for value in raw:
            if not isinstance(value, str):
                text, original = "", None
            elif reference:  # as clean-v2 did it: every document normalised in full
                text = unicodedata.normalize("NFC", value).translate(ZERO_WIDTH).replace("\xa0", " ")
                text = normalize_whitespace(text)
                original = value if text != normalize_whitespace(value) else None
            else:
                text = normalize_text(value)
                original = None if value.isascii() or text == normalize_whitespace(value) else value
            counts = none
            if pii_types and isinstance(value, str):
                text, by_type = redact_pii(text, pii_types)
                counts = tuple(by_type.get(t) for t in TYPES)
                if any(by_type.values()):
                    original = value if keep_original else None
            found.append(counts)
            prose = prose_of(text)
            lang, score = language_of(prose)
            rows.append((text, original, lang, score, *repeated(prose)))
            texts.append(text)
            if max_stat_chars:
                stats.append(quality_stats(text, max_stat_chars))
        counts, method = count_tokens(texts, tokenizer, max_token_chars, by_pieces=not reference)
        columns = [c.split()[0] for c in CLEAN_TEXT_SCHEMA.split(", ")]
        frame = pd.DataFrame(rows, columns=columns[:8])
        frame["n_tokens"] = pd.Series(counts, dtype="int32")
        frame["token_method"] = method
        frame = pd.concat([frame, pd.DataFrame(found, columns=list(PII_FIELDS), dtype="Int32")], axis=1)
        if max_stat_chars:
            measured = pd.DataFrame(stats, columns=list(STATS_FIELDS))
            for name in ("n_chars", "n_words", "n_lines"):
                measured[name] = measured[name].astype("int32")
            frame = pd.concat([frame, measured], axis=1)
        return frame

    clean_text.__annotations__ = {"raw": pd.Series, "return": pd.DataFrame}  # real types: this module defers hints
    return pandas_udf(schema)(clean_text)
