"""Jobs: one module per pipeline step, each registered with ``@job`` and run by ``backforth <job>``."""
