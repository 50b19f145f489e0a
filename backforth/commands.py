"""CLI commands that read the tables without a Spark job: ``info``, ``status`` and ``review``."""

from __future__ import annotations

import argparse

from backforth.config import Settings, load_settings


def cmd_light(args: argparse.Namespace) -> int:
    """Commands that read the tables without Spark: ``status`` and ``review``."""
    settings = load_settings(None, None, args.env, args.overrides, args.conf_dir)
    if args.command == "review":
        from backforth.review import serve

        serve(settings, args.host, args.port, args.reviewer)
        return 0
    from backforth.status import status

    print(status(settings))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Tell the user where things are and the next commands to type."""
    from backforth.catalog import TABLES
    from backforth.masking import mask_url_secrets
    from backforth.runner import tracking_uri

    settings: Settings = load_settings(None, None, args.env, args.overrides, args.conf_dir)
    uri = mask_url_secrets(tracking_uri(settings))  # a password in it is not for the terminal
    width = max(len(t.name) for t in TABLES.values())
    tables = "\n".join(
        f"  {t.name:<{width}}  key {', '.join(t.key) + (' + step_version' if t.versioned else ''):<32} {t.description}"
        for t in TABLES.values()
    )
    print(f"Tables (schema '{settings.tables.schema}'; written by the steps, lineage in step_runs):\n{tables}")
    print(
        f"""
Local data folder: {settings.data_path}
  tables (Delta):  {settings.data_path / "warehouse"}   schema '{settings.tables.schema}'
  MLflow store:    {uri}
  SFT files:       {settings.data_path / "export" / "rewrite"}   (jsonl/, parquet/, README.md)
  Report:          {settings.data_path / "export" / "rewrite" / "report.html"}   (opens offline)

Review the pairs in a browser (read, compare, label; filter and export honour the labels):
  backforth review          (http://127.0.0.1:8765/)

Explore in notebooks (also Databricks notebooks): python notebooks/explore/funnel.py, scores.py, samples.py

Query the tables:
  backforth sql "SELECT source_format, count(*) FROM docs_raw GROUP BY 1"
  backforth sql "SELECT reason, count(*) FROM ingest_rejects GROUP BY 1"
  backforth sql "SELECT drop_reason, count(*) FROM docs_clean GROUP BY 1"
  backforth sql "SELECT doc_id, failed_rules, stats.dup_line_share FROM docs_clean WHERE drop_reason IS NOT NULL"
  backforth sql "SELECT cluster_id, collect_list(doc_id) FROM docs_dedup GROUP BY 1 HAVING count(*) > 1"
  backforth sql "SELECT coalesce(reject_reason, error, 'accepted'), count(*) FROM instructions GROUP BY 1"
  backforth sql "SELECT pair_kind, score, expected_score, invalid_reason FROM scores LIMIT 20"
  backforth sql "SELECT kind, status, count(*) FROM responses GROUP BY 1, 2"
  backforth sql "SELECT messages, url, score, split FROM sft_pairs LIMIT 5"
  backforth sql "SELECT source, count(*) FROM seed_pairs GROUP BY 1"       (after `backforth seed`)
  backforth sql "SELECT reason, count(*) FROM seed_rejects GROUP BY 1"
  backforth sql "SELECT step, step_version, status, rows_out, started_at FROM step_runs ORDER BY started_at"
  backforth sql "DESCRIBE HISTORY docs_raw"

Open MLflow (then browse http://127.0.0.1:5000, experiment '{settings.mlflow.experiment}'):
  mlflow ui --backend-store-uri {uri} --port 5000
(run both from this folder; with `make`, the commands live in .venv/bin/)"""
    )
    return 0
