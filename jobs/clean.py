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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from backforth import crash
from backforth.config import ConfigError
from backforth.engines import load_profile
from backforth.errors import MissingInputError
from backforth.hashing import fingerprint
from backforth.keep import keep, release
from backforth.models import EMBEDDED, resolve_tokenizer
from backforth.plots import bar_chart
from backforth.registry import JobResult, job
from backforth.tables import ensure_table, insert_new, pending_rows, qualify, quote, table_exists
from backforth.udfs.pii import PII_FIELDS, PiiConfig
from backforth.udfs.quality import STATS_FIELDS, QualityThresholds, failed_rules, with_quality_stats
from backforth.udfs.text import CLEAN_TEXT_SCHEMA, make_clean_text_udf
from backforth.udfs.tokens import CHARS_PER_TOKEN_ESTIMATE, tokenizer_file

log = logging.getLogger("backforth.clean")
AUTO = "auto"


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
    # The length filter counts with the tokenizer and context of the model that will read the documents (reader()).
    model: str = AUTO  # that model's profile (conf/models/); auto = the rewrite step's
    model_options: dict[str, Any] = field(default_factory=dict)  # overrides of that profile's keys, as the step's
    tokenizer: str | None = AUTO  # auto = the profile's; embedded = SmolLM2; a tokenizer.json or folder; null = chars/4
    context_tokens: int | None = None  # null = the profile's max_model_len (SmolLM2-135M: 8192; Llama-2: 4096)
    reserved_tokens: int = 1536  # room for the prompt template, the instruction and the answer
    pii: PiiConfig = field(default_factory=PiiConfig)  # PII redaction (udfs/pii.py)
    version: str = "clean-v4"  # bump when the rules' code changes; thresholds are fingerprinted automatically
    # v2: repetition and language measured on prose without table rows; thresholds set on real documentation
    # v3: statistics in one Python pass per document; dup_lines compares lines trimmed, as documented (v2 did not)
    # v4: PII redacted after normalisation (stats and tokens describe the redacted text); stats.pii_* counts

    @property
    def max_doc_tokens(self) -> int:
        return int(reader(self).context_tokens or 0) - self.reserved_tokens

    def fingerprint(self) -> str:
        """``clean-v4-<hash of every setting that changes which documents are kept or what text they hold>``: the
        model counts through the tokenizer and context it resolves to (another model with the same ones keeps the same
        documents)."""
        keys = asdict(reader(self))
        for name in ("input_table", "output_table", "version", "model", "model_options"):
            keys.pop(name)
        return f"{self.version}-{fingerprint(keys, n=8)}"


def generating_model(env: str = "local") -> tuple[str, dict[str, Any]]:
    """The rewrite step's profile and options as configured for ``env`` (conf/jobs/rewrite.yaml and the env's
    ``jobs.rewrite``; a single clean run does not see another step's --set): what ``model: auto`` means outside a
    pipeline."""
    from backforth.config import load_settings
    from backforth.registry import get_job

    job_cfg = load_settings("rewrite", get_job("rewrite").config_cls, env).job
    return job_cfg.model, dict(job_cfg.model_options)


def follow_generator(cfg: CleanConfig, configs: dict[str, Any]) -> None:
    """In a pipeline (the job's ``plan`` hook), ``model: auto`` is the rewrite step's configured model (else
    distill's, else backtranslate's): the documents are cut to what that model can read."""
    if cfg.model != AUTO:
        return
    step = next((configs[s] for s in ("rewrite", "distill", "backtranslate") if s in configs), None)
    if step is not None:
        cfg.model, cfg.model_options = step.model, dict(step.model_options)


def reader(cfg: CleanConfig, env: str = "local") -> CleanConfig:
    """``cfg`` with the model, tokenizer and context resolved: ``model: auto`` → the rewrite step's profile;
    ``tokenizer: auto`` → that profile's tokenizer where it is local (``embedded``, or a folder or file holding a
    tokenizer.json), else None (chars/4, the rows' token_method says so); ``context_tokens: null`` → the profile's
    max_model_len. A bad profile name fails here with one line."""
    if cfg.model != AUTO and cfg.tokenizer != AUTO and cfg.context_tokens is not None:
        return cfg
    name, options = generating_model(env) if cfg.model == AUTO else (cfg.model, cfg.model_options)
    profile = load_profile(name, options, pin=False)
    tokenizer = profile_tokenizer(profile)[0] if cfg.tokenizer == AUTO else cfg.tokenizer
    context = profile.max_model_len if cfg.context_tokens is None else cfg.context_tokens
    return replace(cfg, model=name, model_options=options, tokenizer=tokenizer, context_tokens=context)


def profile_tokenizer(profile: Any) -> tuple[str | None, str]:
    """(a reference resolve_tokenizer takes, or None for chars/4; how it was chosen) for a model profile."""
    ref = profile.tokenizer or profile.model
    if ref == EMBEDDED:
        return ref, f"profile {profile.name}: the embedded SmolLM2 tokenizer"
    path = Path(ref).expanduser()
    if not ref.startswith("models:/") and ((path / "tokenizer.json").is_file() or path.suffix == ".json"
                                           and path.is_file()):  # fmt: skip
        return ref, f"profile {profile.name}: {ref}"
    return None, (f"profile {profile.name}: no local tokenizer.json for '{ref}' (a hub id, a registered model or a "
                  f"path not reachable here): chars/{CHARS_PER_TOKEN_ESTIMATE} estimate")  # fmt: skip


def clean_documents(docs: Any, cfg: CleanConfig, impl: str = "fast") -> Any:
    """Pure transformation: documents (doc_id, text, ...) → docs_clean rows. ``impl="reference"`` computes the same
    values the plain way (quality statistics as Spark column expressions, repetition with Counters, tokens by
    encoding each document): ~3× slower (bench/clean_speed.py), kept as the oracle the fast path is tested
    against, value for value."""
    from pyspark.sql import functions as F

    fast = {"fast": True, "reference": False}[impl]
    cfg = reader(cfg)
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


@job("clean", config=CleanConfig, plan=follow_generator)
def run(spark: Any, settings: Any) -> JobResult:
    """Clean the documents of docs_raw that docs_clean does not hold under the current rules."""
    from pyspark.sql import functions as F

    try:
        cfg: CleanConfig = reader(settings.job, settings.env)
        profile = load_profile(cfg.model, cfg.model_options, pin=False)  # checked with explicit tokenizer/context too
    except ConfigError as exc:
        raise ConfigError(f"clean: job.model: {exc}") from None
    source, target = qualify(settings, cfg.input_table), qualify(settings, cfg.output_table)
    if not table_exists(spark, source):
        raise MissingInputError(f"{source} is missing", "ingest")
    if settings.job.tokenizer == AUTO:  # said once the run goes ahead (a user error stays one line)
        how = profile_tokenizer(profile)[1]
        (log.warning if cfg.tokenizer is None else log.info)("length filter tokenizer: %s", how)
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
    log.info("%d documents to clean (rules %s; lengths: %s, %s-token context)", pending, version,
             cfg.tokenizer or f"chars/{CHARS_PER_TOKEN_ESTIMATE}", cfg.context_tokens)  # fmt: skip
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
    metrics["context_tokens"] = cfg.context_tokens or 0
    tags = {"backforth.clean.length_model": cfg.model, "backforth.clean.tokenizer": str(cfg.tokenizer)}
    drops = {k.removeprefix("dropped."): v for k, v in metrics.items() if k.startswith("dropped.")}
    if not drops:
        return JobResult(metrics, tags=tags)
    figure = bar_chart(drops, "drop reason (first failed rule)", "documents", "Why documents were dropped")
    return JobResult(metrics, figures={"clean_drop_reasons.png": figure}, tags=tags)
