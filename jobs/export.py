"""Export the training set: responses (+ pairs_filtered, docs_raw) and seed_pairs → sft_pairs, JSONL + Parquet files,
a dataset card, and nested subsets of given sizes.

Input: accepted responses of one run of ``kind`` (``rewrite`` by default; ``distill`` for the baseline): the newest
finished one, or the step version ``input_version`` pins; and, as in the papers, the human-written seed pairs
(``seed_pairs``, from ``backforth seed``). Each pair's user message ends with its tag: generated pairs "Answer with
knowledge from web search.", seed pairs "Answer in the style of an AI Assistant." (both configurable), so a model
trained on the mixture can be asked for either style. ``seed.share`` sets the seed pairs' share of each set (null:
every seed pair in every set, as the papers mix them).

Output: ``sft_pairs`` (key ``pair_id``; rows of other export versions are kept) holds every candidate pair of this
export version: kept ones (``drop_reason`` NULL) with their ``rank`` (1 = best: highest judge score, then a hash of the
pair id) and ``subsets`` (the sizes whose subset holds them); dropped ones with their reason (``contaminated``: a
13-word run shared with a benchmark prompt, the benchmark and the words in ``contamination``). Under ``output_dir``
(default ``<data_dir>/export/<name>``): ``jsonl/{train,validation}/*.json`` and ``parquet/{train,validation}/*.parquet``
with a ``messages`` column (chat format: user, assistant) that ``datasets.load_dataset("json" | "parquet",
data_files=...)`` reads as they are, and ``README.md``, a dataset card with the mixture and the run's funnel
(backforth.catalog). ``sizes: [12800, 25600]`` adds ``subsets/<size>/`` folders laid out the same way: the ``size``
best generated pairs (nested: each subset holds the smaller ones) with the seed pairs the mixture gives them. The
split is a hash of the pair id: stable across re-runs, machines and subsets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backforth import catalog, contamination, crash, lineage
from backforth import reviews as review_table
from backforth.catalog import ACCEPTED_RESPONSE, SEED_KIND, SEED_TAG, WEB_TAG
from backforth.config import ConfigError
from backforth.contamination import DecontaminationConfig
from backforth.dataset_card import dataset_card, push
from backforth.engines import load_profile
from backforth.hashing import fingerprint
from backforth.keep import keep, release
from backforth.lineage import InputRef, StepRun
from backforth.registry import JobResult, job
from backforth.tables import add_missing_columns, ensure_table, qualify, table_exists, table_version

log = logging.getLogger("backforth.export")


@dataclass
class SeedMix:
    include: bool = True  # mix the seed pairs in, as the papers do; false = generated pairs only
    required: bool = False  # true: no seed_pairs table is an error; false: a warning, and the set has no seed pairs
    table: str = "seed_pairs"
    tag: str | None = SEED_TAG  # appended to seed instructions; null = none
    share: float | None = None  # seed pairs' share of each set (0 <= share < 1); null = every seed pair in every set


@dataclass
class ExportConfig:
    input_docs_table: str = "docs_raw"
    output_table: str = "sft_pairs"
    kind: str = "rewrite"  # rewrite | distill
    input_version: str | None = None  # the responses' step_version; null = the newest finished run of `kind`
    name: str | None = None  # the training set's name: its folder under <data_dir>/export/; null = the kind
    tag: str | None = WEB_TAG  # appended to generated instructions (the papers' tag); null = none
    seed: SeedMix = field(default_factory=SeedMix)
    sizes: list[int] = field(default_factory=list)  # nested subsets: this many generated pairs each (+ their seeds)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    validation_fraction: float = 0.05
    output_dir: str | None = None  # null = <data_dir>/export/<name>
    files_per_split: int | None = 1  # null = one file per Spark partition (large runs)
    license: str = "other"  # the card's license id; web text keeps its own terms: set it when you know them
    languages: list[str] = field(default_factory=lambda: ["en"])  # the card's language codes
    push_to_hub: str | None = None  # org/name: upload the set (files, cards, subsets) as a Hub dataset repository
    hub_private: bool = True  # a new repository is private
    hub_token_env: str = "HF_TOKEN"  # the environment variable holding a write token (never logged or stored)


def export_dir(settings: Any, cfg: ExportConfig) -> Path:
    """Where the training set's files go."""
    return Path(cfg.output_dir or settings.data_path / "export" / (cfg.name or cfg.kind)).resolve()


def chat(user: Any, assistant: Any) -> Any:
    from pyspark.sql import functions as F

    return F.array(
        F.struct(F.lit("user").alias("role"), user.alias("content")),
        F.struct(F.lit("assistant").alias("role"), assistant.alias("content")),
    ).cast("array<struct<role:string,content:string>>")  # nullable fields: Delta rejects NOT NULL in arrays


def tagged(instruction: Any, tag: str | None) -> Any:
    from pyspark.sql import functions as F

    return F.concat_ws("\n\n", instruction, F.lit(tag)) if tag else instruction


def split_of(pair_id: Any, fraction: float) -> Any:
    """train / validation from a hash of the pair id (stable across runs, machines and subsets)."""
    from pyspark.sql import functions as F

    bucket = F.pmod(F.xxhash64(pair_id), F.lit(10000))
    return F.when(bucket < int(fraction * 10000), "validation").otherwise("train")


def export_rows(responses: Any, pairs: Any, docs: Any, cfg: ExportConfig, version: str, reviews: Any = None) -> Any:
    """Pure transformation: accepted responses → sft_pairs rows with messages, provenance and split; people's reviews
    (backforth.reviews) replace edited text and mark rejected pairs (``human_reject``)."""
    from pyspark.sql import functions as F

    accepted = responses.where(F.col("status").isin(*ACCEPTED_RESPONSE))
    pair_id = F.sha2(F.concat_ws("|", "doc_id", "kind", "step_version"), 256).substr(1, 24)
    joined = accepted.alias("r").join(
        pairs.select("doc_id", F.col("step_version").alias("source_version"), "score", "instruction_version"),
        ["doc_id", "source_version"],
        "left",
    )
    joined = review_table.apply(joined.join(docs.select("doc_id", "url", "source"), "doc_id", "left"), reviews)
    return joined.select(
        pair_id.alias("pair_id"),
        chat(tagged(F.col("instruction"), cfg.tag), F.col("response")).alias("messages"),
        "instruction",
        "response",
        "kind",
        split_of(pair_id, cfg.validation_fraction).alias("split"),
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
        F.lit(cfg.tag).cast("string").alias("tag"),
        "review",
        "human_reject",
    )


def seed_rows(seeds: Any, cfg: ExportConfig, version: str) -> Any:
    """Pure transformation: seed_pairs → sft_pairs rows (kind ``seed``, the seed tag, no document)."""
    from pyspark.sql import functions as F

    pair_id = F.sha2(F.concat_ws("|", F.lit(SEED_KIND), "pair_id"), 256).substr(1, 24)
    none = F.lit(None).cast("string")
    return seeds.select(
        pair_id.alias("pair_id"),
        chat(tagged(F.col("instruction"), cfg.seed.tag), F.col("response")).alias("messages"),
        "instruction",
        "response",
        F.lit(SEED_KIND).alias("kind"),
        split_of(pair_id, cfg.validation_fraction).alias("split"),
        none.alias("doc_id"),
        none.alias("url"),
        "source",
        F.lit(None).cast("int").alias("score"),
        F.lit(None).cast("struct<backtranslate:string,input:string,response:string>").alias("step_versions"),
        none.alias("model"),
        F.lit(version).alias("step_version"),
        F.current_timestamp().alias("exported_at"),
        F.lit(cfg.seed.tag).cast("string").alias("tag"),
    )


def seed_quota(generated: int, seeds: int, share: float | None) -> int:
    """Seed pairs in a set of ``generated`` generated pairs: all of them (``share`` None), else as many as make
    them ``share`` of the set, at most the ``seeds`` there are.

    >>> seed_quota(300, 100, None), seed_quota(300, 100, 0.25), seed_quota(300, 50, 0.25), seed_quota(0, 9, 0.5)
    (100, 100, 50, 0)
    """
    if share is None:
        return seeds
    return min(seeds, round(generated * share / (1 - share)))


def ranked(rows: Any, sizes: list[int], quotas: dict[int, int], full_quota: int) -> Any:
    """``rows`` (with ``drop_reason``) + ``rank`` within generated and within seed pairs (kept rows only; best score
    first, then a hash of the pair id) and ``subsets`` (the sizes whose subset holds the row); seed pairs beyond the
    full set's quota are left out."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    is_seed = F.col("kind") == SEED_KIND
    order = Window.partitionBy(is_seed, F.col("drop_reason").isNull()).orderBy(
        F.col("score").desc_nulls_last(), F.xxhash64("pair_id"), "pair_id"
    )
    rank = F.when(F.col("drop_reason").isNull(), F.row_number().over(order))
    out = rows.withColumn("rank", rank.cast("int"))
    bounds = F.array(*[F.struct(F.lit(n).alias("size"), F.lit(quotas[n]).alias("seeds")) for n in sizes])
    within = F.filter(bounds, lambda b: F.col("rank") <= F.when(is_seed, b["seeds"]).otherwise(b["size"]))
    out = out.withColumn("subsets", F.transform(within, lambda b: b["size"]).cast("array<int>") if sizes else
                         F.array().cast("array<int>"))  # fmt: skip
    return out.where(~is_seed | F.col("rank").isNull() | (F.col("rank") <= full_quota))


def mixture_counts(rows: Any) -> dict[str, dict[tuple[str, str], int]]:
    """``{set: {(origin, split): n}}`` over the kept rows; set ``all`` and one per size; origin generated | seed."""
    from pyspark.sql import functions as F

    kept = rows.where(F.col("drop_reason").isNull())
    origin = F.when(F.col("kind") == SEED_KIND, "seed").otherwise("generated").alias("origin")
    sets = F.explode(F.array_union(F.array(F.lit("all")), F.transform("subsets", lambda n: n.cast("string"))))
    out: dict[str, dict[tuple[str, str], int]] = {}
    for r in kept.select(sets.alias("set"), origin, "split").groupBy("set", "origin", "split").count().collect():
        out.setdefault(r["set"], {})[(r["origin"], r["split"])] = int(r["count"])
    return out


@job("export", config=ExportConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Write the accepted responses and the seed pairs as a training set: a Delta table, JSONL and Parquet files, a
    dataset card, and nested subsets."""
    from pyspark.sql import functions as F

    cfg: ExportConfig = settings.job
    check_config(cfg)
    token = hub_token(cfg)  # before any work: a push without a token fails now, not after the export
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
    seeds, seed_note = read_seeds(spark, settings, cfg, inputs)
    reviews = review_table.read(spark, settings, inputs)  # the people's labels decide the output too
    prompts = contamination.read_benchmarks(spark, cfg.decontamination)
    benchmarks = contamination.describe(prompts) if prompts is not None else {}
    body = {"input": upstream.step_version, "tag": cfg.tag, "validation_fraction": cfg.validation_fraction,
            "seed": None if seeds is None else {"pairs": seed_digest(seeds), "tag": cfg.seed.tag,
                                                "share": cfg.seed.share},
            "sizes": sorted(cfg.sizes), "benchmarks": benchmarks, "ngram": cfg.decontamination.ngram}  # fmt: skip
    if reviews is not None:
        body["reviews"] = review_table.digest(reviews)
    if seeds is None and not cfg.sizes and not benchmarks and reviews is None:
        body = {k: body[k] for k in ("input", "tag", "validation_fraction")}  # the version of exports before mixing
    export_version = f"export-{fingerprint(body, 8)}"
    rows = export_rows(responses, pairs, docs, cfg, export_version, reviews)
    if seeds is not None:
        rows = rows.unionByName(seed_rows(seeds, cfg, export_version), allowMissingColumns=True)
    rows = contamination.scan(spark, rows, cfg.decontamination, prompts)
    reason = F.coalesce(F.when(F.col("human_reject"), review_table.HUMAN_REJECT),
                        F.when(F.col("contamination").isNotNull(), "contaminated"))  # fmt: skip
    rows = keep(rows.withColumn("drop_reason", reason).drop("human_reject"))
    available = {r["seedy"]: int(r["count"]) for r in rows.where(F.col("drop_reason").isNull())
                 .groupBy((F.col("kind") == SEED_KIND).alias("seedy")).count().collect()}  # fmt: skip
    generated, seed_total = available.get(False, 0), available.get(True, 0)
    sizes = sorted({n for n in cfg.sizes if n <= generated})
    skipped = sorted({n for n in cfg.sizes if n > generated})
    if skipped:
        log.warning("sizes %s not written: only %d generated pairs were kept", skipped, generated)
    quotas = {n: seed_quota(n, seed_total, cfg.seed.share) for n in sizes}
    final = keep(ranked(rows, sizes, quotas, seed_quota(generated, seed_total, cfg.seed.share)))
    release(rows)
    target = qualify(settings, cfg.output_table)
    ensure_table(spark, target, final.schema)
    add_missing_columns(spark, target, final.schema)  # a table written before training sets had these columns
    final.writeTo(target).overwrite(F.col("step_version") == export_version)  # atomic; other versions stay
    crash.point("export.after_table")
    out_dir = export_dir(settings, cfg)
    files = final.where(F.col("drop_reason").isNull()).drop("exported_at", "drop_reason", "contamination")
    mixture = mixture_counts(final)
    dropped = {r["drop_reason"]: int(r["count"]) for r in
               final.where(F.col("drop_reason").isNotNull()).groupBy("drop_reason").count().collect()}  # fmt: skip
    this = StepRun("export", step_version=export_version, output_table=target, params={"kind": cfg.kind})
    counts = catalog.counts(catalog.funnel(spark, settings, {**runs, "export": this}))
    names = [r[0] for r in responses.select("model.profile").distinct().collect()]
    note = " ".join(sorted({n for n in (profile_note(name) for name in names if name) if n}))
    for size in [None, *sizes]:
        folder = out_dir if size is None else out_dir / "subsets" / str(size)
        part = files if size is None else files.where(F.array_contains("subsets", size))
        write_files(part, folder, cfg.files_per_split, crash_points=size is None)
        card = dataset_card(counts, mixture.get("all" if size is None else str(size), {}), cfg, export_version, note,
                            size, dropped if size is None else None, seed_note)  # fmt: skip
        (folder / "README.md").write_text(card, encoding="utf-8")
    release(final)
    if cfg.push_to_hub:
        push(out_dir, cfg.push_to_hub, cfg.hub_private, token, export_version)
    full = mixture.get("all", {})
    splits = {s: sum(v for (_, sp), v in full.items() if sp == s) for s in ("train", "validation")}
    exported = sum(v for (o, _), v in full.items() if o == "generated")
    seeded = sum(v for (o, _), v in full.items() if o == "seed")
    log.info("exported %d generated + %d seed pairs (%s) to %s%s", exported, seeded, splits, out_dir,
             f"; subsets {sizes}" if sizes else "")  # fmt: skip
    metrics: dict[str, float] = {
        "pairs_exported": exported,
        "seed_pairs_exported": seeded,
        "rows_exported": exported + seeded,
        **{f"split.{k}": v for k, v in splits.items()},
    }
    metrics.update({f"dropped.{k}": v for k, v in dropped.items()})
    for size in sizes:
        metrics[f"subset.{size}.rows"] = sum(mixture.get(str(size), {}).values())
    metrics.update({f"stage.{k.replace(' ', '_')}": v for k, v in counts.items()})
    this.inputs, this.rows_in, this.rows_out = inputs, responses.count(), exported + seeded
    tags = {"backforth.export_dir": str(out_dir), "backforth.export_version": export_version}
    if skipped:
        tags["backforth.sizes_skipped"] = ",".join(map(str, skipped))
    return JobResult(metrics, tags=tags, lineage=this)


def check_config(cfg: ExportConfig) -> None:
    """Settings the job cannot work with fail before anything runs, the key named."""
    share = cfg.seed.share
    if share is not None and not 0 <= share < 1:
        raise ConfigError(f"export.seed.share={share}: expected a share in [0, 1) (or null: every seed pair)")
    if any(not isinstance(n, int) or n < 1 for n in cfg.sizes):
        raise ConfigError(f"export.sizes={cfg.sizes}: expected positive whole numbers of generated pairs")
    if not 0 <= cfg.validation_fraction < 1:
        raise ConfigError(f"export.validation_fraction={cfg.validation_fraction}: expected a share in [0, 1)")
    cfg.decontamination.named()


def read_seeds(spark: Any, settings: Any, cfg: ExportConfig, inputs: list[InputRef]) -> tuple[Any, str]:
    """The seed pairs to mix in (None: none), recorded in ``inputs``; and a sentence for the card when they are
    missing."""
    from backforth.errors import MissingInputError

    if not cfg.seed.include:
        return None, "Seed pairs were not mixed in (export.seed.include=false)."
    fqn = qualify(settings, cfg.seed.table)
    if not table_exists(spark, fqn):
        if cfg.seed.required:
            raise MissingInputError(f"{fqn} is missing (export.seed.required=true)", "seed")
        log.warning("%s is missing: the training set has no seed pairs (run `backforth seed` to mix them in)", fqn)
        return None, f"No seed pairs: {fqn} did not exist when this set was exported (`backforth seed` makes it)."
    inputs.append(InputRef(fqn, table_version=table_version(spark, fqn)))
    return spark.table(fqn), ""


def hub_token(cfg: ExportConfig) -> str | None:
    """The Hub write token for ``push_to_hub`` (None when not pushing); a clear error when it is not set."""
    import os

    from backforth.errors import UserError

    if not cfg.push_to_hub:
        return None
    if cfg.push_to_hub.count("/") != 1:
        raise ConfigError(f"export.push_to_hub={cfg.push_to_hub}: expected <org or user>/<name>")
    token = os.environ.get(cfg.hub_token_env)
    if not token:
        raise UserError(f"export.push_to_hub={cfg.push_to_hub}: no token in ${cfg.hub_token_env}; create a write "
                        f"token on the Hub and export it there (it is read from the environment only)")  # fmt: skip
    return token


def seed_digest(seeds: Any) -> str:
    """How many seed pairs there are and an order-free hash of their ids (one Spark job): the export version changes
    when the seed set does, not when seed_pairs merely gets a new Delta version."""
    from pyspark.sql import functions as F

    row = seeds.agg(F.count("*").alias("n"), contamination.content_hash(F.col("pair_id")).alias("h")).first()
    return f"{row['n']}:{row['h']}"


def write_files(rows: Any, folder: Path, files_per_split: int | None, crash_points: bool = False) -> None:
    """``rows`` as ``jsonl/<split>/`` and ``parquet/<split>/`` under ``folder`` (each replaced whole)."""
    from pyspark.sql import functions as F

    for split in ("train", "validation"):
        part = rows.where(F.col("split") == split)
        if files_per_split:
            part = part.coalesce(files_per_split)
        part.write.mode("overwrite").json(str(folder / "jsonl" / split))
        if split == "train" and crash_points:
            crash.point("export.after_jsonl")
        part.write.mode("overwrite").parquet(str(folder / "parquet" / split))


def profile_note(name: str) -> str | None:
    """The note of model profile ``name`` (what its output is good for), or None where it cannot be loaded."""
    try:
        return load_profile(name).note
    except ConfigError:
        return None
