# Databricks notebook source
# MAGIC %md
# MAGIC # Sample pairs side by side: document, instruction, judge score, rewrite
# MAGIC Read a handful before trusting any number: this is what the fine-tuning data will look like.
# MAGIC Outside Databricks: `python notebooks/explore/samples.py [--env local] [--set data_dir=...]`.

# COMMAND ----------

from backforth.notebook import open_notebook

nb = open_notebook(globals())

# COMMAND ----------

if nb.exists("docs_clean", "instructions", "scores", "responses"):
    versions = {step: nb.version(step) for step in ("backtranslate", "score", "rewrite")}  # newest finished runs
    pairs = nb.sql(f"""
        WITH i AS (SELECT * FROM {{instructions}} WHERE step_version = '{versions["backtranslate"]}'),
             s AS (SELECT * FROM {{scores}} WHERE pair_kind = 'matched' AND step_version = '{versions["score"]}'),
             r AS (SELECT doc_id, response AS rewrite, status FROM {{responses}}
                   WHERE step_version = '{versions["rewrite"]}')
        SELECT i.doc_id, substr(d.text, 1, 300) AS document, i.instruction, s.score, round(s.expected_score, 2) AS
               expected_score, r.status, substr(r.rewrite, 1, 300) AS rewrite
        FROM i JOIN {{docs_clean}} d USING (doc_id) LEFT JOIN s USING (doc_id) LEFT JOIN r USING (doc_id)
        WHERE i.instruction IS NOT NULL AND i.reject_reason IS NULL
        ORDER BY r.rewrite IS NULL, s.expected_score DESC NULLS LAST, i.doc_id LIMIT 5""").toPandas()
    for row in pairs.itertuples():
        print(f"--- {row.doc_id}  score={row.score} expected={row.expected_score} rewrite={row.status}")
        print(f"DOCUMENT    {row.document!r}")
        print(f"INSTRUCTION {row.instruction!r}")
        print(f"REWRITE     {row.rewrite!r}\n")
    print(f"{len(pairs)} sample pairs")
