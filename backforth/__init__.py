"""backforth: instruction back-and-forth translation on Spark."""

__version__ = "0.1.0"
