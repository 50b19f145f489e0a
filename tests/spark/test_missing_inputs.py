"""The CLI's error model where a job runs (tests/unit/test_errors.py has the rest): a missing input table or an input
path that matches nothing is one line on stderr and exit code 2; a bug in a job keeps its traceback.

In process, in the suite's Spark session (the CLI reuses the active one), each in a schema of its own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from backforth.cli import main

pytestmark = pytest.mark.spark


def cli(*args: str, data_dir: Path, schema: str) -> int:
    return main([*args, "--set", f"data_dir={data_dir}", "--set", f"tables.schema={schema}"])


def only_the_failed_run_was_recorded(spark, schema: str, step: str, message: str) -> None:
    """No table but the lineage row: the attempt is in step_runs as ``failed``, with the message."""
    assert [t.name for t in spark.catalog.listTables(schema)] == ["step_runs"]
    rows = spark.table(f"{schema}.step_runs").collect()
    assert [(r["step"], r["status"]) for r in rows] == [(step, "failed")]
    assert message in rows[0]["error"] and rows[0]["output_version"] is None


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("step", "table", "before"), [("clean", "docs_raw", "ingest"), ("dedup", "docs_clean", "clean"),
                                  ("finetune", "seed_pairs", "seed")]
)  # fmt: skip
def test_missing_input_table_says_which_step_to_run(spark, data_dir, make_settings, capsys, step, table, before):
    schema = make_settings().tables.schema
    assert cli(step, data_dir=data_dir, schema=schema) == 2
    expected = f"backforth: {schema}.{table} is missing: run `backforth {before}` first"
    assert one_line(capsys.readouterr().err) == expected
    only_the_failed_run_was_recorded(spark, schema, step, expected.removeprefix("backforth: "))


def test_input_path_that_matches_nothing(spark, data_dir, make_settings, capsys, tmp_path: Path) -> None:
    schema, missing = make_settings().tables.schema, tmp_path / "nope.jsonl"
    inputs = f"job.inputs=[{{path: '{missing}', format: jsonl}}]"
    assert cli("ingest", "--set", inputs, data_dir=data_dir, schema=schema) == 2
    assert one_line(capsys.readouterr().err) == f"backforth: job.inputs: {missing} (jsonl) matches no file"
    only_the_failed_run_was_recorded(spark, schema, "ingest", "matches no file")  # checked before any table is made


def test_a_bug_in_a_job_keeps_its_traceback(spark, data_dir, make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from backforth.registry import JOBS, load_jobs

    def buggy(spark, settings):
        return {"rate": 1 / 0}

    load_jobs()
    monkeypatch.setitem(JOBS, "clean", replace(JOBS["clean"], fn=buggy))
    with pytest.raises(ZeroDivisionError):
        cli("clean", data_dir=data_dir, schema=make_settings().tables.schema)
