"""Export the final dataset: responses (+ pairs_filtered, docs_raw) → sft_pairs, JSONL + Parquet files, a dataset card.

Input: accepted responses of one kind (``rewrite`` by default; ``distill`` for the baseline) of one step version
(default: the newest). Output: ``sft_pairs`` (key ``pair_id``; rows of other export versions are kept) and, under
``output_dir``, ``jsonl/{train,validation}/*.json`` and ``parquet/{train,validation}/*.parquet`` with a ``messages``
column (chat format: user, assistant) that ``datasets.load_dataset("json" | "parquet", data_files=...)`` reads as
they are, plus ``README.md``, a dataset card with the counts of every stage. The papers' tag is appended to each
generated instruction ("Answer with knowledge from web search."). The split is a hash of the pair id: stable across
re-runs and machines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backforth.registry import JobResult, job
from backforth.tables import ensure_table, qualify, table_exists
from udfs.parsing import ACCEPTED_RESPONSE

log = logging.getLogger("backforth.export")
WEB_TAG = "Answer with knowledge from web search."


@dataclass
class ExportConfig:
    input_table: str = "responses"
    input_pairs_table: str = "pairs_filtered"
    input_docs_table: str = "docs_raw"
    output_table: str = "sft_pairs"
    kind: str = "rewrite"  # rewrite | distill
    input_step_version: str | None = None  # null = the newest responses of this kind
    tag: str | None = WEB_TAG  # appended to generated instructions (the papers' tag); null = none
    validation_fraction: float = 0.05
    output_dir: str | None = None  # null = <data_dir>/export/<kind>
    files_per_split: int | None = 1  # null = one file per Spark partition (large runs)


def export_rows(responses: Any, pairs: Any, docs: Any, cfg: ExportConfig, version: str) -> Any:
    """Pure transformation: accepted responses → sft_pairs rows with messages, provenance and split."""
    from pyspark.sql import functions as F

    accepted = responses.where(F.col("status").isin(*ACCEPTED_RESPONSE))
    user = F.concat_ws("\n\n", "instruction", F.lit(cfg.tag)) if cfg.tag else F.col("instruction")
    pair_id = F.sha2(F.concat_ws("|", "doc_id", "kind", "step_version"), 256).substr(1, 24)
    bucket = F.pmod(F.xxhash64(pair_id), F.lit(10000))
    joined = accepted.alias("r").join(
        pairs.select("doc_id", F.col("filter_version").alias("source_version"), "score", "instruction_version"),
        ["doc_id", "source_version"],
        "left",
    )
    joined = joined.join(docs.select("doc_id", "url", "source"), "doc_id", "left")
    return joined.select(
        pair_id.alias("pair_id"),
        F.array(
            F.struct(F.lit("user").alias("role"), user.alias("content")),
            F.struct(F.lit("assistant").alias("role"), F.col("response").alias("content")),
        )
        .cast("array<struct<role:string,content:string>>")  # nullable fields: Delta rejects NOT NULL in arrays
        .alias("messages"),
        "instruction",
        "response",
        "kind",
        F.when(bucket < int(cfg.validation_fraction * 10000), "validation").otherwise("train").alias("split"),
        "doc_id",
        "url",
        "source",
        "score",
        F.struct(
            F.col("instruction_version").alias("backtranslate"),
            F.col("source_version").alias("input"),
            F.col("step_version").alias(cfg.kind),
        ).alias("step_versions"),
        F.col("model.profile").alias("model"),
        F.lit(version).alias("export_version"),
        F.current_timestamp().alias("exported_at"),
    )


def stage_counts(spark: Any, settings: Any) -> dict[str, int]:
    """Rows per stage across the pipeline's tables (those that exist); LLM tables count their newest version only."""
    newest = "{col} = (SELECT {col} FROM {t} ORDER BY created_at DESC LIMIT 1)"
    stages = [
        ("documents ingested", "docs_raw", "true"),
        ("kept after cleaning", "docs_clean", "drop_reason IS NULL"),
        ("kept after dedup", "docs_dedup", "is_kept"),
        ("instructions accepted", "instructions",
         "instruction IS NOT NULL AND " + newest.format(col="step_version", t="{t}")),
        ("pairs with a valid score", "scores",
         "valid AND pair_kind = 'matched' AND " + newest.format(col="step_version", t="{t}")),
        ("pairs kept by the filter", "pairs_filtered", newest.format(col="filter_version", t="{t}")),
        ("responses accepted", "responses",
         "status IN ('ok', 'ok_unclosed', 'ok_untagged') AND kind = 'rewrite' AND "
         + newest.format(col="step_version", t="(SELECT * FROM {t} WHERE kind = 'rewrite')")),
    ]  # fmt: skip
    out = {}
    for label, table, where in stages:
        fqn = qualify(settings, table)
        if table_exists(spark, fqn):
            out[label] = int(spark.sql(f"SELECT count(*) FROM {fqn} WHERE {where.replace('{t}', fqn)}").collect()[0][0])
    return out


def dataset_card(counts: dict[str, int], splits: dict[str, int], cfg: ExportConfig, version: str, note: str) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())
    return f"""# backforth dataset ({cfg.kind})

Instruction-tuning pairs made with instruction back-and-forth translation by backforth: web documents were
backtranslated into instructions, judged, filtered, and the documents {
        "rewritten into" if cfg.kind == "rewrite" else "replaced by distilled"
    } assistant answers. Export version `{version}`.

**Model note.** {note or "See the MLflow runs for the models that produced these pairs."}

## Files
- `jsonl/train/*.json`, `jsonl/validation/*.json`: one JSON object per line with `messages` (user, assistant) and
  provenance fields; `datasets.load_dataset("json", data_files={{"train": "jsonl/train/*.json"}})`.
- `parquet/train/*.parquet`, `parquet/validation/*.parquet`: the same rows.

## Splits
| split | pairs |
|---|---|
| train | {splits.get("train", 0)} |
| validation | {splits.get("validation", 0)} |

## Counts per stage
| stage | rows |
|---|---|
{rows}

Each user message ends with the tag "{cfg.tag or ""}" (the papers' marker for generated pairs).
"""


@job("export", config=ExportConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Write the accepted responses as SFT pairs: a Delta table, JSONL and Parquet files, and a dataset card."""
    from pyspark.sql import functions as F

    cfg: ExportConfig = settings.job
    source = qualify(settings, cfg.input_table)
    if not table_exists(spark, source):
        raise ValueError(f"{source} is missing: run `backforth {cfg.kind}` first")
    responses = spark.table(source).where(F.col("kind") == cfg.kind)
    version = cfg.input_step_version
    if version is None:
        newest = responses.orderBy(F.col("created_at").desc()).select("step_version").limit(1).collect()
        if not newest:
            raise ValueError(f"{source} has no {cfg.kind} rows: nothing to export")
        version = newest[0][0]
    responses = responses.where(F.col("step_version") == version)
    pairs_fqn = qualify(settings, cfg.input_pairs_table)
    pairs = (
        spark.table(pairs_fqn)
        if table_exists(spark, pairs_fqn)
        else spark.createDataFrame([], "doc_id string, filter_version string, score int, instruction_version string")
    )
    docs = spark.table(qualify(settings, cfg.input_docs_table))
    export_version = f"export-{version}"
    rows = export_rows(responses, pairs, docs, cfg, export_version).localCheckpoint()
    target = qualify(settings, cfg.output_table)
    ensure_table(spark, target, rows.schema)
    rows.writeTo(target).overwrite(F.col("export_version") == export_version)  # atomic; other versions stay
    out_dir = Path(cfg.output_dir or settings.data_path / "export" / cfg.kind).resolve()
    files = rows.drop("exported_at")
    splits = {r["split"]: r["count"] for r in files.groupBy("split").count().collect()}
    for split in ("train", "validation"):
        part = files.where(F.col("split") == split)
        if cfg.files_per_split:
            part = part.coalesce(cfg.files_per_split)
        part.write.mode("overwrite").json(str(out_dir / "jsonl" / split))
        part.write.mode("overwrite").parquet(str(out_dir / "parquet" / split))
    counts = stage_counts(spark, settings)
    counts["pairs exported"] = sum(splits.values())
    from backforth.pipeline import profile_or_none

    names = [r[0] for r in responses.select("model.profile").distinct().collect()]
    profiles = [profile_or_none(n) for n in names if n]
    note = " ".join(sorted({p.note for p in profiles if p is not None and p.note}))
    (out_dir / "README.md").write_text(dataset_card(counts, splits, cfg, export_version, note), encoding="utf-8")
    log.info("exported %d pairs (%s) to %s", counts["pairs exported"], splits, out_dir)
    metrics = {"pairs_exported": counts["pairs exported"], **{f"split.{k}": v for k, v in splits.items()}}
    metrics.update({f"stage.{k.replace(' ', '_')}": v for k, v in counts.items()})
    return JobResult(metrics, tags={"backforth.export_dir": str(out_dir), "backforth.export_version": export_version})
