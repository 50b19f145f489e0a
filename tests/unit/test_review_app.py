"""The review app without Spark or a browser: pages over Delta tables written with delta-rs, escaping of untrusted
text, the copied-span highlighting, labels appended to `reviews`, and what the write endpoint refuses."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from backforth import reviews as review_table
from backforth.review.app import create_app
from backforth.review.spans import copied_segments, copied_share
from backforth.review.store import Store

PAYLOAD = '<script>document.title="pwned"</script>'
DOC = ("Keep a sourdough starter in a warm corner and feed it flour and water every day. Discard half before each "
       "feeding so that it stays active. " + PAYLOAD)  # fmt: skip


def write(folder: Path, name: str, rows: list[dict]) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(str(folder / name), pa.Table.from_pylist(rows), mode="append")


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    folder = tmp_path / "warehouse" / "backforth.db"
    folder.mkdir(parents=True)
    now = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
    response = "Feed it flour and water every day and discard half before each feeding so that it stays active."
    write(folder, "responses", [
        {"doc_id": "d1", "step_version": "rw-v1-aaa", "kind": "rewrite", "source_version": "filter-x",
         "instruction": "How do I keep a sourdough starter alive?", "response": response, "status": "ok"},
        {"doc_id": "d1", "step_version": "ds-v1-bbb", "kind": "distill", "source_version": "filter-x",
         "instruction": "How do I keep a sourdough starter alive?", "response": "Feed it. " + PAYLOAD, "status": "ok"},
        {"doc_id": "d2", "step_version": "rw-v1-aaa", "kind": "rewrite", "source_version": "filter-x",
         "instruction": "What is granite?", "response": "An igneous rock.", "status": "ok"},
    ])  # fmt: skip
    write(folder, "pairs_filtered", [
        {"doc_id": "d1", "step_version": "filter-x", "instruction_version": "bt-1", "expected_score": 4.5},
        {"doc_id": "d2", "step_version": "filter-x", "instruction_version": "bt-1", "expected_score": 2.0},
    ])  # fmt: skip
    write(folder, "docs_raw", [{"doc_id": "d1", "source": "web"}, {"doc_id": "d2", "source": "manual"}])
    write(folder, "docs_clean", [{"doc_id": "d1", "text": DOC}, {"doc_id": "d2", "text": "Granite forms slowly."}])
    write(folder, "scores", [{"doc_id": "d1", "pair_kind": "matched", "instruction_version": "bt-1",
                              "raw_output": "Helpful.\nScore: 5", "score": 5, "created_at": now}])  # fmt: skip
    write(folder, "step_runs", [
        {"run_id": "r0", "step": "clean", "step_version": None, "status": "running", "rows_in": None, "rows_out": None,
         "started_at": None},
        {"run_id": "r1", "step": "ingest", "step_version": None, "status": "finished", "rows_in": 10, "rows_out": 8,
         "started_at": now},
        {"run_id": "r2", "step": "rewrite", "step_version": "rw-v1-aaa", "status": "finished", "rows_in": 2,
         "rows_out": 2, "started_at": now.replace(hour=13)},
    ])  # fmt: skip
    return folder


TOKEN = "form-secret"


@pytest.fixture
def client(tables: Path):
    """A client on the loopback name the app answers to; its posts carry the form token the pair page holds."""
    from fastapi.testclient import TestClient

    class Client(TestClient):
        def post(self, url, data=None, **kwargs):
            return super().post(url, data={"token": TOKEN, **(data or {})}, **kwargs)

    app = create_app(Store(tables), "tester", hosts=["127.0.0.1", "localhost"], token=TOKEN)
    return Client(app, base_url="http://127.0.0.1:8765")


def test_copied_spans_mark_runs_of_six_words_and_rejoin_exactly() -> None:
    response = "Sure! Feed it flour and water every day, then rest."
    segments = copied_segments(response, DOC)
    assert "".join(t for t, _ in segments) == response
    assert [t for t, c in segments if c] == ["Feed it flour and water every day"]
    assert copied_share(segments) == pytest.approx(7 / 10)
    assert copied_segments("", DOC) == [] and copied_share([]) == 0.0


def test_the_list_filters_and_the_pages_escape_untrusted_text(client) -> None:
    page = client.get("/").text
    assert page.count('class="pair-row"') == 3 and "3 of 3 responses" in page
    only = client.get("/", params={"kind": "distill"}).text
    assert only.count('class="pair-row"') == 1
    assert client.get("/", params={"min_score": "4"}).text.count('class="pair-row"') == 2
    assert client.get("/", params={"q": "granite"}).text.count('class="pair-row"') == 1
    assert client.get("/", params={"source": "manual"}).text.count('class="pair-row"') == 1
    pair = client.get("/pair/d1/ds-v1-bbb")
    assert pair.status_code == 200
    assert PAYLOAD not in pair.text and "&lt;script&gt;document.title=" in pair.text  # text, never markup
    rewrite = client.get("/pair/d1/rw-v1-aaa").text
    assert "<mark>Feed it flour and water every day</mark> and <mark>discard half before each feeding so that it " \
        "stays active</mark>." in rewrite and "Helpful.\nScore: 5" in rewrite  # fmt: skip
    side = client.get("/compare/d1", params={"a": "rw-v1-aaa", "b": "ds-v1-bbb"}).text
    assert "rewrite · rw-v1-aaa" in side and "distill · ds-v1-bbb" in side and PAYLOAD not in side
    funnel = client.get("/funnel").text
    assert "ingest" in funnel and "rewrite" in funnel and "clean" not in funnel  # finished runs only
    assert funnel.index("ingest") < funnel.index("rewrite")  # in the order they ran
    assert client.get("/pair/nope/rw-v1-aaa").status_code == 404


def test_labels_are_appended_and_the_newest_counts(client, tables: Path) -> None:
    r = client.post("/pair/d1/rw-v1-aaa", data={"label": "reject", "reason": "bad_response", "note": "n"},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/pair/d1/rw-v1-aaa"
    client.post(
        "/pair/d2/rw-v1-aaa",
        data={
            "label": "edit",
            "response": "Granite is an igneous rock that forms when magma cools slowly underground.",
            "instruction": "What is granite?",
        },
    )
    client.post("/pair/d1/ds-v1-bbb", data={"label": "accept", "who": "alice"})
    from deltalake import DeltaTable

    rows = {(r["doc_id"], r["step_version"]): r for r in DeltaTable(str(tables / "reviews")).to_pyarrow_table()
            .to_pylist()}  # fmt: skip
    rejected = rows[("d1", "rw-v1-aaa")]
    assert rejected["label"] == "reject" and rejected["reason"] == "bad_response"
    assert rejected["instruction_version"] == "bt-1" and rejected["reviewer"] == "tester"
    edit = rows[("d2", "rw-v1-aaa")]
    assert edit["instruction"] is None and edit["response"].startswith("Granite is an igneous rock")  # only changes
    assert rows[("d1", "ds-v1-bbb")]["reviewer"] == "alice"
    page = client.get("/", params={"label": "reject"}).text
    assert page.count('class="pair-row"') == 1 and "reject: bad_response" in page
    # the judge scored d1 4.5 (one pair rejected, one accepted) and d2 2.0 (edited = accepted): AUC over 2 × 1
    assert "AUC 0.25" in client.get("/").text
    client.post("/pair/d1/rw-v1-aaa", data={"label": "accept"})  # a change of mind: the newest review counts
    assert client.get("/", params={"label": "reject"}).text.count('class="pair-row"') == 0


def test_the_write_endpoint_refuses_what_it_should(client, tables: Path) -> None:
    bad = client.post("/pair/d1/rw-v1-aaa", data={"label": "reject"}, follow_redirects=False)  # no reason
    assert bad.status_code == 303 and "error=" in bad.headers["location"]
    assert "a rejection needs a reason" in client.get(bad.headers["location"]).text
    assert client.post("/pair/d1/rw-v1-aaa", data={"label": "delete"}, follow_redirects=False).status_code == 303
    unchanged = client.post("/pair/d1/rw-v1-aaa", data={"label": "edit", "instruction": "How do I keep a sourdough "
                            "starter alive?"}, follow_redirects=False)  # fmt: skip
    assert "error=" in unchanged.headers["location"]  # an edit that changes nothing
    assert client.post("/pair/missing/x", data={"label": "accept"}).status_code == 404
    assert client.post("/pair/d1/rw-v1-aaa", data={"label": "accept", "table": "docs_raw"}).status_code == 200
    assert not (tables / "reviews").exists() or all(
        r["doc_id"] == "d1" for r in Store(tables).frame(review_table.TABLE, ["doc_id"]).to_dict("records")
    )
    assert client.get("/openapi.json").status_code == 404 and client.get("/docs").status_code == 404


def test_other_sites_can_neither_post_labels_nor_read_pages(client, tables: Path) -> None:
    from fastapi.testclient import TestClient

    assert f'name="token" value="{TOKEN}"' in client.get("/pair/d1/rw-v1-aaa").text
    forged = TestClient.post(client, "/pair/d1/rw-v1-aaa", data={"label": "accept", "token": "guess"})
    assert forged.status_code == 403
    assert TestClient.post(client, "/pair/d1/rw-v1-aaa", data={"label": "accept"}).status_code == 403
    assert not (tables / "reviews").exists()  # nothing written
    rebound = client.get("/", headers={"host": "attacker.example"})  # a DNS-rebinding page asking our port
    assert rebound.status_code == 400
