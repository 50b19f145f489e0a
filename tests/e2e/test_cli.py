"""The CLI end to end, as a user runs it: ingest the bundled sample, run the pipeline again over it (ingest adds
nothing, clean and dedup, backtranslate killed mid-step), resume, query it, read the runs back from a real MLflow
server started against the store the CLI wrote.

Each CLI process starts its own JVM and Spark session (tens of seconds on a small machine), so the test chains the
steps the way a user would and reads what it needs back at the end: one `sql` call with several queries, the
metrics of the pipeline's steps from their MLflow runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def cli_env() -> dict[str, str]:
    """The environment of a CLI command: the user's, without the suite's own MLflow URI."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def backforth(*args: str, data: Path) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "backforth"), *args, "--set", f"data_dir={data}"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=cli_env())
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def metric(stdout: str, name: str) -> float:
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    raise AssertionError(f"metric {name} not printed:\n{stdout}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(900)
def test_ingest_pipeline_killed_resumed_query_and_read_runs_from_mlflow_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = backforth("ingest", data=data)
    inserted = metric(first.stdout, "docs_inserted")
    rejects = metric(first.stdout, "rejects_inserted")
    assert inserted >= 100 and rejects >= 8  # the sample has ~105 documents and 10 broken inputs

    # a real MLflow server on the store the CLI wrote, started now (it reads the store per request) so that its
    # start-up overlaps the commands below
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # the pipeline ingests the sample again (nothing new), cleans and dedups it, and is killed with SIGKILL
        # during its LLM step; `backtranslate` then resumes: no duplicate, no missing row, nothing finished
        # regenerated
        log_dir = tmp_path / "fake-log"
        fake = ["--set", "job.model=fake", "--set", "job.shard_rows=12", "--set", "job.shards_in_flight=3",
                "--set", f"job.model_options={{options: {{log_dir: '{log_dir}', delay_s: 1.5}}}}"]  # fmt: skip
        killed_version = kill_after_first_shard(
            ["pipeline", "--steps", "ingest,clean,dedup,backtranslate", *fake],
            data,
            data / "warehouse/backforth.db/instructions",
            tmp_path / "pipeline.stderr",
        )
        before = prompts_generated(log_dir)
        resumed = backforth("backtranslate", *fake, data=data)
        resumed_rows = metric(resumed.stdout, "docs_rows")
        regenerated = prompts_generated(log_dir) - before
        again = backforth("backtranslate", *fake, data=data)
        assert metric(again.stdout, "docs_rows") == 0

        queries = {
            "raw": "SELECT count(*) AS n FROM docs_raw",
            "reasons": "SELECT dup_reason, count(*) FROM docs_dedup GROUP BY 1 ORDER BY 1",
            "unique": "SELECT count(*) AS n, count(DISTINCT doc_id) AS d FROM instructions",
            "killed": f"SELECT count(*) AS n FROM instructions VERSION AS OF {killed_version}",
            "lineage": "SELECT step, status, count(*) AS n FROM step_runs GROUP BY 1, 2 ORDER BY 1, 2",
        }
        printed = sql_sections(backforth("sql", *queries.values(), data=data).stdout, list(queries.values()))
        runs = search_runs(port)
    finally:
        server.terminate()
        server.wait(timeout=30)
    shown = {name: printed[query].replace(" ", "") for name, query in queries.items()}
    assert f"|{int(inserted)}|" in shown["raw"]
    assert "dup_exact" in shown["reasons"] and "dup_minhash" in shown["reasons"]
    # lineage as data: the killed step's row stays `running`, the resumed and the re-run one are `finished`
    for row in ("|backtranslate|finished|2|", "|backtranslate|running|1|", "|ingest|finished|2|", "|dedup|finished|1|"):
        assert row in shown["lineage"]

    # ingest, the killed pipeline (its ingest, clean and dedup finished, its backtranslate step left RUNNING),
    # resumed, re-run
    assert len(runs) == 8
    by_start = sorted(runs, key=lambda r: r["info"]["start_time"])
    jobs = [tag(r, "backforth.job") for r in by_start]
    assert jobs == ["ingest", "pipeline", "ingest", "clean", "dedup", "backtranslate", "backtranslate", "backtranslate"]
    assert [r["info"]["status"] for r in by_start] == ["FINISHED", "RUNNING", "FINISHED", "FINISHED", "FINISHED",
                                                       "RUNNING", "FINISHED", "FINISHED"]  # fmt: skip
    pipeline_id = by_start[1]["info"]["run_id"]
    assert all(tag(r, "mlflow.parentRunId") == pipeline_id for r in by_start[2:6])
    step = {job: metrics_of(r) for job, r in zip(jobs[2:5], by_start[2:5], strict=True)}
    assert step["ingest"]["docs_inserted"] == 0 and step["ingest"]["files_read"] == 0  # the second ingest
    assert step["clean"]["docs_in"] == inserted
    kept = step["clean"]["docs_kept"]
    assert 40 <= kept <= inserted - 30  # the sample's junk, short, foreign and broken documents go
    assert step["dedup"]["docs_in"] == kept
    assert step["dedup"]["dropped.dup_exact"] >= 5 and step["dedup"]["dropped.dup_minhash"] >= 5
    kept = int(step["dedup"]["docs_kept"])
    killed_rows = int(shown["killed"].split("|")[-2])  # the rows the killed run had committed
    assert 0 < killed_rows < kept
    assert resumed_rows == kept - killed_rows
    assert regenerated == kept - killed_rows  # finished shards were not regenerated
    assert f"|{kept}|{kept}|" in shown["unique"]
    assert tag(by_start[6], "backforth.prompt.backtranslate") == "backforth-backtranslate@1"

    run = by_start[0]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    metrics = metrics_of(run)
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert tags["backforth.job"] == "ingest" and len(tags["backforth.config_hash"]) == 12
    assert tags["table.output_table"] == "backforth.docs_raw@v1"
    assert metrics["docs_inserted"] == inserted and metrics["rejects_inserted"] == rejects
    assert params["job.output_table"] == "docs_raw"
    datasets = {d["dataset"]["name"]: d for d in run["inputs"]["dataset_inputs"]}
    source = json.loads(datasets["backforth.docs_raw"]["dataset"]["source"])
    assert int(source["delta_table_version"]) == 1
    assert [t["value"] for t in datasets["backforth.docs_raw"]["tags"] if t["key"] == "mlflow.data.context"] == [
        "output"
    ]


def tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["data"].get("tags", []) if t["key"] == key), None)


def metrics_of(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def sql_sections(stdout: str, queries: list[str]) -> dict[str, str]:
    """What `backforth sql q1 q2 ...` printed under each query's ``> query`` heading."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("> ") and line[2:] in queries:
            current = sections.setdefault(line[2:], [])
        elif current is not None:
            current.append(line)
    assert sorted(sections) == sorted(queries), stdout
    return {q: "\n".join(lines) for q, lines in sections.items()}


def prompts_generated(log_dir: Path) -> int:
    events = [json.loads(x) for p in log_dir.glob("engine-*.jsonl") for x in p.read_text().splitlines()]
    return sum(e.get("n", 0) for e in events if e["event"] == "generate")


def kill_after_first_shard(args: list[str], data: Path, table_dir: Path, stderr: Path) -> int:
    """Start ``backforth <args>``, SIGKILL its whole process group once the table has its first committed shard
    (Delta version 1; version 0 creates it), and return the table's last committed version by then."""
    cmd = [str(BIN / "backforth"), *args, "--set", f"data_dir={data}"]
    with open(stderr, "wb") as err:  # a file, not a pipe: a full pipe would stall the process before its first shard
        proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=err)  # fmt: skip
        log = table_dir / "_delta_log"
        deadline = time.time() + 420
        while not (log / f"{1:020d}.json").exists():
            if proc.poll() is not None:
                raise AssertionError(f"{args} ended before it could be killed:\n{stderr.read_text()[-3000:]}")
            if time.time() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError(f"no shard committed within 420 s:\n{stderr.read_text()[-3000:]}")
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # a Delta commit appears atomically (written aside, then renamed), so the numbered files are the committed ones
    return max(int(p.name.removesuffix(".json")) for p in log.glob("[0-9]*.json"))


def search_runs(port: int) -> list[dict]:
    """Poll the server until it answers, then return every run of the 'backforth' experiment."""
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=backforth", timeout=5) as r:
                experiment = json.load(r)["experiment"]["experiment_id"]
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(1)
    body = json.dumps({"experiment_ids": [experiment], "max_results": 10}).encode()
    request = urllib.request.Request(f"{base}/runs/search", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)["runs"]
