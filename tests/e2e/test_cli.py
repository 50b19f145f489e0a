"""The CLI end to end, as a user runs it: ingest the bundled sample twice, query it, read the run back from a real
MLflow server started against the store the CLI wrote."""

from __future__ import annotations

import json
import os
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


def backforth(*args: str, data: Path) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "backforth"), *args, "--set", f"data_dir={data}"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
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
def test_ingest_sample_twice_query_and_read_run_from_mlflow_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = backforth("ingest", data=data)
    inserted = metric(first.stdout, "docs_inserted")
    rejects = metric(first.stdout, "rejects_inserted")
    assert inserted >= 100 and rejects >= 8  # the sample has ~105 documents and 10 broken inputs
    second = backforth("ingest", data=data)
    assert metric(second.stdout, "docs_inserted") == 0 and metric(second.stdout, "files_read") == 0

    counted = backforth("sql", "SELECT count(*) AS n FROM docs_raw", data=data)
    assert f"|{int(inserted)}|" in counted.stdout.replace(" ", "")

    cleaned = backforth("clean", data=data)
    assert metric(cleaned.stdout, "docs_in") == inserted
    kept = metric(cleaned.stdout, "docs_kept")
    assert 40 <= kept <= inserted - 30  # the sample's junk, short, foreign and broken documents go
    deduped = backforth("dedup", data=data)
    assert metric(deduped.stdout, "docs_in") == kept
    assert metric(deduped.stdout, "dropped.dup_exact") >= 5 and metric(deduped.stdout, "dropped.dup_minhash") >= 5
    reasons = backforth("sql", "SELECT dup_reason, count(*) FROM docs_dedup GROUP BY 1 ORDER BY 1", data=data)
    assert "dup_exact" in reasons.stdout and "dup_minhash" in reasons.stdout
    # the pipeline killed with SIGKILL during an LLM step, then resumed: no duplicate, no missing row, nothing
    # finished regenerated
    kept = int(metric(deduped.stdout, "docs_kept"))
    log_dir = tmp_path / "fake-log"
    fake = ["--set", "job.model=fake", "--set", "job.shard_rows=12",
            "--set", f"job.model_options={{options: {{log_dir: '{log_dir}', delay_s: 1.5}}}}"]  # fmt: skip
    killed_rows = kill_after_first_shard(
        ["pipeline", "--steps", "backtranslate", *fake], data, data / "warehouse/backforth.db/instructions"
    )
    assert 0 < killed_rows < kept
    before = prompts_generated(log_dir)
    resumed = backforth("backtranslate", *fake, data=data)
    assert metric(resumed.stdout, "docs_rows") == kept - killed_rows
    assert prompts_generated(log_dir) - before == kept - killed_rows  # finished shards were not regenerated
    unique = backforth("sql", "SELECT count(*) AS n, count(DISTINCT doc_id) AS d FROM instructions", data=data)
    assert f"|{kept}|{kept}|" in unique.stdout.replace(" ", "")
    again = backforth("backtranslate", *fake, data=data)
    assert metric(again.stdout, "docs_rows") == 0

    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        runs = search_runs(port)
    finally:
        server.terminate()
        server.wait(timeout=30)
    # ingest ×2, clean, dedup, the killed pipeline and its backtranslate step (both left RUNNING), resumed, re-run
    assert len(runs) == 8
    by_start = sorted(runs, key=lambda r: r["info"]["start_time"])
    assert [r["info"]["status"] for r in by_start[4:7]] == ["RUNNING", "RUNNING", "FINISHED"]
    bt_tags = {t["key"]: t["value"] for t in by_start[6]["data"]["tags"]}
    assert bt_tags["backforth.job"] == "backtranslate"
    assert bt_tags["backforth.prompt.backtranslate"] == "backforth-backtranslate@1"
    run = by_start[0]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert tags["backforth.job"] == "ingest" and len(tags["backforth.config_hash"]) == 12
    assert tags["table.output_table"] == "backforth.docs_raw@v1"
    assert metrics["docs_inserted"] == inserted and metrics["rejects_inserted"] == rejects
    assert params["job.output_table"] == "docs_raw"
    datasets = {d["dataset"]["name"]: d for d in run["inputs"]["dataset_inputs"]}
    source = json.loads(datasets["backforth.docs_raw"]["dataset"]["source"])
    assert source["delta_table_version"] == "1"
    assert [t["value"] for t in datasets["backforth.docs_raw"]["tags"] if t["key"] == "mlflow.data.context"] == [
        "output"
    ]


def prompts_generated(log_dir: Path) -> int:
    events = [json.loads(x) for p in log_dir.glob("engine-*.jsonl") for x in p.read_text().splitlines()]
    return sum(e.get("n", 0) for e in events if e["event"] == "generate")


def kill_after_first_shard(args: list[str], data: Path, table_dir: Path) -> int:
    """Start ``backforth <args>``, SIGKILL its whole process group once the table has its first committed shard
    (Delta version 1; version 0 creates it), and return the rows committed by then."""
    import signal
    import time

    cmd = [str(BIN / "backforth"), *args, "--set", f"data_dir={data}"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    first = table_dir / "_delta_log" / f"{1:020d}.json"
    deadline = time.time() + 240
    while not first.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{args} ended before it could be killed:\n{proc.stderr.read().decode()[-3000:]}")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("no shard committed within 240 s")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    counted = backforth("sql", "SELECT count(*) AS n FROM instructions", data=data)
    return int(counted.stdout.split("|")[-2].strip())


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
