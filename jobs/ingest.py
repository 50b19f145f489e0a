"""Ingest raw corpora (Dolma, JSONL, Parquet, WARC, WET) into docs_raw; unreadable input goes to ingest_rejects.

Input: files named by ``job.inputs``. Output: ``docs_raw`` keyed by ``doc_id`` (see ``udfs.text.doc_id``),
``ingest_rejects`` keyed by (file, position, reason), ``ingest_files`` (one row per file read, for skipping
unchanged files next time). Re-running adds nothing; new files add only their new documents.

Files are found and read one of two ways (``job.listing``). Local disk: the driver walks the folders and each file is
one Spark task that streams it from a path every executor sees (a laptop, a shared mount, ``/Volumes`` on a
Databricks cluster). Spark's filesystems: Spark lists the inputs and its binary-file source hands each file's bytes
to the same parsers; that is how ``s3a://``, ``abfss://``, ``gs://`` and ``dbfs:/`` inputs are read, and any input
when the session is a Spark Connect client of a remote cluster, whose disks are not this machine's. The two give the
same documents and rejects for the same files.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from functools import reduce
from typing import Any, Literal

from backforth import crash
from backforth.config import ConfigError, at_least
from backforth.errors import BadPathError
from backforth.keep import keep, release
from backforth.readers import MAX_RAW_CHARS, is_uri, scan_inputs
from backforth.registry import job
from backforth.spark import remote_url
from backforth.tables import append, ensure_table, insert_new, qualify, quote
from backforth.udfs.text import doc_id_column

log = logging.getLogger("backforth.ingest")

Format = Literal["dolma", "jsonl", "parquet", "warc", "wet"]
SPARK_MAX_FILE_BYTES = 2**31 - 1  # the binary-file source's limit: a file's bytes are one value
LOCAL_SCHEME = r"^file:(//)?(?=/)"  # Spark's file:/x names the local /x (Python's re and Java's regex alike)


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
    # How input files are listed and read. local: the driver walks the local disk, a task streams each file (no
    # size limit). spark: Spark's filesystems list them and its binary-file source reads each one whole into a
    # task's memory (s3a://, abfss://, gs://, dbfs:/, /Volumes). auto: spark for URIs, and for every input when the
    # session is a Spark Connect client of a remote cluster; local otherwise.
    listing: Literal["auto", "local", "spark"] = "auto"
    max_file_bytes: int = at_least(1, SPARK_MAX_FILE_BYTES)  # larger files read through Spark: file_too_large rejects
    # Names starting with _ or . (_SUCCESS, .crc, _temporary/) are not data by Hadoop's convention: skipped, each
    # one an ingest_files row with skip_reason hidden_name. true: the local walk reads them too (Spark's listing
    # never returns them, so an input listed through Spark cannot).
    include_hidden: bool = False


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
    "ingest_batch string, ingested_at timestamp, skip_reason string"
)  # skip_reason: NULL for a file read, hidden_name for one skipped (docs, rejects, skipped NULL)
HIDDEN = "hidden_name"


def recorded_files(spark: Any, files_fqn: str, planned: list, hidden: list) -> tuple[set[str], set[str]]:
    """(paths of ``planned`` already read, paths of ``hidden`` already recorded as skipped), each with the same size
    and mtime (per ``ingest_files``)."""
    table = spark.table(files_fqn)
    if "skip_reason" not in table.columns:  # written before skipped files were recorded
        spark.sql(f"ALTER TABLE {quote(files_fqn)} ADD COLUMNS (skip_reason string)")
        table = spark.table(files_fqn)
    seen = {tuple(r) for r in table.select("file", "size", "mtime", "skip_reason").distinct().collect()}
    read = {p for _, p, size, mtime in planned if (p, size, mtime, None) in seen}
    return read, {p for _, p, size, mtime in hidden if (p, size, mtime, HIDDEN) in seen}


FLUSH_ROWS, FLUSH_CHARS = 2_000, 32 << 20  # an Arrow batch ends after this many records or characters
RECORD_COLUMNS = [c.split()[0] for c in RECORD_SCHEMA.split(", ")]


def record_batches(records: Any) -> Any:
    """Arrow batches of parsed records, each ending after FLUSH_ROWS records or FLUSH_CHARS characters."""
    import pyarrow as pa

    schema = pa.schema([(c, pa.int64() if c == "position" else pa.string()) for c in RECORD_COLUMNS])
    batch, chars = [], 0
    for record in records:
        batch.append(record)
        chars += len(record.get("text") or "") + len(record.get("raw") or "")
        if len(batch) >= FLUSH_ROWS or chars >= FLUSH_CHARS:
            yield pa.RecordBatch.from_pylist(batch, schema=schema)
            batch, chars = [], 0
    if batch:
        yield pa.RecordBatch.from_pylist(batch, schema=schema)


def read_text_files(spark: Any, planned: list[tuple[InputSpec, str, int, float]]) -> Any:
    """JSON-lines and WARC-family files on a disk every executor sees, parsed on executors: one task per file (a
    range of one id per partition, mapped to its file), through the DataFrame API only (runs over Spark Connect)."""
    items = [(p, asdict(spec)) for spec, p, _, _ in planned if spec.format != "parquet"]
    if not items:
        return spark.createDataFrame([], RECORD_SCHEMA)

    def read(batches: Any) -> Any:
        from backforth.readers import read_file

        for batch in batches:
            for index in batch.column("id").to_pylist():
                path, spec = items[index]
                yield from record_batches(read_file(path, spec))

    return spark.range(0, len(items), 1, len(items)).mapInArrow(read, RECORD_SCHEMA)


def file_name(path: str) -> str:
    """The name a file is recorded under: Spark's ``file:/x`` is the local ``/x`` (as the local listing names
    it), any other scheme stays."""
    return re.sub(LOCAL_SCHEME, "", path)


def list_with_spark(spark: Any, inputs: list[InputSpec]) -> tuple[list[tuple[InputSpec, str, int, float]], dict]:
    """Expand inputs through Spark's filesystems: (planned files as the local listing gives them, file name → the
    path Spark reads it by). Folders are read recursively; Spark never lists names starting with ``_`` or ``.``
    (Hadoop's convention, which the local walk follows too), so here they are neither read nor counted."""
    from pyspark.sql import functions as F

    planned, locations = [], {}
    for spec in inputs:
        path = spec.path if is_uri(spec.path) else os.path.abspath(os.path.expanduser(spec.path))
        try:
            found = (
                spark.read.format("binaryFile")
                .option("recursiveFileLookup", "true")
                .load(path)
                .select("path", "length", F.col("modificationTime").cast("double").alias("mtime"))
                .collect()
            )
        except Exception as exc:  # noqa: BLE001 - Spark says PATH_NOT_FOUND; no Java trace for the user
            if "PATH_NOT_FOUND" not in str(exc) and "FileNotFoundException" not in str(exc):
                raise
            found = []
        if not found:
            raise BadPathError(f"job.inputs: {spec.path} ({spec.format}) matches no file")
        for row in sorted(found, key=lambda r: r["path"]):
            name = file_name(row["path"])
            locations[name] = row["path"]
            planned.append((spec, name, row["length"], row["mtime"]))
    return planned, locations


def read_text_files_spark(
    spark: Any, planned: list[tuple[InputSpec, str, int, float]], locations: dict[str, str], max_bytes: int
) -> Any:
    """JSON-lines and WARC-family files read by Spark's binary-file source (any filesystem Spark reads), parsed
    on executors by the same readers as local files. A file larger than ``max_bytes`` becomes one
    ``file_too_large`` reject instead of failing the job."""

    items = {p: asdict(spec) for spec, p, _, _ in planned if spec.format != "parquet"}
    sizes = {p: size for _, p, size, _ in planned}
    readable = [p for p in items if sizes[p] <= max_bytes]
    too_large = [
        {"kind": "reject", "file": p, "source_format": items[p]["format"], "position": 0, "reason": "file_too_large",
         "detail": f"{sizes[p]} bytes: files read through Spark are read whole, at most {max_bytes} bytes "
                   "(job.max_file_bytes); split the file, or read it from a shared disk with job.listing: local"}
        for p in items if sizes[p] > max_bytes
    ]  # fmt: skip
    parts = [spark.createDataFrame([tuple(r.get(c) for c in RECORD_COLUMNS) for r in too_large], RECORD_SCHEMA)]
    if readable:

        def read(batches: Any) -> Any:
            from backforth.readers import read_file

            for batch in batches:
                contents = batch.column("content")
                for i, path in enumerate(batch.column("path").to_pylist()):
                    name = file_name(path)
                    yield from record_batches(read_file(name, items[name], contents[i].as_py()))

        files = spark.read.format("binaryFile").load([locations[p] for p in readable])
        parts.append(files.select("path", "content").mapInArrow(read, RECORD_SCHEMA))
    return parts[0].unionByName(parts[1]) if len(parts) > 1 else parts[0]


def listed_by_spark(spec: InputSpec, cfg: IngestConfig, settings: Any) -> bool:
    """Whether ``spec`` is listed and read through Spark's filesystems (see ``IngestConfig.listing``)."""
    if cfg.listing != "auto":
        return cfg.listing == "spark"
    remote = remote_url(settings)
    return is_uri(spec.path) or bool(remote and not remote.startswith("local"))


def read_parquet_files(spark: Any, spec: InputSpec, paths: list[str]) -> Any:
    """Parquet through Spark's own reader; positions are row indexes within each file. The files of one input are
    read together when their schemas merge; when they do not (``text`` a string in one file and a number in
    another), each file is read with its own schema, so the odd file's rows become rejects and the rest is read."""
    try:
        df = spark.read.option("mergeSchema", "true").parquet(*paths)
        columns = df.columns  # over Spark Connect the schemas are read and merged here
    except Exception as exc:  # noqa: BLE001 - Py4J's error in a classic session, Connect's own over Connect
        if "CANNOT_MERGE_SCHEMAS" not in str(exc):
            raise
        log.warning("%s: the Parquet files' schemas do not merge; reading each file with its own", spec.path)
        parts = [parquet_records(spark.read.parquet(p), spec) for p in paths]
        return reduce(lambda a, b: a.unionByName(b), parts)
    if spec.text_field not in columns:
        raise ConfigError(f"job.inputs: {spec.path}: no column '{spec.text_field}' (columns: {', '.join(columns)})")
    return parquet_records(df, spec)


def parquet_records(df: Any, spec: InputSpec) -> Any:
    """Parquet rows as records: a document, or a reject when the text is missing, blank or not a string."""
    from pyspark.sql import functions as F

    name, dtype = spec.text_field, dict(df.dtypes).get(spec.text_field)

    def optional(column: str | None) -> Any:
        return F.col(column).cast("string") if column and column in df.columns else F.lit(None).cast("string")

    if dtype == "string":
        text = F.col(name)
        reason = F.when(text.isNull(), "missing_text").when(F.trim(text) == "", "empty_text")
        detail = F.concat(F.lit(f"'{name}' "), reason)
    else:  # a file of its own (see read_parquet_files) without the column, or with another type
        text = F.lit(None).cast("string")
        reason = F.lit("missing_text" if dtype is None else "bad_text_type")
        detail = F.lit(f"no column '{name}'" if dtype is None else f"'{name}' is {dtype}")
    others = [c for c in df.columns if c != name]
    return df.select(
        F.when(reason.isNull(), "doc").otherwise("reject").alias("kind"),
        F.regexp_replace(F.col("_metadata.file_path"), LOCAL_SCHEME, "").alias("file"),
        F.lit("parquet").alias("source_format"),
        (F.col("_metadata.row_index") + 1).alias("position"),
        F.lit(spec.source).cast("string").alias("source"),
        optional(spec.id_field).alias("source_id"),
        optional(spec.url_field).alias("url"),
        text.alias("text"),
        F.lit(None).cast("string").alias("created"),
        (F.to_json(F.struct(*others)) if others else F.lit(None).cast("string")).alias("metadata"),
        reason.alias("reason"),
        F.when(reason.isNotNull(), detail).alias("detail"),
        F.when(reason.isNotNull(), F.substring(F.to_json(F.struct(*df.columns)), 1, MAX_RAW_CHARS)).alias("raw"),
    )


def mark_duplicates(records: Any) -> Any:
    """``records`` with a ``doc_id`` on every document, and each document whose ``doc_id`` came earlier in the batch
    (by file, position) turned into a ``duplicate_id`` reject: counted as a reject of its file, not a document."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    is_doc = F.col("kind") == "doc"
    first = Window.partitionBy("doc_id").orderBy("file", "position")
    marked = records.withColumn("doc_id", F.when(is_doc, doc_id_column())).withColumn(
        "_repeat", is_doc & (F.row_number().over(first) > 1)
    )
    repeat = F.col("_repeat")
    detail = F.concat(F.lit("doc_id "), F.col("doc_id"), F.lit(" already read earlier in this batch"))
    changed = {
        "kind": F.when(repeat, "reject").otherwise(F.col("kind")),
        "reason": F.when(repeat, "duplicate_id").otherwise(F.col("reason")),
        "detail": F.when(repeat, detail).otherwise(F.col("detail")),
        "raw": F.when(repeat, F.col("text")).otherwise(F.col("raw")),
    }
    return marked.select(*[changed[c].alias(c) if c in changed else c for c in RECORD_COLUMNS], "doc_id")


def split_records(records: Any, batch: str) -> tuple[Any, Any]:
    """(documents, rejects) of records marked by :func:`mark_duplicates`, stamped with the batch."""
    from pyspark.sql import functions as F

    stamp = [F.lit(batch).alias("ingest_batch"), F.current_timestamp().alias("ingested_at")]
    docs = records.where("kind = 'doc'").select(*[c.split()[0] for c in DOCS_SCHEMA.split(", ")[:-2]], *stamp)
    rejects = records.where("kind = 'reject'").select(
        "file", "position", "reason", "detail", "raw", "source_format", *stamp
    )
    return docs, rejects


def file_rows(planned: list, counts: list, batch: str) -> list[tuple]:
    """Rows for ``ingest_files``: one per file read, with its doc, reject and skip counts (``skip_reason`` NULL)."""
    per_file: dict[tuple[str, str], int] = {}
    for row in counts:
        per_file[(row["file"], row["kind"])] = per_file.get((row["file"], row["kind"]), 0) + row["count"]
    return [
        (p, size, mtime, spec.format, per_file.get((p, "doc"), 0), per_file.get((p, "reject"), 0),
         per_file.get((p, "skip"), 0), batch, None)
        for spec, p, size, mtime in planned
    ]  # fmt: skip


def record_files(spark: Any, rows: list[tuple], files_fqn: str) -> None:
    """Append ``rows`` (as :func:`file_rows` gives them) to ``ingest_files``."""
    from pyspark.sql import functions as F

    if rows:
        schema = FILES_SCHEMA.replace(", ingested_at timestamp", "")
        append(spark.createDataFrame(rows, schema).withColumn("ingested_at", F.current_timestamp()), files_fqn)


@job("ingest", config=IngestConfig)
def run(spark: Any, settings: Any) -> dict[str, float]:
    """Read every new or changed input file and insert its new documents and rejects."""
    cfg: IngestConfig = settings.job
    if not cfg.inputs:
        raise ConfigError("job.inputs is empty: name at least one file, folder or glob (see conf/jobs/ingest.yaml)")
    via_spark = [spec for spec in cfg.inputs if listed_by_spark(spec, cfg, settings)]
    if cfg.include_hidden and via_spark:
        raise ConfigError(
            f"job.include_hidden: {via_spark[0].path} is listed through Spark, whose listing never returns names "
            "starting with _ or . (not even named one by one); rename such files, or read them from a disk every "
            "executor sees with job.listing: local"
        )
    local = [spec for spec in cfg.inputs if spec not in via_spark]
    planned, hidden = scan_inputs(local, cfg.include_hidden)  # a bad path fails before any table is created
    listed, locations = list_with_spark(spark, via_spark)
    planned += listed
    docs_fqn, rejects_fqn, files_fqn = (
        qualify(settings, t) for t in (cfg.output_table, cfg.rejects_table, cfg.files_table)
    )
    for fqn, schema in ((docs_fqn, DOCS_SCHEMA), (rejects_fqn, REJECTS_SCHEMA), (files_fqn, FILES_SCHEMA)):
        ensure_table(spark, fqn, spark.createDataFrame([], schema).schema)

    unchanged, hidden_recorded = recorded_files(spark, files_fqn, planned, hidden)
    skip = set() if cfg.reprocess else unchanged
    todo = [item for item in planned if item[1] not in skip]
    log.info("%d input files: %d to read, %d unchanged since their last ingest", len(planned), len(todo), len(skip))
    if hidden:
        log.info(
            "%d files skipped for a name starting with _ or . (job.include_hidden: true reads them), e.g. %s",
            len(hidden), hidden[0][1],
        )  # fmt: skip
    metrics: dict[str, float] = {"files_planned": len(planned), "files_unchanged": len(skip), "files_read": len(todo),
                                 "files_skipped_hidden": len(hidden)}  # fmt: skip
    batch = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    skipped_rows = [(p, size, mtime, spec.format, None, None, None, batch, HIDDEN)
                    for spec, p, size, mtime in hidden if p not in hidden_recorded]  # fmt: skip
    if not todo:
        record_files(spark, skipped_rows, files_fqn)
        return {**metrics, "docs_read": 0, "docs_inserted": 0, "rejects_read": 0, "rejects_inserted": 0}

    spark_todo = [item for item in todo if item[1] in locations]
    parts = [read_text_files(spark, [item for item in todo if item[1] not in locations])]
    if spark_todo:
        parts.append(read_text_files_spark(spark, spark_todo, locations, cfg.max_file_bytes))
    for spec in {id(s): s for s, *_ in todo if s.format == "parquet"}.values():
        parts.append(read_parquet_files(spark, spec, [locations.get(p, p) for s, p, *_ in todo if s is spec]))
    records = reduce(lambda a, b: a.unionByName(b), parts)
    records = keep(mark_duplicates(records))  # parsed once, then counted and split into two tables
    counts = records.groupBy("file", "kind", "reason").count().collect()
    docs, rejects = split_records(records, batch)
    inserted = insert_new(spark, docs, docs_fqn, ["doc_id"])
    crash.point("ingest.after_docs")
    rejected = insert_new(spark, rejects, rejects_fqn, ["file", "position", "reason"])
    crash.point("ingest.after_rejects")  # files not recorded yet: the next run reads them again
    record_files(spark, file_rows(todo, counts, batch) + skipped_rows, files_fqn)

    metrics["rejects.duplicate_id"] = 0
    for row in counts:
        if row["kind"] in ("reject", "skip"):
            key = f"{'rejects' if row['kind'] == 'reject' else 'skipped'}.{row['reason']}"
            metrics[key] = metrics.get(key, 0) + row["count"]
    metrics["docs_read"] = sum(r["count"] for r in counts if r["kind"] == "doc")  # unique on doc_id in the batch
    metrics["rejects_read"] = sum(r["count"] for r in counts if r["kind"] == "reject")
    metrics["docs_inserted"] = inserted.get("num_inserted_rows", 0)
    metrics["docs_already_present"] = metrics["docs_read"] - metrics["docs_inserted"]
    metrics["rejects_inserted"] = rejected.get("num_inserted_rows", 0)
    release(records)
    log.info(
        "read %d documents and %d rejects; inserted %d new documents and %d new rejects",
        metrics["docs_read"], metrics["rejects_read"], metrics["docs_inserted"], metrics["rejects_inserted"],
    )  # fmt: skip
    return metrics
