"""The driver of tests/cluster/test_gpu_stages.py, run in its own process (one SparkContext per process): a session
on the loopback cluster whose executors declare one GPU each and no task GPU amount, a CPU stage, then the
backtranslate step on the simulated GPU engine. Prints one JSON line with what the tasks recorded."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path


def main(master: str, work: Path) -> None:
    from backforth.config import Settings, SparkConfig, TablesConfig
    from backforth.registry import get_job, load_jobs
    from backforth.runner import run_job
    from backforth.spark import build_local_session

    conf = {"spark.executor.cores": "2", "spark.executor.memory": "768m", "spark.cores.max": "4",
            "spark.executor.resource.gpu.amount": "1",  # and no spark.task.resource.gpu.amount: CPU stages keep cores
            "spark.scheduler.minRegisteredResourcesRatio": "1.0", "spark.sql.shuffle.partitions": "4"}  # fmt: skip
    settings = Settings(data_dir=str(work / "data"), tables=TablesConfig(schema="gs"),
                        spark=SparkConfig(master=master, driver_memory="1g", conf=conf))  # fmt: skip
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    spark = build_local_session(settings)

    def cpu_task(frames):  # noqa: ANN001, ANN202 - a mapInPandas function
        import pandas as pd
        from pyspark import TaskContext

        started = time.time()
        n = sum(len(f) for f in frames)
        time.sleep(2.0)
        gpus = TaskContext.get().resources().get("gpu")
        yield pd.DataFrame({"n": [n], "executor": [os.getcwd()], "start": [started], "end": [time.time()],
                            "gpus": [",".join(gpus.addresses) if gpus else ""]})  # fmt: skip

    schema = "n long, executor string, start double, end double, gpus string"
    cpu = [r.asDict() for r in spark.range(0, 8, 1, 8).mapInPandas(cpu_task, schema).collect()]

    spark.sql("CREATE SCHEMA IF NOT EXISTS gs")
    docs = [(f"g{i:02d}", f"Notes on topic number {i}: how the parts fit, why it matters, and what to try. " * 6)
            for i in range(24)]  # fmt: skip
    spark.createDataFrame(docs, "doc_id string, text string").write.format("delta").saveAsTable("gs.docs_clean")
    spark.table("gs.docs_clean").selectExpr("doc_id", "true AS is_kept").write.format("delta").saveAsTable(
        "gs.docs_dedup"
    )
    load_jobs()
    spec = get_job("backtranslate")
    options = {"options": {"log_dir": str(work / "engine-log"), "time_scale": 0.2}}
    settings.job = replace(spec.config_cls(model="sim-h100", model_options=options), shard_rows=8)
    outcome = run_job(spec, settings, spark)
    print(json.dumps({"cpu": cpu, "metrics": outcome.metrics}))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
