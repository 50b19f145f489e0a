"""Jobs: one module per pipeline step, each registered with ``@job`` (or declared with ``llm_step``) and run by
``backforth <job>``. ``PIPELINE`` is the order ``backforth pipeline`` runs them in."""

PIPELINE = ["ingest", "clean", "dedup", "seed", "backtranslate", "score", "filter", "rewrite", "export", "report"]
