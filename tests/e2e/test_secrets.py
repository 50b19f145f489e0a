"""Kill anywhere, lose nothing, leak nothing: secrets planted in every place a user puts them, then the pipeline,
``info`` and ``--dry-run`` run as a user runs them, against a real MLflow server, and every file and every line they
left behind is searched for the planted values.

Planted: the password of the tracking URI (``http://user:pass@host:port``; the server has no auth and ignores it),
a token in the environment, an ``api_key`` in a model's options, an Azure storage account key in the env YAML and
an S3A secret key through ``--set spark.conf.<key>=...``, both Spark conf of the local session."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AZURE_KEY = "spark.hadoop.fs.azure.account.key.backforthtest.dfs.core.windows.net"
S3A_SECRET = "spark.hadoop.fs.s3a.secret.key"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, artifacts: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """``mlflow server`` on loopback, its store and artifacts in the test's folder; waits until it answers."""
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}", "--artifacts-destination",
           str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
            return server, port
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                raise AssertionError(f"mlflow server did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(1)


def api(port: int, path: str, body: dict | None = None) -> dict:
    """One call to the server's REST API, without credentials (it has no auth)."""
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


def hits(planted: dict[str, str], roots: list[Path]) -> list[str]:
    """``kind: file`` for every file under ``roots`` whose bytes contain a planted value."""
    found = []
    for root in roots:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            content = path.read_bytes()
            found += [f"{kind}: {path}" for kind, value in planted.items() if value.encode() in content]
    return found


@pytest.mark.timeout(900)
def test_planted_secrets_appear_nowhere_the_pipeline_info_and_dry_run_leave_anything(tmp_path: Path) -> None:
    planted = {kind: f"planted{kind.replace('_', '')}{secrets.token_hex(8)}" for kind in
               ("uri_password", "env_token", "api_key", "azure_key", "s3a_secret")}  # fmt: skip
    data, logs = tmp_path / "data", tmp_path / "logs"
    logs.mkdir()
    store, artifacts = tmp_path / "server" / "mlflow.db", tmp_path / "server" / "artifacts"
    artifacts.mkdir(parents=True)
    server, port = start_server(store, artifacts, logs / "server.log")
    uri = f"http://backforth:{planted['uri_password']}@127.0.0.1:{port}"

    # the env YAML of a copy of the project's config: the tracking URI and an Azure account key as Spark conf
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    env_yaml = yaml.safe_load((conf / "env" / "local.yaml").read_text())
    env_yaml.update({"mlflow": {"tracking_uri": uri}, "spark": {"conf": {AZURE_KEY: planted["azure_key"]}}})
    (conf / "env" / "local.yaml").write_text(yaml.safe_dump(env_yaml))
    inputs = tmp_path / "web.jsonl"  # a small corpus: the sample's 22 web pages
    shutil.copy(REPO / "data" / "sample" / "web.jsonl", inputs)

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SPARK_REMOTE")}
    env["HF_TOKEN"] = planted["env_token"]
    common = ["--conf-dir", str(conf), "--set", f"data_dir={data}",
              "--set", f"spark.conf.{S3A_SECRET}={planted['s3a_secret']}"]  # fmt: skip

    def backforth(name: str, *args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([str(BIN / "backforth"), *args, *common], cwd=REPO, capture_output=True, text=True,
                             timeout=600, env=env)  # fmt: skip
        (logs / f"{name}.stdout").write_text(out.stdout)
        (logs / f"{name}.stderr").write_text(out.stderr)
        assert out.returncode == 0, f"{args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out

    try:
        started = time.perf_counter()
        pipeline = backforth(
            "pipeline", "pipeline",
            "--set", f"ingest.inputs=[{{path: '{inputs}', format: jsonl, source: web, id_field: page_id, "
                     "text_field: content, url_field: url}]",
            "--set", "job.model=fake",
            "--set", f"backtranslate.model_options.options.api_key={planted['api_key']}",
            "--set", "score.model_options.options.reply='On topic. Score: {digit}'",
            "--set", "rewrite.model_options.options.reply='Here it is. [RES] An answer about {words}. [/RES]'",
        )  # fmt: skip
        pipeline_s = time.perf_counter() - started
        info = backforth("info", "info")
        dry_run = backforth("dry-run", "backtranslate", "--dry-run", "--set", "job.model=fake",
                            "--set", f"job.model_options={{options: {{api_key: {planted['api_key']}}}}}")  # fmt: skip
        experiment = api(port, "experiments/get-by-name?experiment_name=backforth")["experiment"]["experiment_id"]
        runs = api(port, "runs/search", {"experiment_ids": [experiment], "max_results": 50})["runs"]
    finally:
        server.terminate()
        server.wait(timeout=30)

    # the runs went to the server through the URI with the password in it
    jobs = sorted(t["value"] for r in runs for t in r["data"]["tags"] if t["key"] == "backforth.job")
    assert jobs == sorted(["pipeline", "ingest", "clean", "dedup", "seed", "backtranslate", "score", "filter",
                           "rewrite", "export", "report"]), jobs  # fmt: skip
    exported = data / "export" / "rewrite"
    assert list((exported / "jsonl").rglob("*.json")) and (exported / "report.html").is_file()
    resolved = list(artifacts.rglob("config/resolved.yaml"))
    assert len(resolved) == 10  # one per step of the pipeline
    shown = yaml.safe_load(resolved[0].read_text())
    assert shown["mlflow"]["tracking_uri"] == f"http://backforth:***@127.0.0.1:{port}"
    assert shown["spark"]["conf"] == {AZURE_KEY: "***", S3A_SECRET: "***"}
    # what the commands printed is there, with the secrets masked
    assert "backforth pipeline: done" in pipeline.stdout and f"127.0.0.1:{port}" in pipeline.stdout
    assert f"MLflow store:    http://backforth:***@127.0.0.1:{port}" in info.stdout
    assert f"{AZURE_KEY}: '***'" in dry_run.stdout and "api_key: '***'" in dry_run.stdout
    assert "estimate for backtranslate" in dry_run.stdout

    # and the planted values nowhere: data folder (tables, metastore, exported files, report), the server's store
    # and artifacts, its log, and everything the commands printed
    assert hits(planted, [data, store.parent, logs]) == []
    print(f"pipeline {pipeline_s:.0f} s, {len(runs)} runs")
