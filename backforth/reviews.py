"""People's judgements of generated pairs: the ``reviews`` table, written by the review app, read by filter and export.

A review targets one ``responses`` row (``doc_id``, its ``step_version``, ``kind``) and, through it, the pair it
answers (``doc_id``, ``instruction_version``: the backtranslation that wrote the instruction). Labels:

- ``accept``: a person read it and would train on it;
- ``reject`` (with a ``reason``): the pair is out: ``filter`` leaves it out of its selection and ``export`` drops the
  response with ``drop_reason = 'human_reject'``;
- ``edit``: the person's ``instruction`` and/or ``response`` replace the generated ones in the export (the generated
  rows are never changed; the exported row names the review that edited it).

Rows are only appended; the newest review of a target is the one that counts (``reviewed_at``, then ``review_id``).
The app writes with delta-rs (no JVM, so a label is saved in milliseconds while a job runs); the table sits where
Spark keeps the schema's tables, and a job that reads it registers it in the catalog by its location the first time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backforth.config import Settings

TABLE = "reviews"
LABELS = ("accept", "reject", "edit")
REASONS = ("bad_instruction", "bad_response", "not_grounded", "unsafe", "other")  # why a pair is rejected
HUMAN_REJECT = "human_reject"  # export's drop_reason for a rejected pair
COLUMNS = ["review_id", "doc_id", "step_version", "kind", "instruction_version", "label", "reason", "instruction",
           "response", "reviewer", "note", "reviewed_at"]  # fmt: skip


def arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema([(c, pa.timestamp("us", tz="UTC") if c == "reviewed_at" else pa.string()) for c in COLUMNS])


def spark_schema() -> Any:
    from pyspark.sql import types as T

    return T.StructType([T.StructField(c, T.TimestampType() if c == "reviewed_at" else T.StringType())
                         for c in COLUMNS])  # fmt: skip


def local_path(settings: Settings) -> Path | None:
    """Where the table lives when the tables are local files (the warehouse folder of the schema), else None."""
    from backforth.status import local_schema_dir

    folder = local_schema_dir(settings)
    return None if folder is None else folder / TABLE


def read(spark: Any, settings: Settings, inputs: list[Any]) -> Any | None:
    """The reviews at their current Delta version, recorded in ``inputs`` (a step run's InputRefs), or None when
    nobody has reviewed anything yet. A table the app wrote under the local warehouse is registered in the catalog
    by its location on first use."""
    from backforth.lineage import InputRef
    from backforth.tables import ensure_schema, qualify, quote, register_location, table_exists, table_version

    fqn = qualify(settings, TABLE)
    if not table_exists(spark, fqn):
        path = local_path(settings)
        if path is None or not (path / "_delta_log").is_dir():
            return None
        ensure_schema(spark, fqn)
        register_location(spark, fqn, path)
    version = table_version(spark, fqn)
    inputs.append(InputRef(fqn, table_version=version))
    return spark.sql(f"SELECT * FROM {quote(fqn)} VERSION AS OF {int(version)}")


def latest(reviews: Any) -> Any:
    """The newest review of each target (doc_id, step_version)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("doc_id", "step_version").orderBy(F.col("reviewed_at").desc(), F.col("review_id").desc())
    return reviews.withColumn("_n", F.row_number().over(order)).where("_n = 1").drop("_n")


def rejected_pairs(reviews: Any) -> Any:
    """(doc_id, instruction_version) of the pairs whose newest review of some response says reject."""
    return latest(reviews).where("label = 'reject'").select("doc_id", "instruction_version").distinct()


def apply(pairs: Any, reviews: Any | None) -> Any:
    """Generated pairs (``doc_id``, ``step_version`` of the response, ``instruction_version``, ``instruction``,
    ``response``) with the people's say: an edit's text replaces the generated text; ``human_reject`` is true when
    the newest review of this response, or of any response to the same pair, rejects it; ``review`` names the review
    that decided (id, label, reviewer) or is NULL. Without reviews: the rows unchanged, the two columns NULL."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    review_type = T.StructType([T.StructField(n, T.StringType()) for n in ("review_id", "label", "reviewer")])
    if reviews is None:
        return pairs.withColumn("human_reject", F.lit(None).cast("boolean")).withColumn(
            "review", F.lit(None).cast(review_type)
        )
    own = latest(reviews).select(
        "doc_id", "step_version", F.col("instruction").alias("_edit_i"), F.col("response").alias("_edit_r"),
        F.struct("review_id", "label", "reviewer").alias("review"),
    )  # fmt: skip
    pair = rejected_pairs(reviews).select("doc_id", F.col("instruction_version").alias("_iv"),
                                          F.lit(True).alias("_pair_rejected"))  # fmt: skip
    # the pair's backtranslation: the filter's record of it, or (answers to every instruction) the input run itself
    iv = (
        F.coalesce("instruction_version", "source_version")
        if "source_version" in pairs.columns
        else F.col("instruction_version")
    )
    out = (
        pairs.withColumn("_iv", iv).join(own, ["doc_id", "step_version"], "left").join(pair, ["doc_id", "_iv"], "left")
    )
    edited = F.col("review.label") == "edit"
    return (
        out.withColumn(
            "instruction", F.when(edited, F.coalesce("_edit_i", "instruction")).otherwise(F.col("instruction"))
        )
        .withColumn("response", F.when(edited, F.coalesce("_edit_r", "response")).otherwise(F.col("response")))
        .withColumn(
            "human_reject",
            F.coalesce(F.col("review.label") == "reject", F.lit(False)) | F.coalesce("_pair_rejected", F.lit(False)),
        )
        .drop("_edit_i", "_edit_r", "_pair_rejected", "_iv")
    )


def digest(reviews: Any) -> str:
    """A hash of the newest reviews: a new label, edit or change of mind makes a new export version."""
    from pyspark.sql import functions as F

    from backforth.contamination import content_hash

    fields = ("doc_id", "step_version", "label", "instruction_version", "instruction", "response")
    row = latest(reviews).agg(F.count("*").alias("n"), content_hash(F.concat_ws("|", *fields)).alias("h")).first()
    return f"{row['n']}:{row['h']}"
