"""Benchmark decontamination: find training pairs that share a long word n-gram with a benchmark's prompts.

Text is compared as lower-case words (runs of letters and digits; punctuation, case and spacing do not matter). A pair
is contaminated when its instruction or its response contains any ``n`` consecutive words (13 by default, the usual
choice for this check) that also occur consecutively in a prompt of one of the benchmark files. The match is a Spark
join on 64-bit hashes of the n-grams: both sides explode into (hash) rows and the cluster joins them, so neither the
benchmarks nor the pairs pass through the driver. Each contaminated pair gets the first match (by benchmark, then
field) with the n-gram's own words, so a person can see why it was dropped. Only Spark SQL functions: it runs the same
over Spark Connect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from backforth.config import ConfigError, at_least

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

WORD_SPLIT = r"[^\p{L}\p{N}]+"  # Java regex: anything but letters and digits separates words


@dataclass
class Benchmark:
    """One benchmark file (or folder/glob of files): its prompts are what a training pair must not contain."""

    path: str
    format: Literal["jsonl", "parquet"] = "jsonl"
    field: str = "prompt"  # the column holding the prompt text
    name: str | None = None  # recorded with each match; default: the file name without its extension


@dataclass
class DecontaminationConfig:
    benchmarks: list[Benchmark] = field(default_factory=list)  # none: no check (nothing is dropped)
    ngram: int = at_least(1, 13)  # words in a shared run that count as contamination

    def named(self) -> list[tuple[str, Benchmark]]:
        """(name, benchmark) pairs; two benchmarks with one name is a config error."""
        out = []
        for b in self.benchmarks:
            stem = b.path.rstrip("/").rsplit("/", 1)[-1]
            out.append((b.name or stem.split(".", 1)[0] or stem, b))
        names = [n for n, _ in out]
        if len(set(names)) != len(names):
            raise ConfigError(f"decontamination.benchmarks: two benchmarks share a name ({names}); set `name`")
        return out


def words(text: Column) -> Column:
    """The lower-case words of ``text`` as an array (empty for NULL)."""
    from pyspark.sql import functions as F

    split = F.split(F.lower(F.coalesce(text, F.lit(""))), WORD_SPLIT)
    return F.filter(split, lambda w: w != "")


def ngrams(text: Column, n: int) -> Column:
    """array<struct<hash: bigint, ngram: string>>: every run of ``n`` consecutive words of ``text``, with its hash.
    Texts shorter than ``n`` words have none."""
    from pyspark.sql import functions as F

    w = words(text)
    starts = F.sequence(F.lit(0), F.size(w) - n)  # only evaluated where size >= n (a shorter one would count down)
    grams = F.transform(starts, lambda i: F.array_join(F.slice(w, i + 1, n), " "))
    with_hash = F.transform(grams, lambda g: F.struct(F.xxhash64(g).alias("hash"), g.alias("ngram")))
    empty = F.array().cast("array<struct<hash:bigint,ngram:string>>")
    return F.when(F.size(w) >= n, with_hash).otherwise(empty)


def read_benchmarks(spark: SparkSession, cfg: DecontaminationConfig) -> DataFrame | None:
    """(benchmark, prompt) rows of every configured benchmark; None when there are none. A missing file or field is
    a clear error naming the benchmark."""
    from pyspark.sql import functions as F

    parts = []
    for name, b in cfg.named():
        reader = spark.read.json if b.format == "jsonl" else spark.read.parquet
        try:
            df = reader(b.path)
        except Exception as exc:  # AnalysisException: path does not exist, unreadable format
            raise ConfigError(f"decontamination benchmark {name!r}: cannot read {b.path} ({b.format}): "
                              f"{str(exc).splitlines()[0]}") from exc  # fmt: skip
        if b.field not in df.columns:
            raise ConfigError(
                f"decontamination benchmark {name!r}: {b.path} has no field {b.field!r} (fields: {sorted(df.columns)})"
            )
        parts.append(df.select(F.lit(name).alias("benchmark"), F.col(b.field).cast("string").alias("prompt")))
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def benchmark_ngrams(prompts: DataFrame, n: int) -> DataFrame:
    """(hash, benchmark, ngram): the distinct n-grams of the benchmark prompts."""
    from pyspark.sql import functions as F

    exploded = prompts.select("benchmark", F.explode(ngrams(F.col("prompt"), n)).alias("g"))
    return exploded.select(F.col("g.hash").alias("hash"), "benchmark", F.col("g.ngram").alias("ngram")).dropDuplicates(
        ["hash", "benchmark"]
    )


def find_contaminated(pairs: DataFrame, prompts: DataFrame, n: int, key: str = "pair_id") -> DataFrame:
    """(``key``, contamination) for each pair of ``pairs`` (``key``, instruction, response) that shares an
    ``n``-word run with a prompt of ``prompts`` (benchmark, prompt): contamination is struct(benchmark, field, ngram),
    the first match by benchmark name, then field (instruction before response), then n-gram."""
    from pyspark.sql import functions as F

    sides = [
        pairs.select(key, F.lit(field).alias("field"), F.explode(ngrams(F.col(field), n)).alias("g"))
        for field in ("instruction", "response")
    ]
    grams = sides[0].unionByName(sides[1]).select(key, "field", F.col("g.hash").alias("hash"))
    hits = grams.join(benchmark_ngrams(prompts, n), "hash")
    first = F.min(F.struct("benchmark", "field", "ngram"))  # struct order: benchmark, then field, then text
    return hits.groupBy(key).agg(first.alias("contamination"))


def content_hash(column: Column) -> Column:
    """An order-free aggregate hash of ``column``: the sum of its values' xxhash64 modulo a prime (no overflow under
    ANSI SQL). What export versions record about benchmark prompts and seed pairs."""
    from pyspark.sql import functions as F

    return F.sum(F.pmod(F.xxhash64(column), F.lit(2**31 - 1)))


def describe(prompts: DataFrame) -> dict[str, dict[str, int]]:
    """``{benchmark: {"prompts": n, "content": hash}}``: what an export version's fingerprint records about the
    benchmarks, so that changed benchmark files give a new version (one Spark job; no file read on the driver)."""
    from pyspark.sql import functions as F

    agg = prompts.groupBy("benchmark").agg(
        F.count("*").alias("n"),
        content_hash(F.coalesce("prompt", F.lit(""))).cast("string").alias("h"),
    )
    return {r["benchmark"]: {"prompts": int(r["n"]), "content": r["h"]} for r in agg.collect()}


def scan(spark: SparkSession, rows: DataFrame, cfg: DecontaminationConfig, prompts: DataFrame | None = None,
         key: str = "pair_id") -> DataFrame:  # fmt: skip
    """``rows`` with a ``contamination`` column (NULL where clean). ``prompts``: the benchmarks already read (else
    they are read here); with no benchmark configured the column is NULL everywhere."""
    from pyspark.sql import functions as F

    if prompts is None:
        prompts = read_benchmarks(spark, cfg)
    if prompts is None:
        return rows.withColumn("contamination", F.lit(None).cast("struct<benchmark:string,field:string,ngram:string>"))
    found = find_contaminated(rows.select(key, "instruction", "response"), prompts, cfg.ngram, key)
    return rows.join(found, key, "left")
