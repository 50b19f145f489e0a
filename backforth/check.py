"""``backforth check``: the invariants a crash or a manual edit could break, each with the command that repairs it.

- **References** (:data:`backforth.catalog.REFERENCES`): every row's input is still there — docs_clean rows have
  their docs_raw row, docs_dedup rows their docs_clean row, every kept (or near-duplicate) document its signature
  and every signature its document, each LLM step's rows the rows of the version they read.
- **Keys**: every table is unique on its key (with ``step_version`` for versioned tables), so every stage of the
  funnel counts each row once.
- **Clusters**: every docs_dedup cluster keeps exactly one document (kept after dedup = clusters).
- **Lineage** (``step_runs``): every version a finished run read has a finished run of its own; every version of a
  versioned table has one (a killed or failed run's rows wait for a resume); a run that replaces its version's rows
  (filter, export) left as many rows as it recorded.

Every table check is one aggregation, all of them one Spark job; the lineage checks read ``step_runs`` once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backforth import catalog, lineage
from backforth.tables import qualify, table_exists

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from backforth.config import Settings


@dataclass
class Problem:
    """One broken invariant: what should hold, how many rows break it, two of them, and the repair, in order."""

    what: str
    count: int
    examples: list[str] = field(default_factory=list)
    repair: list[str] = field(default_factory=list)

    def describe(self) -> str:
        shown = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        steps = "\n".join(f"    {cmd}" for cmd in self.repair)
        return f"- {self.what}: {self.count} broken{shown}\n  repair:\n{steps}"


def sql_command(statement: str) -> str:
    """``backforth sql "..."``, quoted for a POSIX shell (SQL string literals keep their single quotes)."""
    for char in '\\"$`':
        statement = statement.replace(char, "\\" + char)
    return f'backforth sql "{statement}"'


class Checker:
    """Collects one aggregation per table check, runs them as one Spark job, and turns the results into problems."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark, self.settings = spark, settings
        self.fqn = {name: qualify(settings, name) for name in catalog.TABLES}
        self.exists = {name: table_exists(spark, fqn) for name, fqn in self.fqn.items()}
        self.parts: list[DataFrame] = []
        self.labels: dict[str, tuple[str, list[str]]] = {}  # check id → (what, repair)

    def key_columns(self, name: str) -> list[str]:
        entry = catalog.TABLES[name]
        return list(entry.key) + (["step_version"] if entry.versioned else [])

    def key_text(self, name: str) -> Any:
        from pyspark.sql import functions as F

        return F.concat_ws(" @ ", *[F.col(c).cast("string") for c in self.key_columns(name)])

    def add(self, check: str, rows: DataFrame, what: str, repair: list[str], key: Any) -> None:
        """Count ``rows`` (the rows that break the invariant) and keep the smallest and largest key as examples."""
        from pyspark.sql import functions as F

        part = rows.agg(F.count(F.lit(1)).alias("n"), F.min(key).alias("first"), F.max(key).alias("last"))
        self.parts.append(part.select(F.lit(check).alias("check"), F.lit(None).cast("string").alias("item"), "*"))
        self.labels[check] = (what, repair)

    def orphans_sql(self, ref: catalog.Reference) -> str:
        """The rows of ``ref.table`` that break ``ref``, in SQL (the repair's source)."""
        query = f"SELECT DISTINCT {', '.join(f'c.{k}' for k in self.key_columns(ref.table))} FROM (SELECT * FROM "
        query += f"{self.fqn[ref.table]} WHERE {ref.where}) c"
        for parent in (p for p in ref.parents if self.exists[p]):
            query += f" LEFT ANTI JOIN (SELECT * FROM {self.fqn[parent]} WHERE {ref.parent_where}) p ON {ref.on}"
        return query

    def references(self) -> None:
        from pyspark.sql import functions as F

        for i, ref in enumerate(catalog.REFERENCES):
            if not self.exists[ref.table] or not any(self.exists[p] for p in ref.parents):
                continue  # a step that has not run yet is not a broken reference
            rows = self.spark.table(self.fqn[ref.table]).where(F.expr(ref.where)).alias("c")
            for parent in ref.parents:
                if self.exists[parent]:
                    other = self.spark.table(self.fqn[parent]).where(F.expr(ref.parent_where)).alias("p")
                    rows = rows.join(other, F.expr(ref.on), "left_anti").alias("c")
            on = " AND ".join(f"t.{k} <=> s.{k}" for k in self.key_columns(ref.table))
            delete = sql_command(
                f"MERGE INTO {self.fqn[ref.table]} t USING ({self.orphans_sql(ref)}) s ON {on} WHEN MATCHED THEN DELETE"
            )
            if ref.restore and not ref.deletable:
                repair = [ref.restore + "    # writes what is missing again"]
            elif ref.restore:
                repair = [ref.restore + "    # writes the missing rows again; where that cannot work, delete:", delete]
            else:
                repair = [delete + "    # their input is gone: nothing downstream can use them"]
            self.add(f"ref{i}", rows, f"{ref.table}: {ref.what}", repair, self.key_text(ref.table))

    def keys(self) -> None:
        from pyspark.sql import functions as F

        for name in catalog.TABLES:
            if not self.exists[name]:
                continue
            df = self.spark.table(self.fqn[name])
            key = [k for k in self.key_columns(name) if k in df.columns]
            if not key:
                continue
            repeated = df.groupBy(*key).count().where("count > 1")
            columns, by = ", ".join(df.columns), ", ".join(key)
            keep_one = sql_command(
                f"INSERT OVERWRITE {self.fqn[name]} SELECT {columns} FROM (SELECT *, row_number() OVER "
                f"(PARTITION BY {by} ORDER BY {by}) AS _n FROM {self.fqn[name]}) WHERE _n = 1"
            )
            text = F.concat_ws(" @ ", *[F.col(k).cast("string") for k in key])
            what = f"{name}: one row per {' + '.join(key)} (each row counted once)"
            self.add(f"key:{name}", repeated, what, [keep_one], text)

    def clusters(self) -> None:
        from pyspark.sql import functions as F

        if not self.exists["docs_dedup"]:
            return
        dedup = self.spark.table(self.fqn["docs_dedup"])
        broken = dedup.groupBy("cluster_id").agg(F.count_if("is_kept").alias("k")).where("k <> 1")
        members = (
            f"SELECT doc_id FROM {self.fqn['docs_dedup']} WHERE cluster_id IN (SELECT cluster_id FROM "
            f"{self.fqn['docs_dedup']} GROUP BY cluster_id HAVING count_if(is_kept) <> 1)"
        )
        repair = [
            sql_command(f"MERGE INTO {self.fqn[t]} t USING ({members}) s ON t.doc_id = s.doc_id "
                        "WHEN MATCHED THEN DELETE")
            for t in ("dedup_signatures", "docs_dedup") if self.exists[t]
        ]  # fmt: skip
        repair.append("backforth dedup    # deduplicates those documents again, against everything else")
        what = "docs_dedup: every cluster keeps exactly one document (kept after dedup = clusters)"
        self.add("clusters", broken, what, repair, F.col("cluster_id"))

    def versions(self) -> None:
        """Rows per step_version of every versioned table, for the lineage checks."""
        from pyspark.sql import functions as F

        for name, entry in catalog.TABLES.items():
            if entry.versioned and self.exists[name]:
                counted = self.spark.table(self.fqn[name]).groupBy("step_version").agg(F.count(F.lit(1)).alias("n"))
                self.parts.append(counted.select(
                    F.lit(f"versions:{name}").alias("check"), F.col("step_version").alias("item"), "n",
                    F.lit(None).cast("string").alias("first"), F.lit(None).cast("string").alias("last"),
                ))  # fmt: skip

    def run(self) -> tuple[list[Problem], dict[str, dict[str, int]]]:
        """The table problems and ``{table: {step_version: rows}}``: one Spark job."""
        self.references()
        self.keys()
        self.clusters()
        self.versions()
        if not self.parts:
            return [], {}
        union = self.parts[0]
        for part in self.parts[1:]:
            union = union.unionByName(part)
        found: dict[str, Problem] = {}
        versions: dict[str, dict[str, int]] = {
            n: {} for n, t in catalog.TABLES.items() if t.versioned and self.exists[n]
        }
        for row in union.collect():
            if row["check"].startswith("versions:"):
                versions[row["check"].split(":", 1)[1]][row["item"]] = int(row["n"])
            elif row["n"]:
                what, repair = self.labels[row["check"]]
                examples = list(dict.fromkeys(x for x in (row["first"], row["last"]) if x is not None))
                found[row["check"]] = Problem(what, int(row["n"]), examples, repair)
        return [found[k] for k in self.labels if k in found], versions


def lineage_problems(runs: list[lineage.StepRun], versions: dict[str, dict[str, int]], settings: Settings) -> list:
    """What ``step_runs`` says against itself and against the versioned tables' rows (``versions``: rows per
    step_version of every versioned table that exists, empty ones included)."""
    finished = {(r.step, r.step_version) for r in runs if r.status == lineage.FINISHED}
    problems = []
    lost: dict[tuple[str, str], list[str]] = {}
    for r in runs:
        if r.status != lineage.FINISHED:
            continue
        for ref in r.inputs:
            if ref.step and ref.step_version and (ref.step, ref.step_version) not in finished:
                lost.setdefault((r.step, ref.step), []).append(f"{r.step_version} read {ref.step_version}")
    for (step, upstream), which in sorted(lost.items()):
        problems.append(Problem(
            f"step_runs: every {upstream} version a finished {step} run read has a finished {upstream} run",
            len(which), which[:2],
            [f"backforth {step}    # a new {step} version on the newest finished {upstream} run"],
        ))  # fmt: skip
    for name, counts in versions.items():
        entry = catalog.TABLES[name]
        fqn = qualify(settings, name)
        unknown = {v: n for v, n in counts.items() if not any((w, v) in finished for w in entry.writers)}
        if unknown:
            started = {r.step_version: r for r in runs if r.step in entry.writers}
            cmds = []
            for version in sorted(unknown):
                run = started.get(version)
                if run is not None:  # a killed or failed run: its rows wait for a run with the same settings
                    cmds.append(f"backforth {run.step}    # with the settings of run {run.run_id} ({run.status}): "
                                f"resumes {version}; or delete its rows:")  # fmt: skip
                cmds.append(sql_command(f"DELETE FROM {fqn} WHERE step_version = '{version}'"))
            problems.append(Problem(
                f"{name}: every step_version has a finished {'/'.join(entry.writers)} run in step_runs",
                sum(unknown.values()), [f"{v} ({n} rows)" for v, n in sorted(unknown.items())][:2], cmds,
            ))  # fmt: skip
        if entry.replaces:
            short, seen = [], set()
            for run in runs:  # newest first: the newest finished run of each version wrote what the table holds
                if run.status != lineage.FINISHED or run.step not in entry.writers or run.rows_out is None:
                    continue
                if run.step_version in seen:
                    continue
                seen.add(run.step_version)
                if counts.get(run.step_version, 0) != run.rows_out:
                    short.append((run.step_version, counts.get(run.step_version, 0), run))
            if short:
                problems.append(Problem(
                    f"{name}: a version holds the rows its newest run wrote (replaced as a whole)",
                    len(short), [f"{v}: {n} rows, run wrote {r.rows_out}" for v, n, r in short][:2],
                    [f"backforth {r.step}    # with the settings of run {r.run_id}: rewrites {v}" for v, _, r in short],
                ))  # fmt: skip
    return problems


def check(spark: SparkSession, settings: Settings) -> list[Problem]:
    """Every broken invariant of the tables in ``settings``' schema (none: consistent)."""
    problems, versions = Checker(spark, settings).run()
    return problems + lineage_problems(lineage.runs(spark, settings, status=None), versions, settings)


def report(problems: list[Problem]) -> str:
    if not problems:
        return "consistent: every check passed"
    body = "\n".join(p.describe() for p in problems)
    return f"{len(problems)} check(s) failed:\n{body}"
