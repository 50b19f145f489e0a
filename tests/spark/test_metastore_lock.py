"""Two commands on one local data folder: while this test's session holds the folder's metastore (as a running job
does), `backforth sql` and `check` read the tables from the warehouse folder, and a job fails at once in one line.
Before: `sql` printed ~17,000 lines of Derby and Hive traces and failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

BIN = Path(sys.executable).parent


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "backforth"), *args, "--set", f"data_dir={data_dir}"], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_sql_reads_while_another_process_holds_the_metastore(spark, make_settings, data_dir: Path) -> None:
    schema = make_settings().tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    spark.createDataFrame([("d1", "kept"), ("d2", "while locked")], "doc_id string, note string").write.format(
        "delta"
    ).saveAsTable(f"{schema}.docs_raw")

    done = cli(data_dir, "sql", "SELECT note FROM docs_raw ORDER BY doc_id", "--set", f"tables.schema={schema}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "while locked" in done.stdout
    assert "reading the tables from" in done.stderr and "Exception" not in done.stderr and "\tat " not in done.stderr

    job = cli(data_dir, "clean", "--set", f"tables.schema={schema}")
    assert job.returncode == 2
    lines = [line for line in job.stderr.splitlines() if line.strip()]
    assert lines == [f"backforth: the local metastore {data_dir / 'metastore_db'} is held by another backforth/Spark "
                     "process; wait for it to finish, or point this command at another folder with --set "
                     "data_dir=..."]  # fmt: skip
