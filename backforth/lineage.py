"""Lineage as data: the ``step_runs`` Delta table, one row per step run, and the one resolver every step uses.

A row says which step ran (``step``, ``step_version``), what it read (``inputs``: table, the step and step version
that produced the rows it read, and the table's Delta version at that moment), what produced its rows (``model``,
``prompt``, ``sampling``), what it chose (``params``: a judge's mode, a response kind, a filter rule), how many rows
went in and out, the MLflow run, and when it started and finished. The runner writes the row when a step starts
(``status = running``) and completes it when the step ends (``finished`` or ``failed``); a killed step stays
``running``, which is how SQL shows it.

A step finds its input with :func:`resolve`: the newest *finished* run of the step it builds on, or the run of the
step version pinned with ``--set job.input_version=...``. Version strings are never parsed: everything a reader wants
to know about a version is a column of its run's row. :func:`chain` walks the inputs from one run back to the first
LLM step, which is what the funnel, the dataset card and the report read.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backforth.errors import MissingInputError, UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

    from backforth.config import Settings

TABLE = "step_runs"
RUNNING, FINISHED, FAILED = "running", "finished", "failed"


def schema() -> StructType:
    from pyspark.sql import types as T

    s = T.StringType()
    return T.StructType([
        T.StructField("run_id", s, False),
        T.StructField("step", s, False),
        T.StructField("step_version", s),
        T.StructField("status", s, False),
        T.StructField("inputs", T.ArrayType(T.StructType([
            T.StructField("table", s), T.StructField("step", s), T.StructField("step_version", s),
            T.StructField("table_version", T.LongType()),
        ]))),
        T.StructField("output_table", s),
        T.StructField("output_version", T.LongType()),
        T.StructField("model", T.StructType([
            T.StructField("profile", s), T.StructField("backend", s), T.StructField("uri", s),
            T.StructField("version", s),
        ])),
        T.StructField("prompt", T.StructType([
            T.StructField("name", s), T.StructField("version", s), T.StructField("uri", s),
        ])),
        T.StructField("sampling", s),  # JSON of the sampling settings
        T.StructField("params", T.MapType(s, s)),
        T.StructField("rows_in", T.LongType()),
        T.StructField("rows_out", T.LongType()),
        T.StructField("mlflow_run_id", s),
        T.StructField("started_at", T.TimestampType()),
        T.StructField("finished_at", T.TimestampType()),
        T.StructField("error", s),
    ])  # fmt: skip


@dataclass(frozen=True)
class InputRef:
    """One input a step read: a table, and where the rows came from (for versioned tables)."""

    table: str
    step: str | None = None
    step_version: str | None = None
    table_version: int | None = None


@dataclass
class StepRun:
    """One row of ``step_runs``. Jobs fill in what they know (step_version, inputs, model, ...) on the
    :class:`~backforth.registry.JobResult`; the runner adds the rest."""

    step: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    step_version: str | None = None
    status: str = RUNNING
    inputs: list[InputRef] = field(default_factory=list)
    output_table: str | None = None
    output_version: int | None = None
    model: dict[str, str | None] | None = None
    prompt: dict[str, str | None] | None = None
    sampling: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    rows_in: int | None = None
    rows_out: int | None = None
    mlflow_run_id: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None

    def input(self, step: str) -> InputRef | None:
        """The input produced by ``step``, if this run read one."""
        return next((i for i in self.inputs if i.step == step), None)

    def as_row(self) -> tuple:
        return (
            self.run_id, self.step, self.step_version, self.status,
            [(i.table, i.step, i.step_version, i.table_version) for i in self.inputs],
            self.output_table, self.output_version, self.model, self.prompt,
            json.dumps(self.sampling, sort_keys=True) if self.sampling is not None else None,
            {k: str(v) for k, v in self.params.items()}, self.rows_in, self.rows_out, self.mlflow_run_id,
            self.started_at, self.finished_at, self.error,
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: Any) -> StepRun:
        d = row.asDict(recursive=True)
        d["inputs"] = [InputRef(**i) for i in d["inputs"] or []]
        d["sampling"] = json.loads(d["sampling"]) if d["sampling"] else None
        d["params"] = dict(d["params"] or {})
        return cls(**d)


def fqn(settings: Settings) -> str:
    from backforth.tables import qualify

    return qualify(settings, TABLE)


def _now() -> dt.datetime:
    return dt.datetime.now()


def record_start(spark: SparkSession, settings: Settings, run: StepRun) -> None:
    """Append the run's row with status ``running`` (one small Delta commit)."""
    from backforth.tables import append, ensure_table

    run.started_at = run.started_at or _now()
    target = fqn(settings)
    ensure_table(spark, target, schema(), "backforth lineage: one row per step run")
    append(spark.createDataFrame([run.as_row()], schema()), target)


def record_end(spark: SparkSession, settings: Settings, run: StepRun) -> None:
    """Replace the run's row with its final state (one MERGE on ``run_id``, in SQL so Spark Connect can run it)."""
    from backforth.tables import quote, retry_on_conflict

    run.finished_at = _now()
    view = f"_step_run_{run.run_id}"
    spark.createDataFrame([run.as_row()], schema()).createOrReplaceTempView(view)
    statement = (
        f"MERGE INTO {quote(fqn(settings))} t USING {view} s ON t.run_id = s.run_id "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    # Another step run (a second job on the same metastore) may commit its own row meanwhile: the MERGE, keyed on
    # this run's id, is then simply run again.
    retry_on_conflict(lambda: spark.sql(statement), f"step_runs row of {run.step} run {run.run_id}")
    spark.catalog.dropTempView(view)


def runs(
    spark: SparkSession, settings: Settings, step: str | None = None, status: str | None = FINISHED
) -> list[StepRun]:
    """Runs of ``step`` (all steps if None) with ``status`` (any if None), newest first."""
    from pyspark.sql import functions as F

    from backforth.tables import table_exists

    target = fqn(settings)
    if not table_exists(spark, target):
        return []
    df = spark.table(target)
    if step is not None:
        df = df.where(F.col("step") == step)
    if status is not None:
        df = df.where(F.col("status") == status)
    return [StepRun.from_row(r) for r in df.orderBy(F.col("started_at").desc(), F.col("run_id")).collect()]


def resolve(
    spark: SparkSession,
    settings: Settings,
    step: str,
    pinned: str | None = None,
    params: dict[str, str] | None = None,
    candidates: list[StepRun] | None = None,
) -> StepRun:
    """The run whose output a step reads: the newest finished run of ``step`` (with ``params`` matching, e.g.
    ``{"kind": "rewrite"}``), or the newest finished run of the pinned ``step_version``. A clear user error when
    there is none."""
    found = candidates if candidates is not None else runs(spark, settings, step)
    found = [r for r in found if all(r.params.get(k) == v for k, v in (params or {}).items())]
    if pinned is not None:
        pinned_runs = [r for r in found if r.step_version == pinned]
        if not pinned_runs:
            known = ", ".join(dict.fromkeys(r.step_version or "?" for r in found)) or "none"
            raise UserError(
                f"job.input_version={pinned}: no finished `{step}` run has that step version (known: {known})"
            )
        return pinned_runs[0]
    if not found:
        what = f"no finished `{step}` run" + (f" with {params}" if params else "") + f" in {fqn(settings)}"
        raise MissingInputError(what, step)
    return found[0]


def chain(spark: SparkSession, settings: Settings, start: StepRun) -> dict[str, StepRun]:
    """``{step: run}`` for ``start`` and every versioned run it read from, following ``inputs`` back."""
    by_step: dict[str, list[StepRun]] = {}
    for r in runs(spark, settings):
        by_step.setdefault(r.step, []).append(r)
    out = {start.step: start}
    todo = [start]
    while todo:
        current = todo.pop()
        for ref in current.inputs:
            if ref.step is None or ref.step_version is None or ref.step in out:
                continue
            match = next((r for r in by_step.get(ref.step, []) if r.step_version == ref.step_version), None)
            if match is not None:
                out[ref.step] = match
                todo.append(match)
    return out


def newest(spark: SparkSession, settings: Settings, steps: list[str]) -> StepRun | None:
    """The newest finished run of the first of ``steps`` that has one (e.g. export, else rewrite, else ...)."""
    all_runs = runs(spark, settings)
    for step in steps:
        found = [r for r in all_runs if r.step == step]
        if found:
            return found[0]
    return None
