"""backforth on a real Spark standalone cluster on loopback: a master and two workers started from the pyspark
installation, the pipeline submitted with spark-submit and run by the packed virtualenv of ``deploy/pack_env.py``
(not this interpreter), Delta outputs and the MLflow run tree checked afterwards.

It proves what local mode cannot: the wheel and its config work on executors that only have the archive, the
engine is built once per Python worker of each executor, and the CLI behaves the same under spark-submit.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from backforth.devcluster import LoopbackCluster, spark_home

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def packing(tmp_path_factory: pytest.TempPathFactory):
    """``deploy/pack_env.py`` started in the background (the cluster's daemons start meanwhile); its dependency venv
    is cached outside the clone, keyed by the lock file. Yields (process, output folder, log file)."""
    from backforth.spark import cache_dir

    out = cache_dir() / "test-dist"
    log = tmp_path_factory.mktemp("pack") / "pack_env.log"
    cmd = [sys.executable, str(REPO / "deploy" / "pack_env.py"), "--out", str(out)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        yield proc, out, log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def packed(packing) -> Path:
    """The finished ``deploy/pack_env.py`` output."""
    proc, out, log = packing
    returncode = proc.wait(timeout=600)
    assert returncode == 0, f"pack_env failed:\n{log.read_text()[-5000:]}"
    return out


@pytest.fixture(scope="module")
def cluster(packing, tmp_path_factory: pytest.TempPathFactory):
    """A standalone master and two one-core workers on 127.0.0.1 (started while the env is packed); every daemon is
    killed afterwards, even when the test fails (each runs in its own process group)."""
    with LoopbackCluster(tmp_path_factory.mktemp("standalone"), workers=2, cores_per_worker=1) as c:
        yield {"master": c.master, "workers": c.worker_dirs, "root": c.root}


@pytest.mark.timeout(900)
def test_pipeline_submitted_to_standalone_cluster_with_packed_env(
    cluster: dict, spark, packed: Path, tmp_path: Path
) -> None:  # fixture order: packing, cluster and the suite's local session start side by side, then packing ends
    from backforth.spark import submit_args

    archive = packed / "backforth-env.tar.gz"
    driver_env = packed / "env"  # the driver (client mode) runs the same packed environment, from its build folder
    data = tmp_path / "data"
    log_dir = tmp_path / "engine-log"
    mlflow_db = tmp_path / "mlflow.db"
    out = tmp_path / "export"
    conf = {
        "spark.pyspark.driver.python": str(driver_env / "bin" / "python"),
        "spark.executor.cores": "1",
        "spark.executor.memory": "1g",
        "spark.cores.max": "2",
        "spark.python.worker.reuse": "true",
        "spark.sql.warehouse.dir": str(data / "warehouse"),
        "spark.sql.shuffle.partitions": "4",
        "spark.databricks.delta.snapshotPartitions": "2",  # as local sessions: Delta log replay on tiny tables
        "spark.ui.enabled": "false",
    }
    cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", cluster["master"], "--deploy-mode", "client",
           "--driver-memory", "2g", *submit_args(archive=str(archive), offline=True)]  # fmt: skip
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    fake = f"{{options: {{log_dir: '{log_dir}'}}}}"
    cmd += [
        # every step but the report (tested in-process; here it would only add minutes of MLflow logging)
        str(packed / "backforth_submit.py"), "pipeline", "--env", "local",
        "--steps", "ingest,clean,dedup,backtranslate,score,filter,rewrite,export",
        "--set", f"data_dir={data}",
        "--set", "mlflow.allow_local_store=true",  # the test reads the SQLite store after the driver is gone
        "--set", "job.model=fake",
        "--set", "backtranslate.shard_rows=16",  # several shards: each Python worker serves more than one
        "--set", f"job.model_options={fake}",
        "--set", f"score.model_options={{options: {{log_dir: '{log_dir}', reply: 'On topic. Score: {{digit}}'}}}}",
        "--set", "filter.mode=top_fraction",
        "--set", "filter.fraction=0.5",
        "--set", f"rewrite.model_options={{options: {{log_dir: '{log_dir}', reply: '[RES] About {{words}}. [/RES]'}}}}",
        "--set", f"export.output_dir={out}",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_db}", "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_HOME": str(spark_home())}  # fmt: skip
    for var in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV"):
        env.pop(var, None)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, f"{shlex.join(cmd)}\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"

    # executors unpacked the archive and ran their Python workers from it: every engine was built in ./env of an
    # executor folder of one of the two workers, once per (Python worker, profile), and both workers took part
    events = [json.loads(x) for p in log_dir.glob("engine-*.jsonl") for x in p.read_text().splitlines()]
    built = [e for e in events if e["event"] == "construct"]
    calls = Counter((e["pid"], e["profile"]) for e in events if e["event"] != "construct")
    assert built and calls
    workers = {str(w) for w in cluster["workers"]}
    homes = {next((w for w in workers if e["prefix"].startswith(w)), None) for e in built}
    assert homes == workers, f"engines built outside the executors' packed env: {[e['prefix'] for e in built]}"
    assert all(e["prefix"].endswith("/env") for e in built)
    per_worker_profile = [(e["pid"], e["profile"]) for e in built]
    assert len(per_worker_profile) == len(set(per_worker_profile)), "an engine was built twice in one Python worker"
    pids = {pid for pid, _ in per_worker_profile}
    backtranslate = min(built, key=lambda e: e["time"])["profile"]  # the first LLM step
    # later shards reused a worker's cached engine: several calls, one construction. Not every worker need show it:
    # the fake engine answers in milliseconds, so while one executor still starts its Python worker the other may
    # take every remaining task (CI saw a worker with one call)
    assert any(calls[(pid, profile)] >= 2 for pid, profile in per_worker_profile if profile == backtranslate)
    assert len(pids) >= 2
    assert len({e["profile"] for e in built}) == 3  # backtranslate, score and rewrite profiles

    # the MLflow run tree: one parent, a finished nested run per step
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{mlflow_db}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("backforth.job") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    steps = parents[0].data.tags["backforth.steps"].split(",")
    assert sorted(r.data.tags["backforth.job"] for r in children) == sorted(steps)
    assert all(r.info.status == "FINISHED" for r in children)
    metrics = {r.data.tags["backforth.job"]: r.data.metrics for r in children}

    # the Delta tables the steps wrote, read back by path with the suite's own (local) session
    tables = data / "warehouse" / "backforth.db"
    raw = spark.read.format("delta").load(str(tables / "docs_raw")).count()
    assert raw == metrics["ingest"]["docs_inserted"] and raw >= 100
    instructions = spark.read.format("delta").load(str(tables / "instructions")).count()
    assert instructions == metrics["dedup"]["docs_kept"]
    exported = spark.read.format("delta").load(str(tables / "sft_pairs")).count()
    assert exported == metrics["export"]["pairs_exported"] > 0
    lines = [x for f in (out / "jsonl").glob("*/*.json") for x in f.read_text().splitlines()]
    assert len(lines) == exported
