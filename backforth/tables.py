"""Delta table helpers: qualified names, ensure, insert-only merge, append, pending work, versions. Everything is
SQL or DataFrame API, so it runs the same in a classic session and over Spark Connect.

Jobs name tables by their short name (``docs_raw``); :func:`qualify` turns that into ``schema.table`` locally or
``catalog.schema.table`` on Unity Catalog. A name that already has dots is taken as given.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from backforth.config import Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger("backforth.tables")
T = TypeVar("T")


def qualify(settings: Settings, name: str) -> str:
    """``docs_raw`` → ``backforth.docs_raw`` (local) or ``main.backforth.docs_raw`` (Unity Catalog)."""
    if "." in name:
        return name
    return f"{schema_name(settings)}.{name}"


def schema_name(settings: Settings) -> str:
    """The tables' schema: ``backforth`` (local) or ``main.backforth`` (Unity Catalog)."""
    return ".".join(p for p in (settings.tables.catalog, settings.tables.schema) if p)


def quote(fqn: str) -> str:
    """Backtick-quote each part of a qualified name for SQL."""
    return ".".join(f"`{part}`" for part in fqn.split("."))


def ensure_schema(spark: SparkSession, fqn: str) -> None:
    """Create the schema (database) of ``fqn`` if it is missing."""
    schema = fqn.rpartition(".")[0]
    if schema:
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")


def column_ddl(schema: StructType) -> str:
    """``schema`` as the column list of a CREATE TABLE statement (nested types in Spark's DDL syntax)."""
    columns = []
    for f in schema.fields:
        ddl = f"`{f.name}` {f.dataType.simpleString()}" + ("" if f.nullable else " NOT NULL")
        if f.metadata.get("comment"):
            ddl += " COMMENT " + sql_string(f.metadata["comment"])
        columns.append(ddl)
    return ", ".join(columns)


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


CREATE_RACES = (  # what a CREATE TABLE that lost the race to another writer's CREATE of the same table raises
    "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION", "DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED",
    "TABLE_OR_VIEW_ALREADY_EXISTS", "already exists",
)  # fmt: skip
CREATE_ATTEMPTS = 6


def ensure_table(spark: SparkSession, fqn: str, schema: StructType, comment: str = "") -> None:
    """Create an empty Delta table with ``schema`` if ``fqn`` does not exist yet; an existing table is left as is.
    Plain SQL, so it works the same over Spark Connect (Delta's Python builder needs the JVM)."""
    if table_exists(spark, fqn):  # a catalog lookup: cheaper than the statement's own check
        return
    ensure_schema(spark, fqn)
    described = f" COMMENT {sql_string(comment)}" if comment else ""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            spark.sql(f"CREATE TABLE IF NOT EXISTS {quote(fqn)} ({column_ddl(schema)}) USING DELTA{described}")
            return
        except Exception as exc:
            # Another writer (a second job, a concurrent shard) created it first: its Delta log is at the location
            # before the catalog lists the table, so this statement fails rather than finds it. Wait for the table.
            if not any(race in str(exc) for race in CREATE_RACES) or attempt == CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
            if table_exists(spark, fqn):
                return


def add_missing_columns(spark: SparkSession, fqn: str, schema: StructType) -> list[str]:
    """Add the columns of ``schema`` that ``fqn`` lacks (a table written by an older version of its step), as
    nullable columns, in SQL (works over Spark Connect); returns their names. Existing rows read NULL there."""
    have = {f.name.lower() for f in spark.table(fqn).schema.fields}
    missing = [f for f in schema.fields if f.name.lower() not in have]
    if missing:
        from pyspark.sql import types as T

        ddl = column_ddl(T.StructType([T.StructField(f.name, f.dataType, True) for f in missing]))
        spark.sql(f"ALTER TABLE {quote(fqn)} ADD COLUMNS ({ddl})")
    return [f.name for f in missing]


def register_location(spark: SparkSession, fqn: str, path: object) -> None:
    """Name the Delta table at ``path`` as ``fqn`` in the catalog (no data moves; an existing name is left as is)."""
    location = str(path).replace("'", "\\'")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {quote(fqn)} USING delta LOCATION '{location}'")


def table_exists(spark: SparkSession, fqn: str) -> bool:
    """Whether the catalog knows ``fqn``."""
    return spark.catalog.tableExists(fqn)


CONFLICTS = ("DELTA_CONCURRENT_", "ConcurrentAppendException", "ConcurrentDeleteReadException",
             "ConcurrentTransactionException")  # fmt: skip


def retry_on_conflict(statement: Callable[[], T], what: str, attempts: int = 8) -> T:
    """Run ``statement`` (an idempotent write: a MERGE on a unique key) again when Delta's optimistic concurrency
    rejects it because another writer committed to the same table meanwhile; the last conflict is raised."""
    for attempt in range(attempts):
        try:
            return statement()
        except Exception as exc:
            if not any(c in str(exc) for c in CONFLICTS) or attempt == attempts - 1:
                raise
            wait = min(5.0, 0.2 * 2**attempt) * (0.5 + random.random())
            log.info("%s: another writer committed first; retrying in %.1f s", what, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def insert_new(spark: SparkSession, df: DataFrame, fqn: str, keys: list[str]) -> dict[str, int]:
    """Insert the rows of ``df`` whose ``keys`` are not in ``fqn`` yet (one atomic MERGE); returns the counts the
    MERGE statement itself reports (``num_inserted_rows`` …): exact even when another writer commits meanwhile.

    Only for deterministic sources: MERGE may evaluate its source more than once. ``df`` must be unique on ``keys``.
    SQL over a temporary view rather than Delta's Python API, which needs the JVM (not there over Spark Connect).
    """
    view = f"_backforth_merge_{uuid.uuid4().hex[:12]}"
    df.createOrReplaceTempView(view)
    condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    try:
        rows = spark.sql(
            f"MERGE INTO {quote(fqn)} t USING `{view}` s ON {condition} WHEN NOT MATCHED THEN INSERT *"
        ).collect()
    finally:
        spark.catalog.dropTempView(view)
    return {k: int(v) for k, v in rows[0].asDict().items() if v is not None} if rows else {}


def append(df: DataFrame, fqn: str, merge_schema: bool = False, user_metadata: str | None = None) -> None:
    """One atomic Delta append (also the write unit of LLM steps: a crash loses at most this batch).
    ``merge_schema`` adds columns ``df`` has and the table lacks (an LLM table written before a column was added);
    ``user_metadata`` is stored with the commit (``DESCRIBE HISTORY`` shows it: how a shard finds its commit)."""
    writer = df.write.format("delta").mode("append")
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if user_metadata:
        writer = writer.option("userMetadata", user_metadata)
    writer.saveAsTable(fqn)


def pending_rows(
    spark: SparkSession, source: DataFrame, fqn: str, keys: list[str], where: Column | None = None
) -> DataFrame:
    """Rows of ``source`` with no row in ``fqn`` on ``keys``: the work a resumed job still has to do. ``where``
    restricts the rows of ``fqn`` that count as done (an LLM step's own ``step_version``)."""
    if not table_exists(spark, fqn):
        return source
    done = spark.table(fqn)
    if where is not None:
        done = done.where(where)
    return source.join(done.select(*keys), on=keys, how="left_anti")


def table_version(spark: SparkSession, fqn: str) -> int:
    """The current Delta version of ``fqn``."""
    return int(spark.sql(f"DESCRIBE HISTORY {quote(fqn)} LIMIT 1").collect()[0]["version"])
