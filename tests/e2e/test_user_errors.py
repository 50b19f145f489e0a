"""Every mistake a user can make where Spark has started, through the real CLI in a process of its own: one line
naming the fix, exit code 2, no Python traceback and no Java stack (the README's table of user errors; the cases
that fail before Spark starts are in tests/unit/test_errors.py).

Each command starts its own JVM (15-40 s here), so the cases are few and share one data folder: the folder of a
user who has not run anything yet, and then the same folder held by another process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
# what the JVM prints on every start, before backforth can say anything
SPARK_BANNER = ("WARNING: Using incubator modules", "Setting default log level", "To adjust logging level")


def cli_env() -> dict[str, str]:
    """The environment of a CLI command: the user's, without the suite's own MLflow URI."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def user_error(*args: str, data: Path) -> str:
    """Run ``backforth *args`` on ``data``; assert it failed as a user error should; its one line."""
    cmd = [sys.executable, "-m", "backforth.cli", *args, "--set", f"data_dir={data}"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=cli_env())
    assert out.returncode == 2, f"{args}: exit {out.returncode}\n{out.stderr[-3000:]}"
    err = out.stderr
    assert "Traceback" not in err and "\tat " not in err and "py4j" not in err.lower() and "java." not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(SPARK_BANNER)]
    assert len(lines) == 1 and lines[0].startswith("backforth: "), err
    return lines[0]


@pytest.mark.timeout(600)
def test_user_errors_with_spark_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    line = user_error("clean", data=data)
    assert line == "backforth: backforth.docs_raw is missing: run `backforth ingest` first"
    missing = tmp_path / "nope"
    line = user_error("ingest", "--set", f"job.inputs=[{{path: '{missing}', format: jsonl}}]", data=data)
    assert line == f"backforth: job.inputs: {missing} (jsonl) matches no file"
    line = user_error("sql", "SELECT * FROM docs_rwa", data=data)  # the failed runs left only their lineage
    assert line.startswith("backforth: sql: [TABLE_OR_VIEW_NOT_FOUND] The table or view `docs_rwa` cannot be found")
    assert line.endswith("(tables in backforth: step_runs)")
    line = user_error("sql", "SELEC count(*) FROM docs_raw", data=data)
    assert line.startswith("backforth: sql: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'")

    # another process holds the metastore: a job is told in one line, before it starts Spark (sql and check read
    # the tables without the metastore instead: tests/spark/test_metastore_lock.py)
    hold = (
        "import sys; from backforth.config import Settings; from backforth.spark import build_local_session\n"
        f"s = build_local_session(Settings(data_dir={str(data)!r})); s.sql('SHOW TABLES').collect()\n"
        "print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        line = user_error("clean", data=data)
        assert line == (
            f"backforth: the local metastore {data / 'metastore_db'} is held by another backforth/Spark process; "
            "wait for it to finish, or point this command at another folder with --set data_dir=..."
        )
    finally:
        holder.communicate(input="", timeout=120)
