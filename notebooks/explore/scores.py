# Databricks notebook source
# MAGIC %md
# MAGIC # The judge: score distribution and whether it tells pairs apart
# MAGIC `matched` rows score a document against its own back-translated instruction; `control` rows pair it with another
# MAGIC document's instruction. A useful judge scores matched pairs clearly higher (sanity AUC well above 0.5).
# MAGIC Outside Databricks: `python notebooks/explore/scores.py [--env local] [--set data_dir=...]`.

# COMMAND ----------

from backforth.notebook import open_notebook

nb = open_notebook(globals())
has_scores = nb.exists("scores")
newest = f"step_version = '{nb.version('score')}'"  # the newest finished score run (lineage: step_runs)

# COMMAND ----------

if has_scores:
    nb.show(
        nb.sql(f"""
        SELECT mode, pair_kind, count(*) AS pairs, round(avg(CAST(valid AS INT)), 3) AS valid_rate,
               round(avg(expected_score), 3) AS mean_expected, round(avg(score), 3) AS mean_score
        FROM {{scores}} WHERE {newest} GROUP BY 1, 2 ORDER BY 1, 2""")
    )

# COMMAND ----------

# MAGIC %md
# MAGIC ## Score histogram (newest finished score run)

# COMMAND ----------

if has_scores:
    counts = nb.sql(f"""
        SELECT pair_kind, score, count(*) AS n FROM {{scores}}
        WHERE {newest} AND score IS NOT NULL GROUP BY 1, 2""").toPandas()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for offset, kind in ((-0.2, "matched"), (0.2, "control")):
        part = counts[counts.pair_kind == kind]
        ax.bar(part.score + offset, part.n, width=0.4, label=kind)
    ax.set_xticks([1, 2, 3, 4, 5])
    ax.set_xlabel("score")
    ax.set_ylabel("pairs")
    ax.legend()
    ax.set_title("judge scores")
    nb.figure(fig, "score_histogram")
    print(counts.sort_values(["pair_kind", "score"]).to_string(index=False))
