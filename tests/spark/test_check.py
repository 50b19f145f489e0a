"""`backforth check` on real Spark + Delta: a finished pipeline passes; each invariant, broken by hand in SQL, is found
with its repair, and the printed repairs make the tables consistent again."""

from __future__ import annotations

import random
import shlex
from contextlib import contextmanager

import pytest

from backforth import catalog
from backforth.check import check
from backforth.cli import main
from backforth.config import Settings, TablesConfig
from backforth.pipeline import run_pipeline
from backforth.tables import table_exists, table_version

pytestmark = [pytest.mark.spark, pytest.mark.timeout(900)]  # the fixture runs six steps: ~5 min on 2 busy cores
STEPS = ["dedup", "backtranslate", "score", "filter", "rewrite", "export"]


def words(rng: random.Random, n: int = 200) -> str:
    return " ".join(f"w{rng.randrange(3000)}" for _ in range(n))


@pytest.fixture(scope="module")
def finished(spark, data_dir, tmp_path_factory) -> Settings:
    """docs_raw and docs_clean written by hand (10 documents, an exact and a near duplicate), then dedup and the LLM
    steps through export with the fake engine: every table the check reads, once for the module."""
    rng = random.Random(3)
    texts = {f"d{i:02d}": words(rng) for i in range(10)}
    texts["d00_copy"] = texts["d00"].upper()
    texts["d01_near"] = texts["d01"] + " and a few closing words"
    settings = Settings(data_dir=str(data_dir), tables=TablesConfig(schema=f"c_{rng.randrange(16**8):08x}"))
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    raw = [(k, f"https://example.org/{k}", "test", t) for k, t in texts.items()]
    spark.createDataFrame(raw, "doc_id string, url string, source string, text string").write.format(
        "delta"
    ).saveAsTable(f"{schema}.docs_raw")
    clean = [(k, t, len(t.split()), None) for k, t in texts.items()]
    spark.createDataFrame(clean, "doc_id string, text string, n_words int, drop_reason string").write.format(
        "delta"
    ).saveAsTable(f"{schema}.docs_clean")
    out = tmp_path_factory.mktemp("check-export")
    overrides = [
        f"data_dir={data_dir}", f"tables.schema={schema}", "job.model=fake", "score.sanity_pairs=4",
        "score.model_options.options.reply='On topic. Score: {digit}'",
        "filter.mode=top_fraction", "filter.fraction=0.5",
        "rewrite.model_options.options.reply='[RES] A clear answer about {words}. [/RES]'",
        f"export.output_dir={out}",
    ]  # fmt: skip
    run_pipeline("local", overrides, None, STEPS)
    return settings


def fqn(settings: Settings, name: str) -> str:
    return f"{settings.tables.schema}.{name}"


@contextmanager
def planted(spark, settings: Settings, *statements: str):
    """Run ``statements`` (``{s}`` = the schema), then put every table back as it was."""
    before = {
        name: table_version(spark, fqn(settings, name))
        for name in catalog.TABLES
        if table_exists(spark, fqn(settings, name))
    }
    try:
        for statement in statements:
            spark.sql(statement.format(s=settings.tables.schema))
        yield
    finally:
        for name, version in before.items():
            if table_version(spark, fqn(settings, name)) != version:
                spark.sql(f"RESTORE TABLE {fqn(settings, name)} TO VERSION AS OF {version}")


def sql_of(command: str) -> str:
    """The statement of a printed ``backforth sql "..."`` repair."""
    argv = shlex.split(command, comments=True)
    assert argv[:2] == ["backforth", "sql"], command
    return argv[2]


def test_a_finished_pipeline_is_consistent(spark, finished, data_dir, capsys) -> None:
    assert check(spark, finished) == []
    schema = finished.tables.schema
    assert main(["check", "--set", f"data_dir={data_dir}", "--set", f"tables.schema={schema}"]) == 0
    assert "consistent: every check passed" in capsys.readouterr().out
    # the fixture has what the plants below break
    dedup = {r["doc_id"]: r for r in spark.table(fqn(finished, "docs_dedup")).collect()}
    assert dedup["d00_copy"]["dup_reason"] == "dup_exact" and dedup["d01_near"]["is_kept"]
    assert spark.table(fqn(finished, "sft_pairs")).count() > 0


PLANTS = {
    "signature deleted": (["DELETE FROM {s}.dedup_signatures WHERE doc_id = 'd02'"],
                          "docs_dedup: every kept (or near-duplicate) document has its signature", ["backforth dedup"]),
    "signature without document": (
        ["INSERT INTO {s}.dedup_signatures SELECT 'ghost', exact_hash, signature, bands, n_shingles "
         "FROM {s}.dedup_signatures WHERE doc_id = 'd02'"],
        "dedup_signatures: every signature belongs to a kept", ["MERGE INTO"]),
    "raw document deleted": (["DELETE FROM {s}.docs_raw WHERE doc_id = 'd03'"],
                             "docs_clean: every cleaned document has its docs_raw row",
                             ["backforth ingest --set job.reprocess=true"]),
    "cleaned document deleted": (["DELETE FROM {s}.docs_clean WHERE doc_id = 'd03'"],
                                 "docs_dedup: every deduplicated document has its docs_clean row", ["backforth clean"]),
    "instruction deleted": (["DELETE FROM {s}.instructions WHERE doc_id = 'd04'"],
                            "scores: every score has the instruction it judged", ["MERGE INTO"]),
    "responses deleted": (["DELETE FROM {s}.responses"], "sft_pairs: every exported generated pair has its response",
                          ["MERGE INTO"]),
    "row inserted twice": (["INSERT INTO {s}.docs_clean SELECT * FROM {s}.docs_clean WHERE doc_id = 'd05'"],
                           "docs_clean: one row per doc_id", ["INSERT OVERWRITE"]),
    "second survivor": (["UPDATE {s}.docs_dedup SET is_kept = true WHERE doc_id = 'd00_copy'"],
                        "docs_dedup: every cluster keeps exactly one document", ["backforth dedup"]),
    "score runs deleted": (["DELETE FROM {s}.step_runs WHERE step = 'score'"],
                           "step_runs: every score version a finished filter run read", ["backforth filter"]),
    "filtered pairs deleted": (["DELETE FROM {s}.pairs_filtered"],
                               "pairs_filtered: a version holds the rows its newest run wrote", ["backforth filter"]),
}  # fmt: skip


@pytest.mark.parametrize("plant", list(PLANTS))
def test_each_broken_invariant_is_found_with_its_repair(spark, finished, plant: str) -> None:
    statements, what, repair = PLANTS[plant]
    with planted(spark, finished, *statements):
        problems = check(spark, finished)
    found = [p for p in problems if p.what.startswith(what)]
    assert found, [p.what for p in problems]
    assert found[0].count >= 1 and found[0].examples
    printed = "\n".join(found[0].repair)
    assert all(r in printed for r in repair), printed
    assert check(spark, finished) == []  # put back as it was


def test_printed_repairs_make_the_tables_consistent_again(spark, finished, data_dir) -> None:
    schema = finished.tables.schema
    spark.sql(f"DELETE FROM {schema}.dedup_signatures WHERE doc_id IN ('d06', 'd01_near')")
    spark.sql(f"INSERT INTO {schema}.dedup_signatures SELECT 'ghost', exact_hash, signature, bands, n_shingles "
              f"FROM {schema}.dedup_signatures WHERE doc_id = 'd07'")  # fmt: skip
    spark.sql(f"INSERT INTO {schema}.docs_clean SELECT * FROM {schema}.docs_clean WHERE doc_id = 'd08'")
    problems = check(spark, finished)
    assert len(problems) == 3, [p.what for p in problems]
    signatures_before = {r["doc_id"] for r in spark.table(fqn(finished, "dedup_signatures")).collect()}
    for problem in problems:
        for command in problem.repair:
            if command.startswith("backforth sql"):
                spark.sql(sql_of(command))
    run_pipeline("local", [f"data_dir={data_dir}", f"tables.schema={schema}"], None, ["dedup"])  # re-signs
    assert check(spark, finished) == []
    signatures = {r["doc_id"] for r in spark.table(fqn(finished, "dedup_signatures")).collect()}
    assert signatures == signatures_before - {"ghost"} | {"d06", "d01_near"}
