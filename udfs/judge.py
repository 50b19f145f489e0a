"""The judge's summary over its scores rows: valid rate, histogram, and the matched-vs-control AUC.

A DataFrame in, plain Python out (one aggregation and one small collect); used by the score step and the report.
"""

from __future__ import annotations

import math
from typing import Any

from backforth.udfs.stats import auc


def judge_summary(rows: Any) -> dict[str, Any]:
    """Valid-score rate, score histogram, and the matched-vs-control AUC for one step version."""
    from pyspark.sql import functions as F

    stats = rows.groupBy("pair_kind", "score", "invalid_reason").agg(F.count("*").alias("n")).collect()
    matched = [r for r in stats if r["pair_kind"] == "matched"]
    total = sum(r["n"] for r in matched)
    valid = sum(r["n"] for r in matched if r["score"] is not None)
    metrics: dict[str, float] = {"scored_pairs": total, "valid_scores": valid}
    metrics["valid_rate"] = round(valid / total, 4) if total else 0.0
    for r in matched:
        if r["invalid_reason"]:
            metrics[f"invalid.{r['invalid_reason']}"] = metrics.get(f"invalid.{r['invalid_reason']}", 0) + r["n"]
    histogram = {str(s): 0 for s in range(1, 6)}
    for r in matched:
        if r["score"] is not None:
            histogram[str(r["score"])] += r["n"]
    for s, n in histogram.items():
        metrics[f"score.{s}"] = n
    controls = rows.where("pair_kind = 'control'").select("doc_id", F.col("expected_score").alias("c"))
    paired = (
        rows.where("pair_kind = 'matched'")
        .select("doc_id", F.col("expected_score").alias("m"))
        .join(controls, "doc_id")
    )
    got = paired.collect()
    value = auc([r["m"] for r in got], [r["c"] for r in got])
    metrics["sanity_pairs"] = len(got)
    if math.isnan(value):
        sanity = "judge sanity check: not enough valid control pairs to compute an AUC"
    else:
        metrics["sanity_auc"] = round(value, 4)
        verdict = (
            "the judge cannot tell matched from mismatched pairs: its scores are not a quality signal"
            if value < 0.6
            else "the judge separates matched from mismatched pairs"
        )
        sanity = f"judge sanity AUC {value:.2f} on {len(got)} control pairs (0.5 = chance): {verdict}"
    return {"metrics": metrics, "histogram": histogram if valid else {}, "sanity": sanity}
