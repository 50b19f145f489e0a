"""Export the final dataset: responses (+ pairs_filtered, docs_raw) → sft_pairs, JSONL + Parquet files, a dataset card.

Input: accepted responses of one run of ``kind`` (``rewrite`` by default; ``distill`` for the baseline): the newest
finished one, or the step version ``input_version`` pins. Output: ``sft_pairs`` (key ``pair_id``, the exported pair's
id; rows of other export versions are kept) and, under ``output_dir``, ``jsonl/{train,validation}/*.json`` and
``parquet/{train,validation}/*.parquet`` with a ``messages`` column (chat format: user, assistant) that
``datasets.load_dataset("json" | "parquet", data_files=...)`` reads as they are, plus ``README.md``, a dataset card
with the funnel of the run (backforth.catalog). The papers' tag is appended to each generated instruction ("Answer
with knowledge from web search."). The split is a hash of the pair id: stable across re-runs and machines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backforth import catalog, crash, lineage
from backforth.catalog import ACCEPTED_RESPONSE
from backforth.config import ConfigError
from backforth.engines import load_profile
from backforth.hashing import fingerprint
from backforth.keep import keep
from backforth.lineage import InputRef, StepRun
from backforth.registry import JobResult, job
from backforth.tables import ensure_table, qualify, table_exists, table_version

log = logging.getLogger("backforth.export")
WEB_TAG = "Answer with knowledge from web search."


@dataclass
class ExportConfig:
    input_docs_table: str = "docs_raw"
    output_table: str = "sft_pairs"
    kind: str = "rewrite"  # rewrite | distill
    input_version: str | None = None  # the responses' step_version; null = the newest finished run of `kind`
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
        pairs.select("doc_id", F.col("step_version").alias("source_version"), "score", "instruction_version"),
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
            F.col("step_version").alias("response"),
        ).alias("step_versions"),
        F.col("model.profile").alias("model"),
        F.lit(version).alias("step_version"),
        F.current_timestamp().alias("exported_at"),
    )


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
    upstream = lineage.resolve(spark, settings, cfg.kind, cfg.input_version)
    runs = lineage.chain(spark, settings, upstream)
    source = upstream.output_table or qualify(settings, "responses")
    inputs = [InputRef(source, cfg.kind, upstream.step_version, table_version(spark, source))]
    responses = spark.table(source).where(F.col("step_version") == upstream.step_version)
    filtered = runs.get("filter")
    if filtered is not None and filtered.output_table and table_exists(spark, filtered.output_table):
        pairs = spark.table(filtered.output_table)
        inputs.append(InputRef(filtered.output_table, "filter", filtered.step_version,
                               table_version(spark, filtered.output_table)))  # fmt: skip
    else:  # answers to every instruction (input: all): no filter scores to carry
        pairs = spark.createDataFrame([], catalog.table("pairs_filtered").schema())
    docs_fqn = qualify(settings, cfg.input_docs_table)
    docs = spark.table(docs_fqn)
    inputs.append(InputRef(docs_fqn, table_version=table_version(spark, docs_fqn)))
    body = {"input": upstream.step_version, "tag": cfg.tag, "validation_fraction": cfg.validation_fraction}
    export_version = f"export-{fingerprint(body, 8)}"
    rows = keep(export_rows(responses, pairs, docs, cfg, export_version))
    target = qualify(settings, cfg.output_table)
    ensure_table(spark, target, rows.schema)
    rows.writeTo(target).overwrite(F.col("step_version") == export_version)  # atomic; other versions stay
    crash.point("export.after_table")
    out_dir = Path(cfg.output_dir or settings.data_path / "export" / cfg.kind).resolve()
    files = rows.drop("exported_at")
    splits = {r["split"]: r["count"] for r in files.groupBy("split").count().collect()}
    for split in ("train", "validation"):
        part = files.where(F.col("split") == split)
        if cfg.files_per_split:
            part = part.coalesce(cfg.files_per_split)
        part.write.mode("overwrite").json(str(out_dir / "jsonl" / split))
        if split == "train":
            crash.point("export.after_jsonl")
        part.write.mode("overwrite").parquet(str(out_dir / "parquet" / split))
    this = StepRun("export", step_version=export_version, output_table=target, params={"kind": cfg.kind})
    counts = catalog.counts(catalog.funnel(spark, settings, {**runs, "export": this}))
    names = [r[0] for r in responses.select("model.profile").distinct().collect()]
    note = " ".join(sorted({n for n in (profile_note(name) for name in names if name) if n}))
    (out_dir / "README.md").write_text(dataset_card(counts, splits, cfg, export_version, note), encoding="utf-8")
    exported = sum(splits.values())
    log.info("exported %d pairs (%s) to %s", exported, splits, out_dir)
    metrics = {"pairs_exported": exported, **{f"split.{k}": v for k, v in splits.items()}}
    metrics.update({f"stage.{k.replace(' ', '_')}": v for k, v in counts.items()})
    this.inputs, this.rows_in, this.rows_out = inputs, responses.count(), exported
    tags = {"backforth.export_dir": str(out_dir), "backforth.export_version": export_version}
    return JobResult(metrics, tags=tags, lineage=this)


def profile_note(name: str) -> str | None:
    """The note of model profile ``name`` (what its output is good for), or None where it cannot be loaded."""
    try:
        return load_profile(name).note
    except ConfigError:
        return None
