"""One cluster for the whole pipeline: on a loopback standalone cluster whose workers each declare one GPU (a
discovery script per worker), CPU stages run with every core while the LLM step's generation stage asks for a GPU
per task through stage-level scheduling, so each engine call holds one GPU address and engines never share one.
The GPUs are the ``sim`` engine (it sleeps as long as vLLM would take); nothing here needs a device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from backforth.devcluster import LoopbackCluster

pytestmark = pytest.mark.cluster
HERE = Path(__file__).resolve().parent


def overlapping(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


@pytest.mark.timeout(600)
def test_cpu_stages_use_every_core_and_generation_takes_one_gpu_per_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the executors' Python workers import this checkout's backforth, whatever checkout the venv was installed from
    paths = [str(HERE.parents[1]), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    with LoopbackCluster(tmp_path / "cluster", workers=2, cores_per_worker=2, gpus_per_worker=1) as cluster:
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
        done = subprocess.run([sys.executable, str(HERE / "gpu_stages_driver.py"), cluster.master, str(tmp_path)],
                              capture_output=True, text=True, timeout=540, env=env)  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])

    # the CPU stage: 8 tasks on two 2-core executors ran two at a time on each, and held no GPU
    by_executor: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for task in result["cpu"]:
        by_executor[task["executor"]].append((task["start"], task["end"]))
    assert len(by_executor) == 2 and all(t["gpus"] == "" for t in result["cpu"])
    assert all(overlapping(spans) == 2 for spans in by_executor.values())

    # the generation stage: every engine call held exactly one GPU address, both GPUs worked, and calls on one GPU
    # never overlapped (one task per GPU, though each executor has two cores)
    events = [json.loads(x) for p in (tmp_path / "engine-log").glob("*.jsonl") for x in p.read_text().splitlines()]
    calls = [e for e in events if e["event"] == "generate"]
    assert calls and all(len(e["gpus"]) == 1 for e in calls)
    per_gpu: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for e in calls:
        per_gpu[e["gpus"][0]].append((e["start"], e["end"]))
    assert set(per_gpu) == {"0", "1"}
    assert all(overlapping(spans) == 1 for spans in per_gpu.values())
    metrics = result["metrics"]
    assert metrics["docs_rows"] == 24 and metrics["shard_tasks"] == 2  # one engine per GPU, from the executors' GPUs
    assert sum(e["n"] for e in calls) == 24
