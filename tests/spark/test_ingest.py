"""Ingest on real Spark + Delta: idempotent re-runs, incremental files, every bad-input case kept with a reason."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from backforth.config import ConfigError
from backforth.jobs.ingest import IngestConfig, InputSpec, run
from backforth.udfs.text import doc_id

pytestmark = pytest.mark.spark


def write_jsonl(path: Path, rows: list, compress: bool = False) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def ingest(spark, make_settings, inputs: list[InputSpec], **kw):
    settings = make_settings(IngestConfig(inputs=inputs, **kw))
    metrics = run(spark, settings)
    schema = settings.tables.schema
    return metrics, schema


def rows(spark, sql: str) -> list[tuple]:
    return [tuple(r) for r in spark.sql(sql).collect()]


def test_ingest_twice_adds_nothing_then_new_file_adds_only_new(spark, make_settings, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_jsonl(src / "a.jsonl", [{"id": "1", "text": "first"}, {"id": "2", "text": "second"}, "{broken"])
    spec = [InputSpec(path=str(src), format="jsonl", source="s")]
    settings = make_settings(IngestConfig(inputs=spec))
    schema = settings.tables.schema

    first = run(spark, settings)
    assert (first["docs_read"], first["docs_inserted"], first["rejects_inserted"]) == (2, 2, 1)
    again = run(spark, settings)
    assert (again["files_unchanged"], again["files_read"], again["docs_inserted"]) == (1, 0, 0)
    forced = run(spark, make_settings_like(settings, reprocess=True))
    assert (forced["docs_read"], forced["docs_inserted"], forced["rejects_inserted"]) == (2, 0, 0)

    # a new file with one old document (same source id) and one new one
    write_jsonl(src / "b.jsonl", [{"id": "2", "text": "second, re-listed"}, {"id": "3", "text": "third"}])
    more = run(spark, settings)
    assert (more["files_read"], more["docs_read"], more["docs_inserted"], more["docs_already_present"]) == (1, 2, 1, 1)
    assert rows(spark, f"SELECT source_id FROM {schema}.docs_raw ORDER BY 1") == [("1",), ("2",), ("3",)]
    assert rows(spark, f"SELECT count(*) FROM {schema}.ingest_rejects") == [(1,)]
    assert rows(spark, f"SELECT count(*) FROM {schema}.ingest_files") == [(3,)]  # a, a (reprocess), b


def make_settings_like(settings, **job_changes):
    from dataclasses import replace

    return replace(settings, job=replace(settings.job, **job_changes))


def test_every_bad_input_is_kept_with_reason(spark, make_settings, tmp_path: Path) -> None:
    good = {"id": "ok", "text": "fine"}
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        b"\n".join(
            [
                json.dumps(good).encode(),
                b"{not json",
                b'{"id": "x", "text": "\xff\xfe"}',
                json.dumps({"id": "m"}).encode(),
                json.dumps({"id": "e", "text": ""}).encode(),
                b"42",
                b"[" * 10_000 + b"]" * 10_000,  # Python's JSON parser raises RecursionError on these two
                b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
            ]
        )
    )
    whole = gzip.compress(
        "".join(json.dumps({"id": f"g{i}", "text": f"t{i} " * 50}) + "\n" for i in range(300)).encode()
    )
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    metrics, schema = ingest(
        spark,
        make_settings,
        [InputSpec(path=str(mixed), format="jsonl", source="s"), InputSpec(path=str(cut), format="jsonl", source="g")],
    )
    reasons = dict(rows(spark, f"SELECT reason, count(*) FROM {schema}.ingest_rejects GROUP BY reason"))
    assert reasons == {
        "malformed_json": 1,
        "invalid_utf8": 1,
        "missing_text": 1,
        "empty_text": 1,
        "not_an_object": 1,
        "too_deep": 2,
        "truncated_gzip": 1,
    }
    for reason, count in reasons.items():
        assert metrics[f"rejects.{reason}"] == count
    kept_from_cut = rows(spark, f"SELECT count(*) FROM {schema}.docs_raw WHERE source = 'g'")[0][0]
    assert 0 < kept_from_cut < 300
    (position,) = rows(spark, f"SELECT position FROM {schema}.ingest_rejects WHERE reason = 'truncated_gzip'")[0]
    assert position == kept_from_cut + 1
    assert rows(spark, f"SELECT file, position FROM {schema}.ingest_rejects WHERE reason = 'invalid_utf8'") == [
        (str(mixed), 3)
    ]
    assert metrics["docs_read"] + metrics["rejects_read"] == 1 + kept_from_cut + 8


def test_duplicate_ids_in_one_batch_become_rejects(spark, make_settings, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"id": "same", "text": "first copy"}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "same", "text": "second copy"}])
    metrics, schema = ingest(
        spark, make_settings, [InputSpec(path=str(tmp_path / "*.jsonl"), format="jsonl", source="s")]
    )
    assert rows(spark, f"SELECT text FROM {schema}.docs_raw") == [("first copy",)]  # first by (file, position)
    assert rows(spark, f"SELECT reason, raw FROM {schema}.ingest_rejects") == [("duplicate_id", "second copy")]
    assert metrics["rejects.duplicate_id"] == 1
    assert (metrics["docs_read"], metrics["rejects_read"], metrics["docs_inserted"]) == (1, 1, 1)
    # per file: the second copy is a reject of b.jsonl, not one of its documents
    files = rows(spark, f"SELECT file, docs, rejects FROM {schema}.ingest_files ORDER BY file")
    assert files == [(str(tmp_path / "a.jsonl"), 1, 0), (str(tmp_path / "b.jsonl"), 0, 1)]


def test_doc_ids_match_the_python_rule(spark, make_settings, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"id": "7", "text": "with id", "url": "u"}, {"text": "no id", "url": "v"}])
    _, schema = ingest(spark, make_settings, [InputSpec(path=str(tmp_path), format="jsonl", source="src")])
    got = dict(rows(spark, f"SELECT text, doc_id FROM {schema}.docs_raw"))
    assert got == {"with id": doc_id("src", "7", "u", "with id"), "no id": doc_id("src", None, "v", "no id")}


def test_parquet_input_with_missing_and_empty_text(spark, make_settings, tmp_path: Path) -> None:
    df = spark.createDataFrame(
        [("p1", "parquet text", "https://p/1", 3), ("p2", None, "https://p/2", 4), ("p3", " ", None, 5)],
        "uid string, body string, link string, stars int",
    )
    df.coalesce(1).write.parquet(str(tmp_path / "pq"))
    spec = InputSpec(
        path=str(tmp_path / "pq"), format="parquet", source="pq", id_field="uid", text_field="body", url_field="link"
    )
    metrics, schema = ingest(spark, make_settings, [spec])
    assert rows(spark, f"SELECT source_id, url, text, metadata FROM {schema}.docs_raw") == [
        ("p1", "https://p/1", "parquet text", '{"uid":"p1","link":"https://p/1","stars":3}')
    ]
    rejects = rows(spark, f"SELECT position, reason FROM {schema}.ingest_rejects ORDER BY position")
    assert rejects == [(2, "missing_text"), (3, "empty_text")]
    assert (metrics["docs_inserted"], metrics["rejects_inserted"]) == (1, 2)


def test_parquet_without_text_column_fails_before_writing(spark, make_settings, tmp_path: Path) -> None:
    spark.createDataFrame([("a",)], "body string").write.parquet(str(tmp_path / "pq"))
    with pytest.raises(ConfigError, match="no column 'text' \\(columns: body\\)"):
        ingest(spark, make_settings, [InputSpec(path=str(tmp_path / "pq"), format="parquet")])


def test_missing_input_path_is_a_clear_error(spark, make_settings, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl \\(jsonl\\) matches no file"):
        ingest(spark, make_settings, [InputSpec(path=str(tmp_path / "nope.jsonl"), format="jsonl")])


def test_changed_file_is_read_again(spark, make_settings, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "one"}])
    settings = make_settings(IngestConfig(inputs=[InputSpec(path=str(path), format="jsonl", source="s")]))
    run(spark, settings)
    write_jsonl(path, [{"id": "1", "text": "one"}, {"id": "2", "text": "two"}])
    os.utime(path, (1_700_000_000, 1_700_000_000))
    metrics = run(spark, settings)
    assert (metrics["files_read"], metrics["docs_inserted"], metrics["docs_already_present"]) == (1, 1, 1)


def test_parquet_files_whose_text_types_differ(spark, make_settings, tmp_path: Path) -> None:
    """One input, two files: ``text`` a string in one and an integer in the other. Read together, Spark aborts the
    job; each file is read with its own schema instead, the odd file's rows become ``bad_text_type`` rejects."""
    spark.createDataFrame([("a1", "good text"), ("a2", "more text")], "id string, text string").coalesce(
        1
    ).write.parquet(str(tmp_path / "pq" / "good"))
    spark.createDataFrame([("b1", 42)], "id string, text bigint").coalesce(1).write.parquet(
        str(tmp_path / "pq" / "odd")
    )
    metrics, schema = ingest(spark, make_settings, [InputSpec(path=str(tmp_path / "pq"), format="parquet")])
    assert rows(spark, f"SELECT source_id, text FROM {schema}.docs_raw ORDER BY 1") == [
        ("a1", "good text"), ("a2", "more text")
    ]  # fmt: skip
    (reject,) = spark.sql(f"SELECT * FROM {schema}.ingest_rejects").collect()
    assert (reject["position"], reject["reason"], reject["detail"]) == (1, "bad_text_type", "'text' is bigint")
    assert "/odd/" in reject["file"] and json.loads(reject["raw"]) == {"id": "b1", "text": 42}
    files = f"SELECT regexp_extract(file, '/pq/([a-z]+)/', 1), docs, rejects FROM {schema}.ingest_files"
    assert sorted(rows(spark, files + " WHERE skip_reason IS NULL")) == [("good", 2, 0), ("odd", 0, 1)]
    assert metrics["files_skipped_hidden"] == 6  # _SUCCESS and the .crc checksums Spark wrote in each folder
    assert (metrics["docs_inserted"], metrics["rejects.bad_text_type"]) == (2, 1)


def test_hidden_names_are_skipped_recorded_and_can_be_read(spark, make_settings, tmp_path: Path) -> None:
    """_SUCCESS-style names, dot files and files under a _folder are skipped (Hadoop's convention), each one an
    ingest_files row with skip_reason hidden_name and the files_skipped_hidden metric; include_hidden reads them."""
    src = tmp_path / "in"
    (src / "_sub").mkdir(parents=True)
    write_jsonl(src / "a.jsonl", [{"id": "a", "text": "visible"}])
    for name in ("_b.jsonl", ".c.jsonl", "_sub/d.jsonl"):
        write_jsonl(src / name, [{"id": name, "text": f"hidden in {name}"}])
    settings = make_settings(IngestConfig(inputs=[InputSpec(path=str(src), format="jsonl", source="s")]))
    schema = settings.tables.schema
    first = run(spark, settings)
    assert (first["files_read"], first["files_skipped_hidden"], first["docs_inserted"]) == (1, 3, 1)
    skipped = f"SELECT file, size, docs FROM {schema}.ingest_files WHERE skip_reason = 'hidden_name' ORDER BY 1"
    expected = sorted((str(src / n), (src / n).stat().st_size, None) for n in ("_b.jsonl", ".c.jsonl", "_sub/d.jsonl"))
    assert rows(spark, skipped) == expected
    again = run(spark, settings)  # still counted; recorded once per file version
    assert (again["files_read"], again["files_skipped_hidden"]) == (0, 3) and rows(spark, skipped) == expected

    included = run(spark, make_settings_like(settings, include_hidden=True))
    assert (included["files_read"], included["files_skipped_hidden"], included["docs_inserted"]) == (3, 0, 3)
    assert rows(spark, f"SELECT count(*) FROM {schema}.docs_raw") == [(4,)]
    with pytest.raises(ConfigError, match="job.include_hidden: .* is listed through Spark"):
        run(spark, make_settings_like(settings, include_hidden=True, listing="spark"))


def test_ingest_files_written_before_skip_reason_gets_the_column(spark, make_settings, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "one"}])
    settings = make_settings(IngestConfig(inputs=[InputSpec(path=str(path), format="jsonl", source="s")]))
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    old = "file string, size long, mtime double, format string, docs long, rejects long, skipped long, "
    spark.sql(f"CREATE TABLE {schema}.ingest_files ({old} ingest_batch string, ingested_at timestamp) USING DELTA")
    assert run(spark, settings)["docs_inserted"] == 1
    assert rows(spark, f"SELECT docs, skip_reason FROM {schema}.ingest_files") == [(1, None)]
    assert run(spark, settings)["files_unchanged"] == 1
