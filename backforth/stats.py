"""Rank statistics shared by the judge's sanity check, the report and the review app (no Spark)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive scores higher than a negative) + ½ P(tie): 0.5 = cannot tell them apart. NaN if a side is empty.
    Rank-based, O((n + m) log(n + m))."""
    pos = [float(x) for x in positives if x is not None and not math.isnan(x)]
    neg = [float(x) for x in negatives if x is not None and not math.isnan(x)]
    if not pos or not neg:
        return float("nan")
    merged = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum, i = 0.0, 0
    while i < len(merged):
        j = i
        while j < len(merged) and merged[j][0] == merged[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2  # 1-based ranks i+1 .. j share their mean
        rank_sum += mean_rank * sum(1 for k in range(i, j) if merged[k][1] == 1)
        i = j
    n, m = len(pos), len(neg)
    return (rank_sum - n * (n + 1) / 2) / (n * m)
