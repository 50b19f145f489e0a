"""Build the sample corpus files from the hand-written sources in data/sample/source/.

Run with the project's virtualenv: ``.venv/bin/python data/sample/build.py``. Output is byte-for-byte
reproducible (fixed dates, gzip mtime 0), and committed, so the demo needs no build step.

What comes out, and why each part is there:
- ``dolma/part-0000.json.gz``: Dolma-style gzipped JSONL (id, text, source, added, created, metadata) with two thirds
  of the documents, exact duplicates under new ids, and one over-long "handbook" document.
- ``web.jsonl``: plain JSONL with other field names (page_id, content, url) and the remaining documents.
- ``crawl.warc.gz``: a WARC with HTML responses (plus request/metadata records), a PDF, a 404 and a revisit record.
- ``bad/``: input the ingest job must reject with a reason: malformed JSON, bad UTF-8, missing/empty text, a
  non-object line, and a truncated gzip file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source"
DATE = "2024-03-01T00:00:00Z"
EXACT_DUPLICATES = 6  # copies of every 7th good document


def gzip_bytes(data: bytes) -> bytes:
    """Gzip with mtime 0 so the output is reproducible."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def dolma_row(doc: dict, doc_id: str) -> dict:
    """A document in Dolma's layout."""
    return {
        "id": doc_id,
        "text": doc["text"],
        "source": "sample-cc",
        "added": DATE,
        "created": DATE,
        "metadata": {"url": doc["url"], "title": doc["title"], "lang_hint": doc["lang"], "kind": doc["kind"]},
    }


def build_json_files(docs: list[dict]) -> None:
    """Split the documents between the Dolma file and the plain JSONL file, add duplicates and the long one."""
    dolma, web = [], []
    for i, doc in enumerate(docs):
        (web if i % 3 == 2 else dolma).append(doc)
    rows = [dolma_row(d, d["id"]) for d in dolma]
    handbook = [d for d in docs if d["kind"] in ("article", "technical")]
    for n, original in enumerate(handbook[::7][:EXACT_DUPLICATES]):  # same text, new id and URL: dedup's exact case
        copy = dict(original, url=original["url"] + f"?mirror={n}")
        rows.append(dolma_row(copy, f"{original['id']}-copy{n}"))
    long_text = "\n\n".join(f"## {d['title']}\n\n{d['text']}" for d in handbook * 3)
    rows.append(
        dolma_row(
            {"text": "# The everything handbook\n\n" + long_text, "url": "https://handbook.example.org/all",
             "title": "The everything handbook", "lang": "en", "kind": "over_long"},
            "handbook-001",
        )
    )  # fmt: skip
    (HERE / "dolma").mkdir(exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (HERE / "dolma" / "part-0000.json.gz").write_bytes(gzip_bytes(lines.encode("utf-8")))
    with open(HERE / "web.jsonl", "w", encoding="utf-8") as out:
        for doc in web:
            row = {"page_id": doc["id"], "url": doc["url"], "title": doc["title"], "content": doc["text"]}
            out.write(json.dumps({**row, "fetched": "2024-03-02"}, ensure_ascii=False) + "\n")


def record_id(name: str) -> str:
    """A stable WARC-Record-ID."""
    digest = hashlib.md5(name.encode()).hexdigest()
    return f"<urn:uuid:{digest[:8]}-0000-4000-8000-{digest[:12]}>"


def build_warc() -> None:
    """HTML pages as WARC response records, with the other record types a real crawl has."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    pages = yaml.safe_load((SOURCE / "html" / "index.yaml").read_text())
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)

    def write(rec_type: str, url: str, body: bytes, http: StatusAndHeaders | None, name: str) -> None:
        headers = {"WARC-Date": DATE, "WARC-Record-ID": record_id(name)}
        record = writer.create_warc_record(
            url, rec_type, payload=io.BytesIO(body), http_headers=http, warc_headers_dict=headers
        )
        writer.write_record(record)

    info = writer.create_warcinfo_record("crawl.warc.gz", {"software": "backforth sample builder"})
    info.rec_headers.replace_header("WARC-Date", DATE)
    info.rec_headers.replace_header("WARC-Record-ID", record_id("warcinfo"))
    writer.write_record(info)
    for page in pages:
        url, html = page["url"], (SOURCE / "html" / page["file"]).read_bytes()
        req = StatusAndHeaders("GET / HTTP/1.1", [("Host", url.split("/")[2])], is_http_request=True)
        write("request", url, b"", req, "req-" + page["file"])
        ok = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        write("response", url, html, ok, "resp-" + page["file"])
        write("metadata", url, b"fetchTimeMs: 120\n", None, "meta-" + page["file"])
    pdf = StatusAndHeaders("200 OK", [("Content-Type", "application/pdf")], protocol="HTTP/1.1")
    write("response", "https://files.example.org/manual.pdf", b"%PDF-1.4 sample bytes", pdf, "pdf")
    missing = StatusAndHeaders("404 Not Found", [("Content-Type", "text/html")], protocol="HTTP/1.1")
    write("response", "https://www.example.com/gone", b"<html><body>Not found</body></html>", missing, "404")
    write("revisit", pages[0]["url"], b"", None, "revisit")
    (HERE / "crawl.warc.gz").write_bytes(buf.getvalue())


def build_bad() -> None:
    """One file of lines that each fail differently, and a gzip file cut off mid-stream."""
    (HERE / "bad").mkdir(exist_ok=True)
    good = {
        "id": "bad-ok-1",
        "text": "A short but valid document that sits among broken lines.",
        "url": "https://ok.example.org",
    }
    lines = [
        json.dumps(good).encode(),
        b'{"id": "bad-1", "text": "this line never closes its brace"',
        json.dumps({"id": "bad-2", "text": "caf"}).encode()[:-2] + b'\xe9\xff"}',  # Latin-1 bytes, not UTF-8
        json.dumps({"id": "bad-3", "url": "https://no-text.example.org"}).encode(),
        json.dumps({"id": "bad-4", "text": "   \n  "}).encode(),
        json.dumps({"id": "bad-5", "text": ["a", "list"]}).encode(),
        b'["an", "array", "not", "an", "object"]',
    ]
    (HERE / "bad" / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rows = [
        json.dumps({"id": f"cut-{i}", "text": f"Line {i} of a file whose gzip stream is cut short."}) for i in range(40)
    ]
    whole = gzip_bytes(("\n".join(rows) + "\n").encode())
    (HERE / "bad" / "truncated.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])


def main() -> None:
    docs = yaml.safe_load((SOURCE / "corpus.yaml").read_text(encoding="utf-8"))
    build_json_files(docs)
    build_warc()
    build_bad()
    for path in sorted(HERE.rglob("*")):
        if path.is_file() and "source" not in path.parts and path.suffix != ".py":
            print(f"{path.relative_to(HERE)}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
