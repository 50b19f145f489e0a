"""The report's settings (``conf/jobs/report.yaml``), the kinds it compares, its page's text and where the page goes."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backforth.report_html import Prose

KINDS = ("raw", "rewrite", "distill")  # raw = the filtered pairs with the web document as the response
KIND_LABELS = {"raw": "raw document", "rewrite": "rewritten", "distill": "distilled"}


@dataclass
class ReportConfig:
    input_docs_table: str = "docs_raw"
    input_rejects_table: str = "ingest_rejects"
    input_clean_table: str = "docs_clean"
    input_dedup_table: str = "docs_dedup"
    input_instructions_table: str = "instructions"
    input_scores_table: str = "scores"
    input_pairs_table: str = "pairs_filtered"
    input_responses_table: str = "responses"
    input_export_table: str = "sft_pairs"
    kind: Literal["rewrite", "distill"] = "rewrite"  # the exported kind the funnel follows
    rewrite_version: str | None = None  # null = the newest rewrite
    distill_version: str | None = None  # null = the newest distill of the same pairs
    filter_version: str | None = None  # the rest: null = what the chosen responses came from
    score_version: str | None = None
    instruction_version: str | None = None
    tokenizer: str | None = "auto"  # auto = the generating model's; embedded; a folder; null = chars/4
    max_text_chars: int = 200_000  # texts are cut here before counting (documents beyond it fail the clean step anyway)
    diversity_examples: int = 1000  # unique trigrams are counted on this many examples per kind (fewer if not there)
    mauve_samples: int = 1000  # responses per kind embedded for MAUVE (the paper: 10,000)
    mauve_min_samples: int = 50  # fewer per set → not computed (NaN with the reason): below that it is noise
    mauve_num_buckets: int | None = None  # null = the reference rule: min(n_p, n_q) / 10, at least 2
    mauve_seed: int = 25
    samples: int = 3  # sample rows shown side by side
    excerpt_chars: int = 600
    output_dir: str | None = None  # null = <data_dir>/export/<name> (beside the exported dataset)
    name: str | None = None  # the training set's name (export's folder); null = the kind
    file_name: str = "report.html"


def report_path(settings: Any) -> Path:
    cfg: ReportConfig = settings.job
    return Path(cfg.output_dir or settings.data_path / "export" / (cfg.name or cfg.kind)).resolve() / cfg.file_name


def follow_export(report_cfg: ReportConfig, configs: dict[str, Any]) -> None:
    """In a pipeline (the job's ``plan`` hook), the report describes what export wrote: same kind, and its page beside
    the export's files."""
    export_cfg = configs.get("export")
    if export_cfg is None:
        return
    report_cfg.kind = export_cfg.kind
    if report_cfg.output_dir is None:
        report_cfg.output_dir = export_cfg.output_dir
    if report_cfg.output_dir is None and export_cfg.name:
        report_cfg.name = export_cfg.name


@functools.cache
def prose() -> Prose:
    """The page's text: the blocks of ``prose.txt`` beside this module."""
    return Prose.load(Path(__file__).with_name("prose.txt"))
