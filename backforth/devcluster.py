"""A Spark standalone cluster on loopback, started from the pyspark installation: one master and N workers, each in
its own process group so that every daemon dies with the cluster, even when a test or a benchmark fails.

Workers can declare GPUs: each gets a discovery script that reports its own addresses (worker i → ``i``, or
``i*k … i*k+k-1`` for k GPUs), so that Spark's resource scheduling hands every task a distinct address and the
``sim`` engine, which only sleeps, stands in for the device. Used by ``tests/cluster`` and ``bench/llm_scale.py``;
nothing on the job path imports it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def gpu_discovery_script(folder: Path, addresses: list[str]) -> Path:
    """A discovery script reporting ``addresses`` as this worker's GPUs (Spark's JSON resource format)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gpus.sh"
    body = json.dumps({"name": "gpu", "addresses": addresses})
    path.write_text(f"#!/usr/bin/env bash\necho '{body}'\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@dataclass
class LoopbackCluster:
    """``with LoopbackCluster(root, workers=4, gpus_per_worker=1) as c: ...`` → ``c.master`` is the spark:// URL."""

    root: Path
    workers: int = 2
    cores_per_worker: int = 1
    memory_per_worker: str = "2g"
    gpus_per_worker: int = 0
    timeout_s: float = 120
    master: str = ""
    worker_dirs: list[Path] = field(default_factory=list)
    _procs: list[subprocess.Popen] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        home = spark_home()
        env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_LOG_DIR": str(self.root / "logs")}  # fmt: skip
        env.pop("PYSPARK_PYTHON", None)
        return env

    def _start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process in stop()
        cmd = [str(spark_home() / "bin" / "spark-class"), *args]
        env = {**self.env(), **(extra_env or {})}
        self._procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True))  # fmt: skip

    def start(self) -> LoopbackCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        port, ui = free_port(), free_port()
        self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                               "--webui-port", str(ui)])  # fmt: skip
        self.master = f"spark://127.0.0.1:{port}"
        for i in range(self.workers):
            work = self.root / f"worker{i}"
            self.worker_dirs.append(work)
            opts = []
            if self.gpus_per_worker:
                k = self.gpus_per_worker
                script = gpu_discovery_script(work, [str(i * k + j) for j in range(k)])
                opts = [f"-Dspark.worker.resource.gpu.amount={k}",
                        f"-Dspark.worker.resource.gpu.discoveryScript={script}"]  # fmt: skip
            self._start(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores",
                                       str(self.cores_per_worker), "--memory", self.memory_per_worker,
                                       "--webui-port", str(free_port()), "--work-dir", str(work), self.master],
                        {"SPARK_WORKER_OPTS": " ".join(opts)})  # fmt: skip
        self._wait(lambda: self._alive(ui) == self.workers, f"{self.workers} alive workers")
        return self

    def _alive(self, ui: int) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as resp:
                return int(json.load(resp).get("aliveworkers", 0))
        except OSError:
            return 0

    def _wait(self, predicate, what: str) -> None:  # noqa: ANN001 - a zero-argument callable
        deadline = time.time() + self.timeout_s
        while time.time() < deadline:
            dead = [p.args for p in self._procs if p.poll() is not None]
            if dead:
                self.stop()
                raise RuntimeError(f"{dead} exited while waiting for {what} (logs in {self.root})")
            if predicate():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"timed out after {self.timeout_s:.0f} s waiting for {what} (logs in {self.root})")

    def stop(self) -> None:
        for proc in self._procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        self._procs.clear()

    def __enter__(self) -> LoopbackCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
