"""`backforth sql --format json|csv`: rows for scripts, values whole (a table's cells are cut at 80 characters)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from backforth.cli import main

pytestmark = pytest.mark.spark


def test_sql_prints_json_lines_and_csv(spark, make_settings, data_dir, capsys) -> None:
    schema = make_settings().tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    long_text = "word " * 40 + "end"
    spark.createDataFrame(
        [("d1", long_text, ["a", "b"]), ("d2", 'quote " and, comma', [])],
        "doc_id string, text string, tags array<string>",
    ).write.format("delta").saveAsTable(f"{schema}.docs")
    where = ["--set", f"data_dir={data_dir}", "--set", f"tables.schema={schema}"]
    query = "SELECT doc_id, text, tags FROM docs ORDER BY doc_id"

    assert main(["sql", "--format", "json", *where, query]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [{"doc_id": "d1", "text": long_text, "tags": ["a", "b"]},
                    {"doc_id": "d2", "text": 'quote " and, comma', "tags": []}]  # fmt: skip

    assert main(["sql", "--format", "csv", "--limit", "1", *where, query]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table == [["doc_id", "text", "tags"], ["d1", long_text, '["a", "b"]']]
