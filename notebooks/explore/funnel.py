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
# MAGIC The LLM tables hold every step version ever run; these counts take the newest one of each.

# COMMAND ----------

stages = []
if nb.exists("docs_raw", "docs_clean", "docs_dedup"):
    stages += [
        "SELECT 1 AS i, 'ingested' AS stage, count(*) AS n FROM {docs_raw}",
        "SELECT 2, 'clean: kept', count_if(drop_reason IS NULL) FROM {docs_clean}",
        "SELECT 3, 'dedup: kept', count_if(dup_reason IS NULL) FROM {docs_dedup}",
    ]
newest = "step_version = (SELECT max_by(step_version, created_at) FROM {t})"
if nb.exists("instructions"):
    stages.append(
        "SELECT 4, 'instruction accepted', count_if(instruction IS NOT NULL AND reject_reason IS NULL "
        "AND error IS NULL) FROM {instructions} WHERE " + newest.format(t="{instructions}")
    )
if nb.exists("scores"):
    stages.append(
        "SELECT 5, 'judge: valid score', count_if(valid) FROM {scores} WHERE pair_kind = 'matched' AND "
        + newest.format(t="{scores}")
    )
if nb.exists("pairs_filtered"):
    stages.append(
        "SELECT 6, 'kept by the filter', count(*) FROM {pairs_filtered} WHERE filter_version = "
        "(SELECT max_by(filter_version, created_at) FROM {pairs_filtered})"
    )
if nb.exists("responses"):
    stages.append("SELECT 7, 'rewrite usable', count_if(status LIKE 'ok%') FROM {responses} WHERE kind = 'rewrite'")
if nb.exists("sft_pairs"):
    stages.append("SELECT 8, 'exported', count(*) FROM {sft_pairs}")
if stages:
    funnel = nb.sql(" UNION ALL ".join(stages) + " ORDER BY 1").toPandas()
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
