"""Ingest raw corpora (Dolma, JSONL, Parquet, WARC, WET) into docs_raw; unreadable input goes to ingest_rejects.

Input: files named by ``job.inputs``. Output: ``docs_raw`` keyed by ``doc_id`` (see ``udfs.text.doc_id``),
``ingest_rejects`` keyed by (file, position, reason), ``ingest_files`` (one row per file read, for skipping
unchanged files next time). Re-running adds nothing; new files add only their new documents. Each file is one
Spark task that streams it, so a corpus of many files parallelises across executors.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from backforth.config import ConfigError
from backforth.keep import keep, release
from backforth.readers import MAX_RAW_CHARS, plan_files
from backforth.registry import job
from backforth.tables import append, ensure_table, insert_new, qualify
from backforth.udfs.text import doc_id_column

log = logging.getLogger("backforth.ingest")

Format = Literal["dolma", "jsonl", "parquet", "warc", "wet"]


@dataclass
class InputSpec:
    """One input: a file, a folder (read recursively) or a glob, in one format."""

    path: str
    format: Format
    source: str | None = None  # label stored in docs_raw.source; Dolma rows carry their own
    id_field: str | None = "id"  # null or absent → id from url + text
    text_field: str = "text"
    url_field: str | None = "url"


@dataclass
class IngestConfig:
    inputs: list[InputSpec] = field(default_factory=list)
    output_table: str = "docs_raw"
    rejects_table: str = "ingest_rejects"
    files_table: str = "ingest_files"
    reprocess: bool = False  # true: read files again even if size and mtime are unchanged (rows still dedup)


RECORD_SCHEMA = (
    "kind string, file string, source_format string, position long, source string, source_id string, url string, "
    "text string, created string, metadata string, reason string, detail string, raw string"
)
DOCS_SCHEMA = (
    "doc_id string not null, source string, source_format string, source_id string, url string, text string, "
    "created string, metadata string, file string, position long, ingest_batch string, ingested_at timestamp"
)
REJECTS_SCHEMA = (
    "file string, position long, reason string, detail string, raw string, source_format string, "
    "ingest_batch string, ingested_at timestamp"
)
FILES_SCHEMA = (
    "file string, size long, mtime double, format string, docs long, rejects long, skipped long, "
    "ingest_batch string, ingested_at timestamp"
)


def unchanged_files(spark: Any, files_fqn: str, planned: list[tuple[InputSpec, str, int, float]]) -> set[str]:
    """Paths already read with the same size and mtime (per ``ingest_files``)."""
    wanted = {(p, size, mtime) for _, p, size, mtime in planned}
    seen = spark.table(files_fqn).select("file", "size", "mtime").distinct().collect()
    return {r["file"] for r in seen if (r["file"], r["size"], r["mtime"]) in wanted}


FLUSH_ROWS, FLUSH_CHARS = 2_000, 32 << 20  # an Arrow batch ends after this many records or characters


def read_text_files(spark: Any, planned: list[tuple[InputSpec, str, int, float]]) -> Any:
    """JSON-lines and WARC-family files, parsed on executors: one task per file (a range of one id per
    partition, mapped to its file), through the DataFrame API only, so it runs the same over Spark Connect."""
    items = [(p, asdict(spec)) for spec, p, _, _ in planned if spec.format != "parquet"]
    if not items:
        return spark.createDataFrame([], RECORD_SCHEMA)
    columns = [c.split()[0] for c in RECORD_SCHEMA.split(", ")]

    def read(batches: Any) -> Any:
        import pyarrow as pa

        from backforth.readers import read_file

        schema = pa.schema([(c, pa.int64() if c == "position" else pa.string()) for c in columns])
        for batch in batches:
            for index in batch.column("id").to_pylist():
                path, spec = items[index]
                records, chars = [], 0
                for record in read_file(path, spec):
                    records.append(record)
                    chars += len(record.get("text") or "") + len(record.get("raw") or "")
                    if len(records) >= FLUSH_ROWS or chars >= FLUSH_CHARS:
                        yield pa.RecordBatch.from_pylist(records, schema=schema)
                        records, chars = [], 0
                if records:
                    yield pa.RecordBatch.from_pylist(records, schema=schema)

    return spark.range(0, len(items), 1, len(items)).mapInArrow(read, RECORD_SCHEMA)


def read_parquet_files(spark: Any, spec: InputSpec, paths: list[str]) -> Any:
    """Parquet through Spark's own reader; positions are row indexes within each file."""
    from pyspark.sql import functions as F

    df = spark.read.parquet(*paths)
    if spec.text_field not in df.columns:
        raise ConfigError(f"job.inputs: {spec.path}: no column '{spec.text_field}' (columns: {', '.join(df.columns)})")
    if dict(df.dtypes)[spec.text_field] != "string":
        raise ConfigError(f"job.inputs: {spec.path}: column '{spec.text_field}' is {dict(df.dtypes)[spec.text_field]}")

    def optional(name: str | None) -> Any:
        return F.col(name).cast("string") if name and name in df.columns else F.lit(None).cast("string")

    text = F.col(spec.text_field)
    others = [c for c in df.columns if c != spec.text_field]
    reason = F.when(text.isNull(), "missing_text").when(F.trim(text) == "", "empty_text")
    return df.select(
        F.when(reason.isNull(), "doc").otherwise("reject").alias("kind"),
        F.regexp_replace(F.col("_metadata.file_path"), "^file:", "").alias("file"),
        F.lit("parquet").alias("source_format"),
        (F.col("_metadata.row_index") + 1).alias("position"),
        F.lit(spec.source).cast("string").alias("source"),
        optional(spec.id_field).alias("source_id"),
        optional(spec.url_field).alias("url"),
        text.alias("text"),
        F.lit(None).cast("string").alias("created"),
        (F.to_json(F.struct(*others)) if others else F.lit(None).cast("string")).alias("metadata"),
        reason.alias("reason"),
        F.when(reason.isNotNull(), F.concat(F.lit(f"'{spec.text_field}' "), reason)).alias("detail"),
        F.when(reason.isNotNull(), F.substring(F.to_json(F.struct(*df.columns)), 1, MAX_RAW_CHARS)).alias("raw"),
    )


def split_records(records: Any, batch: str) -> tuple[Any, Any]:
    """(documents unique on doc_id, rejects): repeated ids within a batch become ``duplicate_id`` rejects."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    stamp = [F.lit(batch).alias("ingest_batch"), F.current_timestamp().alias("ingested_at")]
    docs = records.where("kind = 'doc'").withColumn("doc_id", doc_id_column())
    first = Window.partitionBy("doc_id").orderBy("file", "position")
    docs = docs.withColumn("_n", F.row_number().over(first))
    kept = docs.where("_n = 1").select(*[c.split()[0] for c in DOCS_SCHEMA.split(", ")[:-2]], *stamp)
    repeated = docs.where("_n > 1").select(
        "file",
        "position",
        F.lit("duplicate_id").alias("reason"),
        F.concat(F.lit("doc_id "), F.col("doc_id"), F.lit(" already read earlier in this batch")).alias("detail"),
        F.col("text").alias("raw"),
        "source_format",
        *stamp,
    )
    rejects = records.where("kind = 'reject'").select(
        "file", "position", "reason", "detail", "raw", "source_format", *stamp
    )
    return kept, rejects.unionByName(repeated)


def file_rows(planned: list, counts: list, batch: str) -> list[tuple]:
    """Rows for ``ingest_files``: one per file read, with its doc, reject and skip counts."""
    per_file: dict[tuple[str, str], int] = {}
    for row in counts:
        per_file[(row["file"], row["kind"])] = per_file.get((row["file"], row["kind"]), 0) + row["count"]
    return [
        (p, size, mtime, spec.format, per_file.get((p, "doc"), 0), per_file.get((p, "reject"), 0),
         per_file.get((p, "skip"), 0), batch)
        for spec, p, size, mtime in planned
    ]  # fmt: skip


@job("ingest", config=IngestConfig)
def run(spark: Any, settings: Any) -> dict[str, float]:
    """Read every new or changed input file and insert its new documents and rejects."""
    from pyspark.sql import functions as F

    cfg: IngestConfig = settings.job
    if not cfg.inputs:
        raise ConfigError("job.inputs is empty: name at least one file, folder or glob (see conf/jobs/ingest.yaml)")
    planned = plan_files(cfg.inputs)  # a bad path fails before any table is created
    docs_fqn, rejects_fqn, files_fqn = (
        qualify(settings, t) for t in (cfg.output_table, cfg.rejects_table, cfg.files_table)
    )
    for fqn, schema in ((docs_fqn, DOCS_SCHEMA), (rejects_fqn, REJECTS_SCHEMA), (files_fqn, FILES_SCHEMA)):
        ensure_table(spark, fqn, spark.createDataFrame([], schema).schema)

    skip = set() if cfg.reprocess else unchanged_files(spark, files_fqn, planned)
    todo = [item for item in planned if item[1] not in skip]
    log.info("%d input files: %d to read, %d unchanged since their last ingest", len(planned), len(todo), len(skip))
    metrics: dict[str, float] = {"files_planned": len(planned), "files_unchanged": len(skip), "files_read": len(todo)}
    if not todo:
        return {**metrics, "docs_read": 0, "docs_inserted": 0, "rejects_read": 0, "rejects_inserted": 0}

    batch = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    parts = [read_text_files(spark, todo)]
    for spec in {id(s): s for s, *_ in todo if s.format == "parquet"}.values():
        parts.append(read_parquet_files(spark, spec, [p for s, p, *_ in todo if s is spec]))
    records = parts[0]
    for part in parts[1:]:
        records = records.unionByName(part)
    records = keep(records)  # parsed once, then split into two tables and counted
    counts = records.groupBy("file", "kind", "reason").count().collect()
    docs, rejects = split_records(records, batch)
    inserted = insert_new(spark, docs, docs_fqn, ["doc_id"])
    rejected = insert_new(spark, rejects, rejects_fqn, ["file", "position", "reason"])
    manifest = spark.createDataFrame(file_rows(todo, counts, batch), FILES_SCHEMA.rsplit(",", 1)[0])
    append(manifest.withColumn("ingested_at", F.current_timestamp()), files_fqn)

    for row in counts:
        if row["kind"] in ("reject", "skip"):
            key = f"{'rejects' if row['kind'] == 'reject' else 'skipped'}.{row['reason']}"
            metrics[key] = metrics.get(key, 0) + row["count"]
    metrics["docs_read"] = sum(r["count"] for r in counts if r["kind"] == "doc")
    metrics["rejects_read"] = sum(r["count"] for r in counts if r["kind"] == "reject")
    distinct_ids = records.where("kind = 'doc'").select(doc_id_column().alias("doc_id")).distinct().count()
    metrics["rejects.duplicate_id"] = metrics["docs_read"] - distinct_ids
    metrics["docs_inserted"] = inserted.get("num_inserted_rows", 0)
    metrics["docs_already_present"] = distinct_ids - metrics["docs_inserted"]
    metrics["rejects_inserted"] = rejected.get("num_inserted_rows", 0)
    release(records)
    log.info(
        "read %d documents and %d rejects; inserted %d new documents and %d new rejects",
        metrics["docs_read"], metrics["rejects_read"], metrics["docs_inserted"], metrics["rejects_inserted"],
    )  # fmt: skip
    return metrics
