"""Clean docs_raw into docs_clean: normalise text, redact PII, identify language, compute quality stats, mark drops.

Input: ``docs_raw`` (key ``doc_id``). Output: ``docs_clean`` (key ``doc_id``), one row per input document, dropped
ones included: ``drop_reason`` is NULL for kept documents, else the first failed rule; ``failed_rules`` lists all of
them and ``stats`` holds every measured value, so thresholds can be audited and re-tried in SQL. The rule set's
fingerprint (``clean_version``) is stored per row: a run with other rules re-cleans everything, a run with the same
rules only cleans new documents. PII (``pii`` section; ``backforth.udfs.pii``) is replaced by typed placeholders
before anything is measured, counted per document in ``stats.pii_<type>``; it is not a drop rule.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from backforth import crash
from backforth.errors import MissingInputError
from backforth.hashing import fingerprint
from backforth.keep import keep, release
from backforth.models import resolve_tokenizer
from backforth.plots import bar_chart
from backforth.registry import JobResult, job
from backforth.tables import ensure_table, insert_new, pending_rows, qualify, quote, table_exists
from backforth.udfs.pii import PII_FIELDS, PiiConfig
from backforth.udfs.quality import STATS_FIELDS, QualityThresholds, failed_rules, with_quality_stats
from backforth.udfs.text import CLEAN_TEXT_SCHEMA, make_clean_text_udf
from backforth.udfs.tokens import tokenizer_file

log = logging.getLogger("backforth.clean")


@dataclass
class CleanConfig:
    input_table: str = "docs_raw"
    output_table: str = "docs_clean"
    languages: list[str] = field(default_factory=lambda: ["en"])  # kept languages (ISO 639-1)
    min_lang_score: float = 0.50  # lang_low_confidence below this probability
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    # Repetition of the prose (code blocks and table rows left out). Gopher's web-prose values (0.20/0.18/0.16 and
    # 0.15) dropped 20 % of real documentation pages by dup_ngrams alone; these sit above the 99th percentile of
    # good pages and below every repetitive junk kind (bench/realdocs.py, bench/README.md).
    max_top_ngram_shares: list[float] = field(default_factory=lambda: [0.25, 0.22, 0.20])  # ngram_repetition
    max_dup_5gram_share: float = 0.50  # dup_ngrams
    tokenizer: str | None = (
        "embedded"  # the generation model's tokenizer.json or folder; embedded = SmolLM2; null = chars/4
    )
    context_tokens: int = 8192  # the generation model's context (SmolLM2-135M: 8192; Llama-2: 4096)
    reserved_tokens: int = 1536  # room for the prompt template, the instruction and the answer
    pii: PiiConfig = field(default_factory=PiiConfig)  # PII redaction (udfs/pii.py)
    version: str = "clean-v4"  # bump when the rules' code changes; thresholds are fingerprinted automatically
    # v2: repetition and language measured on prose without table rows; thresholds set on real documentation
    # v3: statistics in one Python pass per document; dup_lines compares lines trimmed, as documented (v2 did not)
    # v4: PII redacted after normalisation (stats and tokens describe the redacted text); stats.pii_* counts

    @property
    def max_doc_tokens(self) -> int:
        return self.context_tokens - self.reserved_tokens

    def fingerprint(self) -> str:
        """``clean-v4-<hash of every setting that changes which documents are kept or what text they hold>``."""
        keys = asdict(self)
        for name in ("input_table", "output_table", "version"):
            keys.pop(name)
        return f"{self.version}-{fingerprint(keys, n=8)}"


def clean_documents(docs: Any, cfg: CleanConfig, impl: str = "fast") -> Any:
    """Pure transformation: documents (doc_id, text, ...) → docs_clean rows. ``impl="reference"`` computes the same
    values the plain way (quality statistics as Spark column expressions, repetition with Counters, tokens by
    encoding each document): ~3× slower (bench/clean_speed.py), kept as the oracle the fast path is tested
    against, value for value."""
    from pyspark.sql import functions as F

    fast = {"fast": True, "reference": False}[impl]
    udf = make_clean_text_udf(
        resolve_tokenizer(cfg.tokenizer),
        max_token_chars=cfg.max_doc_tokens * 20,
        max_stat_chars=cfg.thresholds.max_chars if fast else None,
        reference=not fast,
        pii_types=tuple(cfg.pii.types) if cfg.pii.redact else (),
        keep_original=cfg.pii.keep_original,
    )
    cleaned = docs.select("doc_id", F.col("text").alias("_raw")).withColumn("_c", udf("_raw"))
    if fast:
        cleaned = cleaned.select(
            "doc_id", "_raw", *[F.col(f"_c.{c.split()[0]}") for c in CLEAN_TEXT_SCHEMA.split(", ")],
            F.struct(*[F.col(f"_c.{name}") for name in STATS_FIELDS]).alias("stats"),
        )  # fmt: skip
    else:
        cleaned = with_quality_stats(cleaned.select("doc_id", "_raw", "_c.*"), "text", cfg.thresholds.max_chars)
    top = cfg.max_top_ngram_shares
    extra = [
        ("missing_text", F.col("_raw").isNull()),
        ("empty_text", F.col("_raw").isNotNull() & (F.trim("text") == "")),
    ]
    late = [
        ("lang_mismatch", ~F.col("lang").isin(cfg.languages)),
        ("lang_low_confidence", F.col("lang").isin(cfg.languages) & (F.col("lang_score") < cfg.min_lang_score)),
        ("ngram_repetition", (F.col("top_2gram_share") > top[0]) | (F.col("top_3gram_share") > top[1])
         | (F.col("top_4gram_share") > top[2])),
        ("dup_ngrams", F.col("dup_5gram_share") > cfg.max_dup_5gram_share),
        ("too_many_tokens", F.col("n_tokens") > cfg.max_doc_tokens),
    ]  # fmt: skip

    def flags(pairs: list) -> Any:
        return F.filter(F.array(*[F.when(c, F.lit(n)) for n, c in pairs]), lambda x: x.isNotNull())

    rules = F.concat(flags(extra), failed_rules(F.col("stats"), cfg.thresholds), flags(late))
    rules = F.when(F.col("_raw").isNull() | (F.trim("text") == ""), flags(extra)).otherwise(rules)
    return cleaned.select(
        "doc_id",
        "text",
        "text_original",
        "lang",
        "lang_score",
        F.col("stats.n_words").alias("n_words"),
        "n_tokens",
        "token_method",
        F.struct(
            "stats.*", "top_2gram_share", "top_3gram_share", "top_4gram_share", "dup_5gram_share", *PII_FIELDS
        ).alias("stats"),
        rules.alias("failed_rules"),
        F.try_element_at(rules, F.lit(1)).alias("drop_reason"),
        F.lit(cfg.fingerprint()).alias("clean_version"),
        F.current_timestamp().alias("cleaned_at"),
    )


def pii_metrics(rows: Any, types: list[str]) -> dict[str, float]:
    """``pii.<type>``: placeholders put in, per redacted type; ``docs_with_pii``: documents with at least one."""
    from pyspark.sql import functions as F

    fields = [f"pii_{t}" for t in types]
    found = F.greatest(*[F.coalesce(F.col(f"stats.{f}"), F.lit(0)) for f in fields], F.lit(0)) > 0
    totals = rows.agg(
        *[F.coalesce(F.sum(f"stats.{f}"), F.lit(0)).alias(f) for f in fields],
        F.count_if(found).alias("docs_with_pii"),
    ).first()
    return {
        **{f"pii.{t}": totals[f] for t, f in zip(types, fields, strict=True)},
        "docs_with_pii": totals["docs_with_pii"],
    }


def add_missing_stats(spark: Any, target: str, schema: Any) -> None:
    """Add the ``stats`` fields the rows carry and ``target`` lacks (a table written by clean-v3 has no pii_*
    counts; the version change has already deleted its rows): MERGE's ``INSERT *`` needs them."""
    have = {f.name for f in spark.table(target).schema["stats"].dataType.fields}
    missing = [f for f in schema["stats"].dataType.fields if f.name not in have]
    if missing:
        added = ", ".join(f"stats.{f.name} {f.dataType.simpleString()}" for f in missing)
        log.info("adding %s to %s", ", ".join(f.name for f in missing), target)
        spark.sql(f"ALTER TABLE {quote(target)} ADD COLUMNS ({added})")


@job("clean", config=CleanConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Clean the documents of docs_raw that docs_clean does not hold under the current rules."""
    from pyspark.sql import functions as F

    cfg: CleanConfig = settings.job
    source, target = qualify(settings, cfg.input_table), qualify(settings, cfg.output_table)
    if not table_exists(spark, source):
        raise MissingInputError(f"{source} is missing", "ingest")
    if cfg.tokenizer is not None:
        tokenizer_file(resolve_tokenizer(cfg.tokenizer))  # a bad job.tokenizer fails here, not inside a Spark task
    version = cfg.fingerprint()
    docs = spark.table(source)
    if table_exists(spark, target):
        versions = {r[0] for r in spark.table(target).select("clean_version").distinct().collect()}
        if versions - {version}:
            log.info("rules changed (%s → %s): re-cleaning every document", ", ".join(sorted(versions)), version)
            spark.sql(f"DELETE FROM {target} WHERE clean_version <> '{version}'")
    docs = pending_rows(spark, docs, target, ["doc_id"])
    pending = docs.count()
    log.info("%d documents to clean (rules %s)", pending, version)
    metrics: dict[str, float] = {"docs_in": pending}
    if pending:
        # Checkpointed: the UDF runs once per row although MERGE may read its source twice, and the rows no longer
        # depend on docs_clean (a cached plan that reads the target is invalidated, and recomputed, by the write).
        rows = keep(clean_documents(docs, cfg))
        ensure_table(spark, target, rows.schema)
        add_missing_stats(spark, target, rows.schema)
        crash.point("clean.before_commit")
        insert_new(spark, rows, target, ["doc_id"])
        per_reason = rows.groupBy("drop_reason").agg(
            F.count("*").alias("n"), F.sum("n_tokens").alias("tokens"), F.max("n_tokens").alias("max_tokens")
        )
        for row in per_reason.collect():
            metrics[f"dropped.{row['drop_reason']}" if row["drop_reason"] else "docs_kept"] = row["n"]
            metrics["tokens"] = metrics.get("tokens", 0) + (row["tokens"] or 0)
            metrics["max_tokens"] = max(metrics.get("max_tokens", 0), row["max_tokens"] or 0)
        metrics["mean_tokens"] = metrics.pop("tokens") / pending
        if cfg.pii.redact:
            metrics.update(pii_metrics(rows, cfg.pii.types))
        release(rows)
    metrics["docs_kept"] = metrics.get("docs_kept", 0)
    metrics["docs_dropped"] = pending - metrics["docs_kept"]
    log.info("kept %d of %d documents", metrics["docs_kept"], pending)
    drops = {k.removeprefix("dropped."): v for k, v in metrics.items() if k.startswith("dropped.")}
    if not drops:
        return JobResult(metrics)
    figure = bar_chart(drops, "drop reason (first failed rule)", "documents", "Why documents were dropped")
    return JobResult(metrics, figures={"clean_drop_reasons.png": figure})
