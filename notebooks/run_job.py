# Databricks notebook source
# MAGIC %md
# MAGIC # Run one backforth job
# MAGIC Widgets in, the `backforth` CLI out: this notebook has no logic of its own, so a job behaves the same
# MAGIC here, under `spark-submit` and on a laptop. `overrides` takes `key=value` pairs separated by spaces
# MAGIC (e.g. `job.reprocess=true`).
# MAGIC Outside Databricks: `python notebooks/run_job.py <job> [--env local] [--set k=v ...]`.

# COMMAND ----------

import shlex
import sys

from backforth.cli import main

try:
    dbutils  # type: ignore[name-defined]  # noqa: B018 - defined by the Databricks runtime
except NameError:
    args = sys.argv[1:] or ["--help"]
else:
    dbutils.widgets.text("job", "ingest", "job")  # type: ignore[name-defined]  # noqa: F821
    dbutils.widgets.dropdown("env", "dev", ["dev", "prod", "local"], "env")  # type: ignore[name-defined]  # noqa: F821
    dbutils.widgets.text("overrides", "", "overrides")  # type: ignore[name-defined]  # noqa: F821
    get = dbutils.widgets.get  # type: ignore[name-defined]  # noqa: F821
    args = [get("job"), "--env", get("env")]
    for pair in shlex.split(get("overrides")):
        args += ["--set", pair]

# COMMAND ----------

code = main(args)
if code:
    raise SystemExit(code)
