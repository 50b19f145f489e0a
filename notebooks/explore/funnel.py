# Databricks notebook source
# MAGIC %md
# MAGIC # The funnel: documents per stage and why they left
# MAGIC Every step keeps what it drops, with a reason, so the whole funnel is plain SQL over the step tables.
# MAGIC Outside Databricks: `python notebooks/explore/funnel.py [--env local] [--set data_dir=...]`.

# COMMAND ----------

from backforth.notebook import open_notebook

nb = open_notebook(globals())

# COMMAND ----------

# MAGIC %md
# MAGIC ## Documents per stage
# MAGIC The funnel of the newest finished run, from the lineage table `step_runs`: the same counts as
# MAGIC `backforth pipeline`'s summary, the dataset card and the report (one table catalog: `backforth.catalog`).

# COMMAND ----------

import pandas as pd  # noqa: E402 - a notebook cell imports what it uses

from backforth import catalog  # noqa: E402

stages = catalog.funnel(nb.spark, nb.settings)
funnel = pd.DataFrame(
    [(s.label, s.kept, s.step_version or "", ", ".join(f"{r} {n}" for r, n in s.reasons.items())) for s in stages],
    columns=["stage", "rows", "step_version", "dropped"],
)
print(funnel.to_string(index=False))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Why documents and pairs were dropped

# COMMAND ----------

reasons = []
if nb.exists("ingest_rejects"):
    reasons.append("SELECT 'ingest' AS step, reason, count(*) AS n FROM {ingest_rejects} GROUP BY 2")
if nb.exists("docs_clean"):
    reasons.append("SELECT 'clean', drop_reason, count(*) FROM {docs_clean} WHERE drop_reason IS NOT NULL GROUP BY 2")
if nb.exists("docs_dedup"):
    reasons.append("SELECT 'dedup', dup_reason, count(*) FROM {docs_dedup} WHERE dup_reason IS NOT NULL GROUP BY 2")
if nb.exists("instructions"):
    reasons.append(
        "SELECT 'backtranslate', coalesce(reject_reason, 'engine_error'), count(*) FROM {instructions} "
        "WHERE reject_reason IS NOT NULL OR error IS NOT NULL GROUP BY 2"
    )
if nb.exists("scores"):
    reasons.append("SELECT 'score', invalid_reason, count(*) FROM {scores} WHERE invalid_reason IS NOT NULL GROUP BY 2")
if nb.exists("responses"):
    reasons.append(
        "SELECT concat(kind, ' (', 'response)'), status, count(*) FROM {responses} "
        "WHERE status NOT LIKE 'ok%' GROUP BY 1, 2"
    )
if reasons:
    nb.show(nb.sql(" UNION ALL ".join(reasons) + " ORDER BY 1, 3 DESC"))
