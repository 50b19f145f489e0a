"""Small statistics on the driver (no Spark): used by the judge's sanity check and the dataset report."""

from __future__ import annotations

from backforth.stats import auc

__all__ = ["auc"]
