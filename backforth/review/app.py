"""The review app: read, compare and label generated pairs (``backforth review``).

FastAPI with server-rendered Jinja2 pages: nothing to build, one process, and the same app runs as a Databricks App.
Every page reads the Delta tables through :class:`backforth.review.store.Store` (delta-rs, no JVM). Generated text and
web documents are untrusted: templates escape everything (autoescape), the copied-span highlighting is built from
escaped segments, and the only write endpoint takes a label for a response named in its path — never a table name or
a file path — and appends it to ``reviews``.
"""

# No `from __future__ import annotations`: FastAPI reads the route functions' annotations (Request, Form) at
# definition time, inside create_app where they are imported.
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from backforth import reviews as review_table
from backforth.review.spans import copied_segments, copied_share
from backforth.review.store import NotFound, Pair, Store
from backforth.stats import auc

TEMPLATES = Path(__file__).parent / "templates"
PAGE = 50
FILTERS = ("version", "kind", "status", "label", "reason", "source", "min_score", "q")


def matches(pair: Pair, f: dict[str, str]) -> bool:
    """Whether ``pair`` passes the list's filters (empty = any)."""
    if f.get("version") and pair.step_version != f["version"]:
        return False
    for name, value in (("kind", pair.kind), ("status", pair.status), ("source", pair.source)):
        if f.get(name) and value != f[name]:
            return False
    if f.get("label") and (pair.label or "unreviewed") != f["label"]:
        return False
    if f.get("reason") and pair.reason != f["reason"]:
        return False
    if f.get("min_score"):
        try:
            floor = float(f["min_score"])
        except ValueError:
            floor = -math.inf
        if pair.score is None or pair.score < floor:
            return False
    q = (f.get("q") or "").lower()
    return not q or q in (pair.instruction or "").lower() or q in (pair.response or "").lower()


def agreement(pairs: list[Pair]) -> dict[str, Any]:
    """How the judge's scores separate what people accepted (accept, edit) from what they rejected."""
    kept = [p.score for p in pairs if p.label in ("accept", "edit") and p.score is not None]
    rejected = [p.score for p in pairs if p.label == "reject" and p.score is not None]
    value = auc(kept, rejected)
    return {"auc": None if math.isnan(value) else round(value, 3), "accepted": len(kept), "rejected": len(rejected),
            "reviewed": sum(1 for p in pairs if p.label)}  # fmt: skip


def funnel(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest finished run of each step, in the order they ran: rows in, rows out, share kept."""

    def when(run: dict[str, Any]) -> float:
        return run["started_at"].timestamp() if run.get("started_at") else 0.0

    newest: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.get("status") == "finished" and (run["step"] not in newest or when(run) > when(newest[run["step"]])):
            newest[run["step"]] = run
    rows = sorted(newest.values(), key=when)
    top = max([int(r.get("rows_in") or r.get("rows_out") or 0) for r in rows] + [1])
    return [{"step": r["step"], "version": r.get("step_version") or "", "rows_in": r.get("rows_in"),
             "rows_out": r.get("rows_out"), "width": round(100 * int(r.get("rows_out") or 0) / top, 1)}
            for r in rows]  # fmt: skip


def create_app(
    store: Store, reviewer: str = "reviewer", hosts: list[str] | None = None, token: str | None = None
) -> Any:
    """The app over ``store``. ``hosts``: the Host headers it answers (None = any; ``serve`` passes the loopback
    names when bound to loopback, so a page on another site cannot reach it through DNS rebinding). ``token``: the
    secret every label form carries (default: a new random one), so another site cannot post labels cross-site."""
    import secrets

    from fastapi import FastAPI, Form, HTTPException, Request
    from fastapi.responses import HTMLResponse, RedirectResponse
    from fastapi.templating import Jinja2Templates

    app = FastAPI(title="backforth review", docs_url=None, redoc_url=None, openapi_url=None)
    if hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    token = token or secrets.token_urlsafe(24)
    pages = Jinja2Templates(directory=str(TEMPLATES))  # autoescape on for .html

    def find(doc_id: str, step_version: str) -> Pair:
        try:
            return store.pair(doc_id, step_version)
        except NotFound:
            raise HTTPException(404, "no such pair") from None

    @app.get("/", response_class=HTMLResponse)
    def pair_list(request: Request, page: int = 0) -> Any:
        f = {k: request.query_params.get(k, "") for k in FILTERS}
        pairs = store.pairs()
        shown = [p for p in pairs if matches(p, f)]
        options = {name: sorted({getattr(p, attr) or "" for p in pairs} - {""})
                   for name, attr in (("version", "step_version"), ("kind", "kind"), ("status", "status"),
                                      ("source", "source"))}  # fmt: skip
        query = urlencode({k: v for k, v in f.items() if v})
        return pages.TemplateResponse(request, "list.html", {
            "pairs": shown[page * PAGE : (page + 1) * PAGE], "total": len(shown), "all": len(pairs), "page": page,
            "pages": max(1, math.ceil(len(shown) / PAGE)), "f": f, "options": options, "query": query,
            "labels": ("unreviewed", *review_table.LABELS), "reasons": review_table.REASONS,
            "agreement": agreement(pairs),
        })  # fmt: skip

    @app.get("/pair/{doc_id}/{step_version}", response_class=HTMLResponse)
    def pair_page(request: Request, doc_id: str, step_version: str, error: str = "") -> Any:
        pair = find(doc_id, step_version)
        document = store.document(doc_id)
        segments = copied_segments(pair.response or "", document)
        judge, judge_score = store.judge_output(pair)
        others = [p for p in store.pairs() if p.doc_id == doc_id and p.step_version != step_version]
        return pages.TemplateResponse(request, "pair.html", {
            "pair": pair, "document": document, "segments": segments, "copied": copied_share(segments),
            "judge": judge, "judge_score": judge_score, "history": store.history(doc_id, step_version),
            "others": others, "reasons": review_table.REASONS, "reviewer": reviewer, "error": error, "token": token,
        })  # fmt: skip

    @app.post("/pair/{doc_id}/{step_version}")
    def label_pair(doc_id: str, step_version: str, label: str = Form(...), reason: str = Form(""),
                   instruction: str = Form(""), response: str = Form(""), note: str = Form(""),
                   who: str = Form(""), form_token: str = Form("", alias="token")) -> Any:  # fmt: skip
        if not secrets.compare_digest(form_token, token):
            raise HTTPException(403, "the form is not from this app (reload the page)")
        pair = find(doc_id, step_version)
        target = f"/pair/{doc_id}/{step_version}"
        try:
            store.add_review(pair, label, (who or reviewer).strip()[:100], reason or None, instruction or None,
                             response or None, note[:2000] or None)  # fmt: skip
        except ValueError as exc:
            return RedirectResponse(f"{target}?{urlencode({'error': str(exc)})}", status_code=303)
        return RedirectResponse(target, status_code=303)

    @app.get("/compare/{doc_id}", response_class=HTMLResponse)
    def compare(request: Request, doc_id: str, a: str = "", b: str = "") -> Any:
        candidates = [p for p in store.pairs() if p.doc_id == doc_id]
        if not candidates:
            raise HTTPException(404, "no responses for this document")
        by_version = {p.step_version: p for p in candidates}
        left = by_version.get(a) or candidates[0]
        right = by_version.get(b) or next((p for p in candidates if p is not left), left)
        document = store.document(doc_id)
        sides = [{"pair": p, "segments": copied_segments(p.response or "", document)} for p in (left, right)]
        for side in sides:
            side["copied"] = copied_share(side["segments"])
        return pages.TemplateResponse(request, "compare.html", {
            "doc_id": doc_id, "sides": sides, "versions": sorted(by_version), "document": document,
        })  # fmt: skip

    @app.get("/funnel", response_class=HTMLResponse)
    def funnel_page(request: Request) -> Any:
        return pages.TemplateResponse(request, "funnel.html", {"steps": funnel(store.step_runs())})

    return app
