"""The table catalog: every table backforth writes, with its key, schema, writer, and what "kept" means.

One source for every count people read: the funnel of :func:`funnel` is what ``backforth pipeline`` prints, what the
dataset card lists, what the report draws and what the notebooks show. A stage's rows are those of its table (at the
step version of the run being described, for versioned tables) inside ``scope``; its kept rows satisfy ``kept``; the
others are grouped by ``reason``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backforth.table_schemas import (
    _dedup_signatures,
    _docs_clean,
    _docs_dedup,
    _docs_raw,
    _eval_verdicts,
    _ingest_rejects,
    _instructions,
    _pairs_filtered,
    _responses,
    _reviews,
    _scores,
    _sft_pairs,
    _step_runs,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

    from backforth.config import Settings
    from backforth.lineage import StepRun

ACCEPTED_RESPONSE = ("ok", "ok_unclosed", "ok_untagged")  # response statuses that count as an answer
SEED_KIND = "seed"  # sft_pairs.kind of the human-written seed pairs mixed into a training set
WEB_TAG = "Answer with knowledge from web search."  # the papers' tags, appended to instructions: generated pairs
SEED_TAG = "Answer in the style of an AI Assistant."  # ... and seed pairs (and the questions a trained model is asked)
# docs_dedup rows whose signature dedup_signatures holds: every exact-duplicate survivor (kept, or a near duplicate)
SIGNED = "is_kept OR dup_reason = 'dup_minhash'"


@dataclass(frozen=True)
class Table:
    """One table: ``key`` identifies a row (with ``step_version`` for versioned tables), ``schema`` builds its
    StructType, ``writers`` are the steps that write it; a funnel stage has a ``stage`` label."""

    name: str
    key: tuple[str, ...]
    schema: Callable[[], StructType]
    writers: tuple[str, ...]
    stage: str | None = None  # funnel label of the kept rows (None: not a funnel stage)
    kept: str = "true"  # SQL: the rows that go on to the next stage
    reason: str | None = None  # SQL: why a row in scope was not kept
    scope: str = "true"  # SQL: the rows the stage counts at all (e.g. matched pairs, not the judge's controls)
    versioned: bool = False  # rows carry ``step_version``; a run's stage reads one version
    replaces: bool = False  # a run replaces its version's rows (else it appends them, possibly over several runs)
    description: str = ""
    # columns added to the table after it first shipped, with their SQL type: a table written before them (its step
    # adds them on its next write) reads NULL there, so counts and checks work on it as they are
    added: tuple[tuple[str, str], ...] = ()


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(
            "docs_raw",
            ("doc_id",),
            _docs_raw,
            ("ingest",),
            stage="documents ingested",
            description="every readable document, with its source",
        ),
        Table(
            "ingest_rejects",
            ("file", "position", "reason"),
            _ingest_rejects,
            ("ingest",),
            description="inputs that could not be read, with the reason",
        ),
        Table(
            "docs_clean",
            ("doc_id",),
            _docs_clean,
            ("clean",),
            stage="kept after cleaning",
            kept="drop_reason IS NULL",
            reason="drop_reason",
            description="normalised text and quality stats",
        ),
        Table(
            "docs_dedup",
            ("doc_id",),
            _docs_dedup,
            ("dedup",),
            stage="kept after dedup",
            kept="is_kept",
            reason="dup_reason",
            description="near-duplicate clusters and the kept document of each",
        ),
        Table(
            "dedup_signatures",
            ("doc_id",),
            _dedup_signatures,
            ("dedup",),
            description="MinHash signature of each exact-duplicate survivor, for later batches",
        ),
        Table(
            "instructions",
            ("doc_id",),
            _instructions,
            ("backtranslate",),
            stage="instructions accepted",
            kept="instruction IS NOT NULL",
            reason="coalesce(CASE WHEN error IS NOT NULL THEN 'engine_error' END, reject_reason)",
            versioned=True,
            description="the instruction each kept document answers",
        ),
        Table(
            "scores",
            ("doc_id", "pair_kind"),
            _scores,
            ("score",),
            stage="pairs with a valid score",
            kept="valid",
            reason="coalesce(invalid_reason, 'no_score')",
            scope="pair_kind = 'matched'",
            versioned=True,
            description="the judge's 5-point score of each (instruction, document) pair",
        ),
        Table(
            "pairs_filtered",
            ("doc_id",),
            _pairs_filtered,
            ("filter",),
            stage="pairs kept by the filter",
            kept="drop_reason IS NULL",  # human_reject: people rejected the pair in `backforth review`
            reason="drop_reason",
            added=(("drop_reason", "string"),),
            versioned=True,
            replaces=True,
            description="the pairs a filter rule kept",
        ),
        Table(
            "responses",
            ("doc_id",),
            _responses,
            ("rewrite", "distill"),
            stage="responses accepted",
            kept=f"status IN {ACCEPTED_RESPONSE}",
            reason="status",
            versioned=True,
            description="assistant answers: rewritten documents or distilled answers",
        ),
        Table(
            "sft_pairs",
            ("pair_id",),
            _sft_pairs,
            ("export",),
            stage="pairs exported",
            kept="drop_reason IS NULL",
            reason="drop_reason",
            scope="kind <> 'seed'",  # the funnel follows generated pairs; seed pairs are counted on the card
            added=(("drop_reason", "string"),),
            versioned=True,
            replaces=True,
            description="the training set: exported generated pairs, the seed pairs mixed in, and dropped pairs",
        ),
        Table(
            "eval_verdicts",
            ("item_id",),
            _eval_verdicts,
            ("evaluate",),
            versioned=True,
            replaces=True,
            description="pairwise judgements of two fine-tuned models' answers to held-out instructions",
        ),
        Table(
            "reviews",
            ("review_id",),
            _reviews,
            ("review",),
            description="people's labels and edits of pairs (`backforth review`), honoured by filter and export",
        ),
        Table("step_runs", ("run_id",), _step_runs, ("*",), description="lineage: one row per step run"),
    ]  # fmt: skip
}
FUNNEL = [name for name, t in TABLES.items() if t.stage]


@dataclass(frozen=True)
class Reference:
    """Rows of ``table`` (those ``where`` selects) that must each have a row in one of ``parents`` (those
    ``parent_where`` selects) matching ``on``, SQL over the row (``c``) and the other's (``p``): what a step read is
    still there. ``restore`` is the command that writes missing parent rows again, where one exists."""

    table: str
    parents: tuple[str, ...]
    on: str
    what: str  # the invariant, in words
    where: str = "true"
    parent_where: str = "true"
    restore: str | None = None
    deletable: bool = True  # deleting the rows that break it repairs it (not a decision later batches built on)


REFERENCES = [
    Reference("docs_clean", ("docs_raw",), "c.doc_id = p.doc_id", "every cleaned document has its docs_raw row",
              restore="backforth ingest --set job.reprocess=true"),
    Reference("docs_dedup", ("docs_clean",), "c.doc_id = p.doc_id",
              "every deduplicated document has its docs_clean row", restore="backforth clean"),
    Reference("docs_dedup", ("dedup_signatures",), "c.doc_id = p.doc_id",
              "every kept (or near-duplicate) document has its signature in dedup_signatures", where=SIGNED,
              restore="backforth dedup", deletable=False),
    Reference("dedup_signatures", ("docs_dedup",), "c.doc_id = p.doc_id",
              "every signature belongs to a kept (or near-duplicate) document of docs_dedup", parent_where=SIGNED),
    Reference("instructions", ("docs_dedup",), "c.doc_id = p.doc_id",
              "every instruction belongs to a document dedup kept", parent_where="is_kept"),
    Reference("scores", ("instructions",), "c.doc_id = p.doc_id AND c.instruction_version = p.step_version",
              "every score has the instruction it judged"),
    Reference("pairs_filtered", ("scores",), "c.doc_id = p.doc_id AND c.score_version = p.step_version",
              "every filtered pair has its score", parent_where="pair_kind = 'matched'"),
    Reference("responses", ("pairs_filtered", "instructions"),
              "c.doc_id = p.doc_id AND c.source_version = p.step_version",
              "every response has the pair (or instruction) it answers"),
    Reference("sft_pairs", ("responses",), "c.doc_id = p.doc_id AND c.step_versions.response = p.step_version",
              "every exported generated pair has its response", where="kind <> 'seed'"),
]  # fmt: skip


def table(name: str) -> Table:
    return TABLES[name]


def written_by(step: str) -> Table | None:
    """The funnel table a step writes (None for steps outside the funnel)."""
    return next((t for t in TABLES.values() if step in t.writers and t.stage), None)


@dataclass
class Stage:
    """One funnel stage of one run: rows in scope, rows kept, and the others by reason."""

    label: str
    table: str
    step_version: str | None
    rows: int
    kept: int
    reasons: dict[str, int] = field(default_factory=dict)


def stage_rows(spark: SparkSession, fqn: str, entry: Table, step_version: str | None) -> Any:
    """(stage, reason, n) rows of one table: rows in scope, grouped by why they were not kept (NULL = kept)."""
    from pyspark.sql import functions as F

    df = spark.table(fqn)
    for name, sql_type in entry.added:
        if name not in df.columns:
            df = df.withColumn(name, F.lit(None).cast(sql_type))
    df = df.where(F.expr(entry.scope))
    if entry.versioned and step_version is not None:
        df = df.where(F.col("step_version") == step_version)
    why = F.when(~F.expr(entry.kept), F.expr(entry.reason) if entry.reason else F.lit("dropped"))
    return df.groupBy(F.lit(entry.name).alias("stage"), why.cast("string").alias("r")).agg(F.count("*").alias("n"))


def funnel(spark: SparkSession, settings: Settings, runs: dict[str, StepRun] | None = None) -> list[Stage]:
    """The stages of one run (``runs`` = ``{step: run}`` from :func:`backforth.lineage.chain`; None = the newest
    finished export's chain). Unversioned tables count whole; a versioned table counts the version of the run that
    wrote it, or is left out when that step is not in the chain. One Spark job for every count."""
    from backforth import lineage
    from backforth.tables import qualify, table_exists

    if runs is None:
        end = lineage.newest(spark, settings, ["export", "rewrite", "distill", "filter", "score", "backtranslate"])
        runs = lineage.chain(spark, settings, end) if end is not None else {}
    parts, versions = [], {}
    for name in FUNNEL:
        entry = TABLES[name]
        run = next((r for step, r in runs.items() if step in entry.writers), None) if entry.versioned else None
        if entry.versioned and run is None:
            continue
        fqn = run.output_table if run is not None and run.output_table else qualify(settings, name)
        if table_exists(spark, fqn):
            versions[name] = run.step_version if run is not None else None
            parts.append(stage_rows(spark, fqn, entry, versions[name]))
    if not parts:
        return []
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    found: dict[str, dict[str | None, int]] = {}
    for row in union.collect():
        found.setdefault(row["stage"], {})[row["r"]] = int(row["n"])
    out = []
    for name in versions:
        groups = found.get(name, {})
        total, reasons = sum(groups.values()), {r: n for r, n in groups.items() if r is not None}
        out.append(
            Stage(TABLES[name].stage or name, name, versions[name], total, total - sum(reasons.values()), reasons)
        )
    return out


def counts(stages: list[Stage]) -> dict[str, int]:
    """``{stage label: kept rows}``: the table the card, the summary and the notebooks print."""
    return {s.label: s.kept for s in stages}
