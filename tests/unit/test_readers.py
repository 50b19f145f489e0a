"""Readers: every kind of bad input becomes a reject with a position and reason; good input around it survives."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from backforth.readers import read_file
from backforth.udfs.text import doc_id

JSONL = {"format": "jsonl", "source": "t", "id_field": "id", "text_field": "text", "url_field": "url"}
DOLMA = {"format": "dolma", "source": None, "id_field": "id", "text_field": "text", "url_field": "url"}


def records(path: Path, spec: dict) -> list[dict]:
    return list(read_file(str(path), spec))


def test_jsonl_bad_lines_are_rejected_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "1", "text": "good one", "url": "u1"}).encode(),
        b'{"id": "2", "text": "unterminated',
        b'{"id": "3", "text": "caf\xe9"}',
        json.dumps({"id": "4"}).encode(),
        json.dumps({"id": "5", "text": "  "}).encode(),
        json.dumps({"id": "6", "text": 42}).encode(),
        b"[1, 2]",
        b"",
        json.dumps({"id": "7", "text": "good two"}).encode(),
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = records(path, JSONL)
    got = [(r["kind"], r["position"], r.get("reason")) for r in out]
    assert got == [
        ("doc", 1, None),
        ("reject", 2, "malformed_json"),
        ("reject", 3, "invalid_utf8"),
        ("reject", 4, "missing_text"),
        ("reject", 5, "empty_text"),
        ("reject", 6, "bad_text_type"),
        ("reject", 7, "not_an_object"),
        ("doc", 9, None),  # the blank line 8 carries no document
    ]
    assert out[2]["raw"] == '{"id": "3", "text": "caf\\xe9"}'  # the bad byte is kept, visibly
    assert all(r["file"] == str(path) and r["source_format"] == "jsonl" for r in out)
    assert out[0]["url"] == "u1" and out[0]["source_id"] == "1" and out[0]["source"] == "t"
    assert json.loads(out[0]["metadata"]) == {"id": "1", "url": "u1"}


def test_truncated_gzip_keeps_lines_before_the_cut(tmp_path: Path) -> None:
    rows = "".join(json.dumps({"id": str(i), "text": f"document number {i} " * 20}) + "\n" for i in range(200))
    whole = gzip.compress(rows.encode(), mtime=0)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    out = records(path, JSONL)
    docs = [r for r in out if r["kind"] == "doc"]
    assert 0 < len(docs) < 200
    assert [r["source_id"] for r in docs] == [str(i) for i in range(len(docs))]
    assert out[-1]["kind"] == "reject" and out[-1]["reason"] == "truncated_gzip"
    assert out[-1]["position"] == len(docs) + 1


def test_gzip_detected_by_magic_not_extension(tmp_path: Path) -> None:
    path = tmp_path / "no-extension"
    path.write_bytes(gzip.compress(json.dumps({"id": "a", "text": "hello"}).encode() + b"\n"))
    assert [r["text"] for r in records(path, JSONL)] == ["hello"]


def test_dolma_fields(tmp_path: Path) -> None:
    row = {"id": "d1", "text": "t", "source": "common-crawl", "added": "x", "created": "2023", "metadata": {"url": "u"}}
    path = tmp_path / "d.json.gz"
    path.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    (doc,) = records(path, DOLMA)
    assert (doc["source"], doc["source_id"], doc["url"], doc["created"]) == ("common-crawl", "d1", "u", "2023")
    assert json.loads(doc["metadata"]) == {"url": "u"}


def test_unreadable_file_is_one_reject(tmp_path: Path) -> None:
    (out,) = records(tmp_path / "missing.jsonl", JSONL)
    assert out["kind"] == "reject" and out["reason"] == "unreadable_file" and out["position"] == 0


def write_warc(path: Path, cut: bool = False) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=True)
    w.write_record(w.create_warcinfo_record("t.warc.gz", {"software": "test"}))
    html = (
        b"<html><head><title>T</title><script>var x=1;</script></head><body><nav>Home | About | Login</nav>"
        b"<article><h1>Brewing tea</h1><p>Warm the pot first, then measure one spoon of leaves per cup. "
        b"Steep black tea for four minutes and green tea for two, because hotter water draws out bitterness.</p>"
        b"<p>Strain the leaves promptly so the flavour stays balanced and the second cup is as good as the first.</p>"
        b"</article><footer>Copyright 2024</footer></body></html>"
    )

    def rec(rtype: str, url: str, body: bytes, status: str | None, ctype: str = "text/html") -> None:
        http = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1") if status else None
        w.write_record(w.create_warc_record(url, rtype, payload=io.BytesIO(body), http_headers=http))

    req = StatusAndHeaders("GET / HTTP/1.1", [("Host", "a.example")], is_http_request=True)
    w.write_record(w.create_warc_record("https://a.example/tea", "request", payload=io.BytesIO(b""), http_headers=req))
    rec("response", "https://a.example/tea", html, "200 OK")
    rec("response", "https://a.example/x.pdf", b"%PDF", "200 OK", "application/pdf")
    rec("response", "https://a.example/gone", b"<html></html>", "404 Not Found")
    rec("response", "https://a.example/empty", b"<html><body><form><input></form></body></html>", "200 OK")
    rec("revisit", "https://a.example/tea", b"", None)
    data = buf.getvalue()
    path.write_bytes(data[: len(data) * 6 // 10] if cut else data)


def test_warc_records_become_docs_rejects_and_skips(tmp_path: Path) -> None:
    path = tmp_path / "t.warc.gz"
    write_warc(path)
    out = records(path, {"format": "warc", "source": "crawl"})
    kinds = [(r["kind"], r.get("reason")) for r in out]
    assert kinds == [
        ("skip", "warc_warcinfo"),
        ("skip", "warc_request"),
        ("doc", None),
        ("reject", "unsupported_record"),
        ("reject", "http_status"),
        ("reject", "no_main_text"),
        ("reject", "unsupported_record"),
    ]
    doc = out[2]
    assert doc["url"] == "https://a.example/tea" and doc["source_id"].startswith("<urn:uuid:")
    assert "Steep black tea for four minutes" in doc["text"]
    assert "var x" not in doc["text"] and "Login" not in doc["text"]  # scripts and menus removed by the extractor
    offsets = [r["position"] for r in out]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_truncated_warc_keeps_earlier_records(tmp_path: Path) -> None:
    path = tmp_path / "cut.warc.gz"
    write_warc(path, cut=True)
    out = records(path, {"format": "warc", "source": "crawl"})
    assert any(r["kind"] == "doc" for r in out)
    assert out[-1]["kind"] == "reject" and out[-1]["reason"] in ("truncated_file", "corrupt_file")


def test_wet_conversion_records(tmp_path: Path) -> None:
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=True)
    w.write_record(w.create_warc_record("https://b.example", "conversion", payload=io.BytesIO("Plain text é".encode())))
    path = tmp_path / "t.wet.gz"
    path.write_bytes(buf.getvalue())
    (doc,) = records(path, {"format": "wet", "source": "cc"})
    assert doc["kind"] == "doc" and doc["text"] == "Plain text é" and doc["url"] == "https://b.example"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (("s", "1", "u1", "x"), ("s", "1", "u2", "y"), True),  # a source id wins over url and content
        (("s", "1", None, "x"), ("t", "1", None, "x"), False),  # ids are per source
        ((None, None, "u", "x"), (None, None, "u", "x"), True),
        ((None, None, "u", "x"), (None, None, "u", "x "), False),
    ],
)
def test_doc_id_rule(a: tuple, b: tuple, same: bool) -> None:
    assert (doc_id(*a) == doc_id(*b)) is same
    assert len(doc_id(*a)) == 32


def test_uris_are_told_from_local_paths() -> None:
    from backforth.jobs.ingest import file_name
    from backforth.readers import is_uri

    for uri in ("s3a://b/k", "abfss://c@acct.dfs.core.windows.net/x", "gs://b/x", "dbfs:/x", "file:/tmp/x"):
        assert is_uri(uri), uri
    for path in ("/Volumes/main/raw/x", "data/sample", "./a:b", "C:\\data"):
        assert not is_uri(path), path
    assert file_name("file:/tmp/a.jsonl") == file_name("file:///tmp/a.jsonl") == "/tmp/a.jsonl"
    assert file_name("s3a://b/k.jsonl") == "s3a://b/k.jsonl"


def test_a_uri_on_a_local_only_input_is_a_clear_error() -> None:
    from backforth.errors import BadPathError
    from backforth.readers import plan_files

    with pytest.raises(BadPathError, match="s3a://b/seed.jsonl is a URI"):
        plan_files([SimpleNamespace(path="s3a://b/seed.jsonl", format="jsonl")])


def test_listing_auto_uses_spark_for_uris_and_remote_clusters(monkeypatch) -> None:
    from backforth.config import Settings
    from backforth.jobs.ingest import IngestConfig, InputSpec, listed_by_spark

    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    local, uri = InputSpec(path="/data/x", format="jsonl"), InputSpec(path="s3a://b/x", format="jsonl")
    cfg, settings = IngestConfig(), Settings()
    assert (listed_by_spark(local, cfg, settings), listed_by_spark(uri, cfg, settings)) == (False, True)
    settings.spark.remote = "local[2]"  # an in-process Connect server shares this machine's disk
    assert not listed_by_spark(local, cfg, settings)
    settings.spark.remote = "sc://cluster:15002"
    assert listed_by_spark(local, cfg, settings)
    assert not listed_by_spark(uri, IngestConfig(listing="local"), settings)
    assert listed_by_spark(local, IngestConfig(listing="spark"), Settings())


def test_json_nested_too_deep_is_one_reject_and_the_file_goes_on(tmp_path: Path) -> None:
    """A line nested ~10,000 deep makes Python's JSON parser raise RecursionError: a ``too_deep`` reject."""
    lines = [
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        json.dumps({"id": "1", "text": "still read"}),
    ]
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = records(path, JSONL)
    assert [(r["kind"], r["position"], r.get("reason")) for r in out] == [
        ("reject", 1, "too_deep"),
        ("reject", 2, "too_deep"),
        ("doc", 3, None),
    ]
    assert out[0]["raw"] == lines[0] and "recursion limit" in out[0]["detail"]
