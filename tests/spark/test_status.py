"""`backforth status`: each step's newest run and every table's rows, read from the Delta logs without Spark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backforth.cli import main
from backforth.jobs.ingest import IngestConfig, InputSpec
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark


def test_status_shows_runs_failures_and_table_rows(spark, make_settings, data_dir: Path, tmp_path: Path, capsys):
    corpus = tmp_path / "a.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "text": f"text {i}"}) + "\n" for i in range(7)) + "{broken\n")
    settings = make_settings(IngestConfig(inputs=[InputSpec(path=str(corpus), format="jsonl", source="s")]))
    run_job(get_job("ingest"), settings, spark)
    broken = make_settings(IngestConfig(inputs=[InputSpec(path=str(tmp_path / "nowhere.jsonl"), format="jsonl")]))
    with pytest.raises(FileNotFoundError):
        run_job(get_job("ingest"), broken, spark)
    capsys.readouterr()

    assert main(["status", "--set", f"data_dir={data_dir}", "--set", f"tables.schema={settings.tables.schema}"]) == 0
    out = capsys.readouterr().out.splitlines()
    ingest = next(line for line in out if line.startswith("ingest "))
    assert ingest.split()[1] == "failed" and ingest.endswith("2 (1 failed)")
    error = out[out.index(ingest) + 1]
    assert "error: BadPathError: job.inputs:" in error and "nowhere.jsonl" in error
    assert next(line for line in out if line.startswith("clean ")).split() == ["clean", "-"]
    run_job(get_job("ingest"), settings, spark)  # finished again: the step says where its rows are
    capsys.readouterr()
    assert main(["status", "--set", f"data_dir={data_dir}", "--set", f"tables.schema={settings.tables.schema}"]) == 0
    again = capsys.readouterr().out.splitlines()
    ingest = next(line for line in again if line.startswith("ingest "))
    assert ingest.split()[1] == "finished" and again[again.index(ingest) + 1].split() == [
        "→", f"{settings.tables.schema}.docs_raw"]  # fmt: skip
    rows = {line.split()[0]: int(line.split()[1]) for line in out[out.index("") + 2 :]}
    assert rows["docs_raw"] == 7 and rows["ingest_rejects"] == 1 and rows["step_runs"] == 2
