"""The clean job's fast path (one Python pass per document) against its reference (quality statistics as Spark
expressions, i.e. Java's regex; repetition with Counters; tokens by encoding whole documents): every column of
every row equal, on the bundled corpus and on documents assembled at random from the pieces where Python's and
Java's text handling differ (whitespace classes, line terminators, case folding, separators, non-ASCII letters and
numbers, code fences, tables)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from backforth.jobs.clean import CleanConfig, clean_documents
from backforth.udfs.quality import NAV_LINE, nav_line

pytestmark = pytest.mark.spark
CORPUS = yaml.safe_load((Path(__file__).resolve().parents[2] / "data/sample/source/corpus.yaml").read_text())
PIECES = [
    "word", "Words here", " ", "  ", "\t", "\x0b", "\x0c", "\r", "\u00a0", "\u2003", "\u3000", "\x1c", "\u0085",
    "\u2028", "\u2029", "\n", "\n\n", "\n  \n", "...", "…", "- ", "* ", "• ", "12. ", "3) ", "Home | About | Blog",
    " · ", " » ", "›", "/", "|", "http://example.org/x", "WWW.Example.com", "See also:", "  related :", "More:",
    "Cookie", "cooKie", "SIGN IN", "ſign in", "login", "log in", "Terms of Service", "lorem IPSUM", "#", "##",
    "<b>", "<a href='x'>", "</div>", ">", "```\ncode ... # x\n```", "| a | b |", "|---|---|", "٣", "²", "½", "Ⅷ",
    "😀", "𝔘", "é", "ß", "İ", "\x00", "\x01", "\ufffd", "x" * 35, "y" * 12, "Returns the value of the option.",
]  # fmt: skip


def random_docs(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        parts = [rng.choice(PIECES) for _ in range(rng.randint(1, 120))]
        docs.append("".join(p + (rng.choice([" ", "\n", ""])) for p in parts))
    return docs


def test_fast_clean_equals_the_reference_on_every_column(spark) -> None:
    texts = [d["text"] for d in CORPUS] + random_docs(400) + ["", "   ", None, "word " * 3000]
    docs = spark.createDataFrame([(str(i), t) for i, t in enumerate(texts)], "doc_id string, text string")
    docs = docs.repartition(2)
    rows = {}
    for impl in ("reference", "fast"):
        out = clean_documents(docs, CleanConfig(), impl=impl)
        rows[impl] = {r["doc_id"]: r.asDict(recursive=True) for r in out.drop("cleaned_at").collect()}
    assert len(rows["fast"]) == len(texts)
    differ = [(k, texts[int(k)], {f: (v, rows["fast"][k][f]) for f, v in ref.items() if rows["fast"][k][f] != v})
              for k, ref in rows["reference"].items() if rows["fast"][k] != ref]  # fmt: skip
    assert not differ, f"{len(differ)} documents differ, e.g. {differ[:2]}"
    kept = sum(1 for r in rows["fast"].values() if r["drop_reason"] is None)
    assert 0 < kept < len(texts)  # both kinds present: the comparison covered kept and dropped documents


def test_navigation_lines_are_decided_as_java_decides_them(spark) -> None:
    """nav_line replaces NAV_LINE's backtracking pattern: the same answer as Spark's rlike on every line."""
    from pyspark.sql import functions as F

    rng = random.Random(2)
    parts = ["Home", " ", "|", "·", "»", "›", "/", "a" * 29, "b" * 31, "\t", "\u2028", "\r", "x y", "", "  ", "\u0085"]
    lines = ["".join(rng.choice(parts) for _ in range(rng.randint(1, 9))) for _ in range(5000)]
    lines += ["Home | About | Blog", "| a | b |", "A · B · C · D", "one/two | three | four"]
    df = spark.createDataFrame(list(enumerate(lines)), "i int, line string")
    java = {r["i"]: r["m"] for r in df.select("i", F.col("line").rlike(NAV_LINE).alias("m")).collect()}
    python = {i: nav_line(line) for i, line in enumerate(lines)}
    assert python == java
    assert 100 < sum(python.values()) < len(lines) - 100  # both answers well represented
