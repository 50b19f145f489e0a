"""``backforth status``: where the pipeline stands, from the lineage data (``step_runs``) and the tables' own logs.

On a laptop it reads the Delta tables of the data folder directly with delta-rs (the ``deltalake`` package): no JVM,
about a second, and it works while a job holds the metastore. Row counts come from the tables' file statistics, not
from scanning them. Elsewhere (a Unity Catalog schema, a Spark Connect endpoint) it asks Spark.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backforth.config import Settings
from backforth.lineage import FAILED, RUNNING
from backforth.lineage import TABLE as STEP_RUNS


@dataclass
class TableState:
    name: str
    rows: int
    version: int
    updated: datetime | None


def local_schema_dir(settings: Settings) -> Path | None:
    """The warehouse folder of the configured schema, when the tables are local files."""
    from backforth.spark import remote_url, running_on_cluster

    if settings.tables.catalog or remote_url(settings) or running_on_cluster():
        return None
    return settings.data_path / "warehouse" / f"{settings.tables.schema}.db"


def read_local(folder: Path) -> tuple[list[dict], list[TableState]]:
    """(step_runs rows, table states) of a local schema folder, with delta-rs."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    runs: list[dict] = []
    tables = []
    for path in sorted(p for p in folder.iterdir() if (p / "_delta_log").is_dir()):
        table = DeltaTable(str(path))
        actions = pa.table(table.get_add_actions(flatten=True))
        rows = pc.sum(actions.column("num_records")).as_py() if actions.num_rows else 0
        stamp = table.history(1)[0].get("timestamp")
        updated = datetime.fromtimestamp(stamp / 1000, tz=timezone.utc) if stamp else None
        tables.append(TableState(path.name, int(rows or 0), table.version(), updated))
        if path.name == STEP_RUNS:
            runs = pa.table(table.to_pyarrow_table()).to_pylist()
    return runs, tables


def read_spark(settings: Settings) -> tuple[list[dict], list[TableState]]:
    """The same through Spark, for catalogs that are not local folders."""
    from backforth.spark import get_spark
    from backforth.tables import qualify, schema_name, table_exists

    spark = get_spark(settings, read_only=True)
    fqn = qualify(settings, STEP_RUNS)
    runs = [r.asDict(recursive=True) for r in spark.table(fqn).collect()] if table_exists(spark, fqn) else []
    tables = []
    for row in spark.sql(f"SHOW TABLES IN {schema_name(settings)}").collect():
        name = row["tableName"]
        detail = spark.sql(f"DESCRIBE HISTORY {qualify(settings, name)} LIMIT 1").collect()
        count = spark.table(qualify(settings, name)).count()
        version = detail[0]["version"] if detail else 0
        tables.append(TableState(name, count, version, detail[0]["timestamp"] if detail else None))
    return runs, tables


def describe(runs: list[dict], tables: list[TableState], order: list[str]) -> str:
    """The report: one line per step (its newest run, and where its rows are or why it failed), then one per
    table."""
    by_step: dict[str, list[dict]] = {}
    for run in runs:
        by_step.setdefault(run["step"], []).append(run)
    lines = [f"{'step':<14} {'newest run':<10} {'rows in':>8} {'rows out':>9}  {'started (UTC)':<19}  took     runs"]
    for step in [*order, *sorted(set(by_step) - set(order))]:
        history = sorted(by_step.get(step, []), key=lambda r: r["started_at"].timestamp() if r["started_at"] else 0)
        if not history:
            lines.append(f"{step:<14} -")
            continue
        last = history[-1]
        took = ""
        if last["started_at"] and last["finished_at"]:
            took = f"{(last['finished_at'] - last['started_at']).total_seconds():.0f} s"
        failed = sum(1 for r in history if r["status"] == FAILED)
        started = last["started_at"].strftime("%Y-%m-%d %H:%M:%S") if last["started_at"] else "?"
        line = (
            f"{step:<14} {last['status']:<10} {fmt(last['rows_in']):>8} {fmt(last['rows_out']):>9}  {started:<19}  "
            f"{took:<8} {len(history)}" + (f" ({failed} failed)" if failed else "")
        )
        lines.append(line)
        if last["status"] == FAILED and last.get("error"):
            lines.append(f"{'':<14} error: {last['error'].splitlines()[0][:200]}")
        if last["status"] == RUNNING:
            lines.append(f"{'':<14} running, or killed: `backforth {step}` resumes it")
        elif last["status"] != FAILED and last.get("output_table"):  # where the step's rows are
            version = f" (step_version = '{last['step_version']}')" if last.get("step_version") else ""
            lines.append(f"{'':<14} → {last['output_table']}{version}")
            waiting = next_step(step, last, by_step, order)
            if waiting:
                lines.append(f"{'':<14} next: {waiting}")
    lines += ["", f"{'table':<22} {'rows':>9}  {'version':>7}  last write (UTC)"]
    for table in tables:
        when = table.updated.strftime("%Y-%m-%d %H:%M:%S") if table.updated else "?"
        lines.append(f"{table.name:<22} {table.rows:>9}  {table.version:>7}  {when}")
    return "\n".join(lines)


def reads(run: dict, step: str, version: str | None = None) -> bool:
    """Whether ``run`` read an output of ``step`` (of ``version``, when given)."""
    return any(i.get("step") == step and (version is None or i.get("step_version") == version)
               for i in run.get("inputs") or [])  # fmt: skip


def next_step(step: str, last: dict, by_step: dict[str, list[dict]], order: list[str]) -> str | None:
    """What the steps that read ``step`` have left of its newest run ``last``, from the lineage alone: rows a
    consumer's interrupted run did not finish, a consumer that read an older run, or (no consumer yet) the next
    step of the pipeline that has not run. None when the newest consumer runs read this run in full."""
    version = last.get("step_version")
    consumers = sorted(c for c, history in by_step.items() if c != step and any(reads(r, step) for r in history))
    notes = []
    for consumer in consumers:
        newest = max((r for r in by_step[consumer] if reads(r, step)), key=lambda r: started(r))
        if not reads(newest, step, version) and started(newest) < started(last):
            notes.append(f"{consumer} has not read this run yet ({fmt(last['rows_out'])} rows)")
        elif newest["status"] in (FAILED, RUNNING) and newest.get("rows_in") is not None:
            left = max(0, int(newest["rows_in"]) - int(newest.get("rows_out") or 0))
            if left:
                notes.append(f"{consumer} has {left} of {newest['rows_in']} rows left (`backforth {consumer}` resumes)")
    if not consumers and step in order and order.index(step) + 1 < len(order):
        following = order[order.index(step) + 1]
        if not by_step.get(following):
            notes.append(f"{following} has not run yet")
    return "; ".join(notes) or None


def started(run: dict) -> float:
    return run["started_at"].timestamp() if run.get("started_at") else 0.0


def fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def status(settings: Settings) -> str:
    """Where the pipeline stands, as text."""
    from backforth.registry import pipeline_steps

    folder = local_schema_dir(settings)
    if folder is not None:
        if not folder.is_dir():
            return f"no tables in {folder} yet: `backforth ingest` (or `backforth pipeline`) writes the first ones"
        try:
            runs, tables = read_local(folder)
        except ImportError:  # deltalake is in the `local` extra; without it, Spark answers (slower)
            runs, tables = read_spark(settings)
    else:
        runs, tables = read_spark(settings)
    return describe(runs, tables, pipeline_steps())
