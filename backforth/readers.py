"""Input files of ingest and seed: which local files a job's inputs name (:func:`plan_files`, on the driver), and
one reader generator per format (run on executors by ingest; on the driver by seed). A reader takes a *source*: a
local path, streamed from disk, or a file's bytes, as ingest gets them from Spark's filesystems (``s3a://``,
``abfss://``, ``gs://``, ``dbfs:/``, ``/Volumes``; see ``backforth.jobs.ingest``).

Each reader yields plain dicts of one of three kinds, so a bad line never stops a file and nothing vanishes:
``doc`` (a document), ``reject`` (unreadable input with its position and reason, kept in ``ingest_rejects``) and
``skip`` (WARC records that carry no document by design: warcinfo, request, metadata; counted in metrics).
Positions are 1-based line numbers for JSONL and byte offsets of the record for WARC/WET.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, Protocol, TypeVar

from backforth.errors import BadPathError

MAX_RAW_CHARS = 100_000  # a reject keeps this much of its raw input; file + position locate the rest
MAX_DETAIL_CHARS = 1_000
GZIP_MAGIC = b"\x1f\x8b"
WARC_STRUCTURAL = {"warcinfo", "request", "metadata"}  # no document by design: skipped, counted
TOO_DEEP = "JSON nested deeper than the parser's recursion limit (about 1,000 levels)"


class InputLike(Protocol):
    """What :func:`plan_files` reads of an input spec (ingest's ``InputSpec``, seed's ``SeedInput``)."""

    @property
    def path(self) -> str: ...

    @property
    def format(self) -> str: ...


S = TypeVar("S", bound=InputLike)
Source = str | bytes  # a local path, or the whole file's bytes

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # s3a://, abfss://, gs://, dbfs:/, file:/ (not a drive letter)


def is_uri(path: str) -> bool:
    """True for a path with a filesystem scheme, which only Spark's filesystems can list and read."""
    return bool(URI.match(path))


def hidden_name(name: str) -> bool:
    """Hadoop's convention, which Spark's file listing follows: names starting with ``_`` or ``.`` (``_SUCCESS``,
    ``.crc``, ``_temporary/``) are not data."""
    return name.startswith(("_", "."))


def walk(folder: str, include_hidden: bool) -> tuple[list[str], list[str]]:
    """(files, files skipped for a hidden name of their own or of a folder on the way) under ``folder``."""
    found, hidden = [], []
    for d, _, files in os.walk(folder):
        inside_hidden = d != folder and any(hidden_name(part) for part in os.path.relpath(d, folder).split(os.sep))
        for f in files:
            path = os.path.join(d, f)
            (hidden if not include_hidden and (inside_hidden or hidden_name(f)) else found).append(path)
    return found, hidden


def scan_inputs(
    inputs: Sequence[S], include_hidden: bool = False
) -> tuple[list[tuple[S, str, int, float]], list[tuple[S, str, int, float]]]:
    """Expand every input to the files to read and the files skipped for a hidden name (see :func:`hidden_name`;
    ``include_hidden`` reads them too), each as (spec, absolute path, size, mtime). A folder is walked recursively, a
    glob expanded; an input that matches no file to read is an error."""
    planned: list[tuple[S, str, int, float]] = []
    skipped: list[tuple[S, str, int, float]] = []
    for spec in inputs:
        if is_uri(spec.path):
            raise BadPathError(
                f"job.inputs: {spec.path} is a URI: this input is read from the local disk (ingest lists and reads "
                "URIs through Spark with job.listing auto or spark; seed files must be local)"
            )
        path = os.path.abspath(os.path.expanduser(spec.path))
        if os.path.isdir(path):
            found, hidden = walk(path, include_hidden)
        else:
            matched = glob.glob(path, recursive=True)
            hidden = [p for p in matched if not include_hidden and hidden_name(os.path.basename(p))]
            found = [p for p in matched if p not in hidden]
        if not found:
            why = f" (only {len(hidden)} with a name starting with _ or ., which are skipped)" if hidden else ""
            raise BadPathError(f"job.inputs: {spec.path} ({spec.format}) matches no file{why}")
        for files, out in ((found, planned), (hidden, skipped)):
            for p in sorted(files):
                try:
                    stat = os.stat(p)
                except OSError:  # a dangling link: listed with the link's own size and time, its reader records
                    stat = os.lstat(p)  # why it cannot be read (unreadable_file), and the rest of the batch goes on
                out.append((spec, p, stat.st_size, stat.st_mtime))
    return planned, skipped


def plan_files(inputs: Sequence[S], include_hidden: bool = False) -> list[tuple[S, str, int, float]]:
    """The files to read of :func:`scan_inputs`."""
    return scan_inputs(inputs, include_hidden)[0]


def reject(position: int, reason: str, detail: str = "", raw: str | bytes | None = None) -> dict[str, Any]:
    """A reject record: where, why, and the raw input (decoded losslessly as text)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="backslashreplace")
    return {
        "kind": "reject",
        "position": position,
        "reason": reason,
        "detail": str(detail)[:MAX_DETAIL_CHARS],
        "raw": raw[:MAX_RAW_CHARS] if raw else None,
    }


def open_source(source: Source) -> BinaryIO:
    """A binary stream over a local path or a file's bytes."""
    if isinstance(source, str):
        return open(source, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    return io.BufferedReader(io.BytesIO(source))  # type: ignore[arg-type]


def open_maybe_gzip(source: Source) -> BinaryIO:
    """Open ``source`` for binary reading, un-gzipping by magic bytes (extensions lie)."""
    raw = open_source(source)
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def iter_lines(path: Source) -> Iterator[tuple[int, bytes | None, str | None]]:
    """(line number, bytes, None) per line; a final (n, None, error) if the stream breaks (truncated gzip)."""
    number = 0
    with open_maybe_gzip(path) as stream:
        while True:
            try:
                line = stream.readline()
            except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
                yield number + 1, None, f"{type(exc).__name__}: {exc}"
                return
            if not line:
                return
            number += 1
            yield number, line, None


def json_objects(path: Source) -> Iterator[tuple[int, dict[str, Any] | None, str, dict[str, Any] | None]]:
    """(line number, object, line text, None) per JSON-object line of a JSONL file (gzipped or not), or
    (line number, None, "", reject) for a line that is not one; blank lines are skipped. Shared by ingest and seed."""
    for number, line, error in iter_lines(path):
        if error is not None:
            reason = "truncated_gzip" if error.startswith("EOFError") else "corrupt_gzip"
            yield number, None, "", reject(number, reason, error)
            return
        assert line is not None
        if not line.strip():
            continue
        line = line.rstrip(b"\r\n")
        try:
            text_line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, None, "", reject(number, "invalid_utf8", str(exc), line)
            continue
        try:
            obj = json.loads(text_line.lstrip("\ufeff"))
        except json.JSONDecodeError as exc:
            yield number, None, "", reject(number, "malformed_json", str(exc), text_line)
            continue
        except RecursionError:  # `[[[[…` thousands deep: Python's parser gives up; the line is rejected, not the file
            yield number, None, "", reject(number, "too_deep", TOO_DEEP, text_line)
            continue
        if not isinstance(obj, dict):
            yield number, None, "", reject(number, "not_an_object", f"JSON {type(obj).__name__}", text_line)
            continue
        yield number, obj, text_line, None


def read_json_lines(path: Source, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Dolma-style or plain JSONL (gzipped or not): one document per line, fields named by ``spec``."""
    dolma = spec["format"] == "dolma"
    for number, obj, text_line, rejected in json_objects(path):
        if obj is None:
            yield rejected
            continue
        try:
            yield document_from_object(obj, number, spec, dolma, text_line)
        except RecursionError:  # parsed just under the limit, too deep to serialise its metadata again
            yield reject(number, "too_deep", TOO_DEEP, text_line)


def document_from_object(obj: dict, number: int, spec: dict[str, Any], dolma: bool, raw: str) -> dict[str, Any]:
    """Map one JSON object to a document (or a reject when its text is missing, not a string, or blank)."""
    text_field = "text" if dolma else spec["text_field"]
    text = obj.get(text_field)
    if text is None:
        return reject(number, "missing_text", f"no '{text_field}' field", raw)
    if not isinstance(text, str):
        return reject(number, "bad_text_type", f"'{text_field}' is {type(text).__name__}", raw)
    if not text.strip():
        return reject(number, "empty_text", f"'{text_field}' is blank", raw)
    metadata = obj.get("metadata") if dolma else {k: v for k, v in obj.items() if k != text_field}
    url_field = "url" if dolma else spec.get("url_field")
    url = obj.get(url_field) if url_field else None
    if url is None and dolma and isinstance(metadata, dict):
        url = metadata.get("url")
    id_field = "id" if dolma else spec.get("id_field")
    source_id = obj.get(id_field) if id_field else None
    return {
        "kind": "doc",
        "position": number,
        "source": str(obj.get("source") or spec.get("source") or spec["format"]) if dolma else spec.get("source"),
        "source_id": None if source_id is None else str(source_id),
        "url": None if url is None else str(url),
        "text": text,
        "created": None if obj.get("created") is None else str(obj.get("created")),
        "metadata": json.dumps(metadata, ensure_ascii=False, default=str) if metadata else None,
    }


def html_main_text(html: bytes, url: str | None) -> str | None:
    """Main text of an HTML page with trafilatura (boilerplate, menus and scripts removed); None when empty."""
    import trafilatura

    text = trafilatura.extract(
        html, url=url, output_format="markdown", include_tables=True, include_comments=False, deduplicate=False
    )
    return text if text and text.strip() else None


def warc_document(record: Any, wet: bool) -> dict[str, Any]:
    """One WARC/WET record → a document, a reject or a skip (position filled in by the caller)."""
    offset = -1
    rec_type = record.rec_type
    url = record.rec_headers.get_header("WARC-Target-URI")
    base = {"position": offset, "url": url, "source_id": record.rec_headers.get_header("WARC-Record-ID")}
    if rec_type in WARC_STRUCTURAL:
        return {"kind": "skip", "position": offset, "reason": f"warc_{rec_type}"}
    expected = "conversion" if wet else "response"
    if rec_type != expected:
        return reject(offset, "unsupported_record", f"WARC-Type {rec_type} in a {'WET' if wet else 'WARC'} file")
    body = record.content_stream().read()
    if wet:
        text = body.decode("utf-8", errors="replace")
    else:
        status = record.http_headers.get_statuscode() if record.http_headers else None
        ctype = (record.http_headers.get_header("Content-Type") or "") if record.http_headers else ""
        if status != "200":
            return reject(offset, "http_status", f"HTTP {status} for {url}")
        if "html" not in ctype.lower():
            return reject(offset, "unsupported_record", f"Content-Type {ctype or 'missing'} for {url}")
        text = html_main_text(body, url)
        if text is None:
            return reject(offset, "no_main_text", f"extractor found no main text in {len(body)} bytes", body)
    if not text.strip():
        return reject(offset, "empty_text", "record has no text")
    created = record.rec_headers.get_header("WARC-Date")
    return {**base, "kind": "doc", "text": text, "created": created, "metadata": None, "source": None}


def gzip_truncated(path: Source, chunk: int = 1 << 20) -> bool:
    """True when a (multi-member) gzip file ends inside a member. warcio stops quietly at such a cut, so the
    reader checks separately; decompressing costs far less than extracting the HTML it carries."""
    with open_source(path) as stream:
        if stream.read(2) != GZIP_MAGIC:
            return False
        stream.seek(0)
        member = zlib.decompressobj(wbits=31)
        pending = False
        while data := stream.read(chunk):
            while data:
                try:
                    member.decompress(data)
                except zlib.error:
                    return True
                pending = not member.eof
                data = member.unused_data if member.eof else b""
                if member.eof:
                    member = zlib.decompressobj(wbits=31)
        return pending


def read_warc(path: Source, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """WARC (HTML responses through the extractor) or WET (plain-text conversions), gzipped or not."""
    from warcio.archiveiterator import ArchiveIterator

    wet = spec["format"] == "wet"
    truncated = gzip_truncated(path)
    offset = 0
    with open_source(path) as stream:
        records = ArchiveIterator(stream)
        while True:
            try:
                record = next(records)
                out = warc_document(record, wet)  # read the body before asking for the offset: that call
                offset = records.get_record_offset()  # skips to the record's end
                yield {**out, "position": offset}
            except StopIteration:
                break
            except Exception as exc:  # warcio raises several types for cut or corrupt archives
                reason = "truncated_file" if truncated or isinstance(exc, (EOFError, zlib.error)) else "corrupt_file"
                yield reject(offset, reason, f"after the record at offset {offset}: {type(exc).__name__}: {exc}")
                return
    if truncated:
        yield reject(offset, "truncated_file", f"gzip stream ends inside a record after offset {offset}")


READERS = {"dolma": read_json_lines, "jsonl": read_json_lines, "warc": read_warc, "wet": read_warc}


def read_file(path: str, spec: dict[str, Any], content: bytes | None = None) -> Iterator[dict[str, Any]]:
    """All records of one file (read from ``path``, or parsed from its ``content`` when Spark read it), each tagged
    with the file and format; an unreadable file becomes one reject."""
    reader = READERS[spec["format"]]
    try:
        for record in reader(path if content is None else content, spec):
            record.update(file=path, source_format=spec["format"])
            yield record
    except OSError as exc:
        yield {
            **reject(0, "unreadable_file", f"{type(exc).__name__}: {exc}"),
            "file": path,
            "source_format": spec["format"],
        }
