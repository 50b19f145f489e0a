"""The report's HTML page: which models made the data (the statement shown first), the header table of what was
read, and the page itself, written beside the exported dataset (rendering: backforth.report_html)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from backforth.jobs.report.config import prose, report_path
from backforth.jobs.report.selection import Versions
from backforth.report_html import Page, Section, figure_png, render_page
from backforth.udfs.report_metrics import EMBEDDING_MODEL

log = logging.getLogger("backforth.report")


def quality_statement(v: Versions) -> tuple[str, dict[str, str]]:
    """A plain sentence on which models produced the data, and {step: model} for the page's header."""
    from backforth.pipeline import profile_or_none

    models: dict[str, str] = {}
    demo, unknown, notes = set(), set(), set()
    for step, (name, uri) in v.models.items():
        profile = profile_or_none(name) if name else None
        models[step] = f"{name} ({profile.backend + ': ' if profile else ''}{uri})"
        if profile is None:
            unknown.add(str(name))
        elif profile.backend == "fake" or profile.model == "embedded":
            demo.add(profile.name)
        if profile is not None and profile.note:
            notes.add(" ".join(profile.note.split()))
    if not models:
        return prose()("quality.none"), models
    used = "; ".join(f"{step}: {m}" for step, m in models.items())
    if demo:
        kind = prose()("quality.demo.one" if len(demo) == 1 else "quality.demo.many")
        verdict = prose()("quality.demo", profiles=", ".join(sorted(demo)), kind=kind)
    else:
        verdict = prose()("quality.paper")
    if unknown:
        verdict += " " + prose()("quality.unknown", profiles=", ".join(sorted(unknown)))
    return " ".join([prose()("quality.used", models=used), verdict, *sorted(notes)]), models


def write_page(sections: Sequence[Section], figures: Mapping[str, Any], settings: Any, v: Versions,
               method: str) -> tuple[str, Path]:  # fmt: skip
    """Render the page beside the export; returns the quality statement and the page's path."""
    statement, models = quality_statement(v)
    meta = {"data": str(settings.data_path), "schema": settings.tables.schema}
    meta.update({f"{k} version": val for k, val in v.responses.items()})
    meta.update({"filter version": v.filter or "none", "score version": v.score or "none",
                 "backtranslate version": v.instructions or "none", "token lengths": method,
                 "embeddings (MAUVE)": EMBEDDING_MODEL})  # fmt: skip
    meta.update({f"model ({step})": m for step, m in models.items()})
    for note in v.notes:
        meta["note"] = note
    page = Page(prose()("page.title"), statement, sections, meta)
    pngs = {name: figure_png(fig) for name, fig in figures.items()}
    path = report_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(page, pngs), encoding="utf-8")
    log.info("report: %s", path)
    return statement, path
