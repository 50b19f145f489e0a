"""Ingest where the data lives: files listed and read through Spark's filesystems (``job.listing: spark``) give the
same rows as the local disk: the sample corpus (Dolma, JSONL, WARC and broken files) read as local files, and read
from ``s3a://`` on a real S3-compatible server on loopback (moto in server mode) through Hadoop's S3A filesystem by
the CLI over Spark Connect, gives the same documents, rejects and file manifest.

The S3A connector is not part of Spark's distribution: the CLI asks Spark to resolve
``org.apache.hadoop:hadoop-aws`` (the version of Spark's own Hadoop client) into the ivy cache outside the repo, as a
user reading ``s3a://`` from a laptop would. The first run downloads it and the AWS SDK bundle (~560 MB); later runs
use the cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backforth.jobs.ingest import IngestConfig, InputSpec, run

pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.timeout(900)]

BUCKET = "corpus"
CORPUS_FILES = ["dolma/part-0000.json.gz", "web.jsonl", "crawl.warc.gz", "bad/mixed.jsonl", "bad/truncated.jsonl.gz"]


SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


def sample_inputs(root: str) -> list[InputSpec]:
    """The bundled sample corpus (Dolma, JSONL, WARC and broken files) under ``root``, as conf/jobs/ingest.yaml
    names it."""
    return [
        InputSpec(path=f"{root}/dolma", format="dolma"),
        InputSpec(path=f"{root}/web.jsonl", format="jsonl", source="sample-web", id_field="page_id",
                  text_field="content", url_field="url"),
        InputSpec(path=f"{root}/crawl.warc.gz", format="warc", source="sample-crawl"),
        InputSpec(path=f"{root}/bad", format="jsonl", source="sample-bad"),
    ]  # fmt: skip


def ingested(spark, schema: str, root: str) -> dict[str, set]:
    """Every row ingest wrote, with file names relative to ``root`` (ingest times and batch ids left out)."""

    def rel(name: str) -> str:
        assert name.startswith(root), name
        return name[len(root) :]

    docs = spark.sql(
        f"SELECT doc_id, file, position, source, source_format, source_id, url, text FROM {schema}.docs_raw"
    )
    rejects = spark.sql(f"SELECT file, position, reason, detail, raw, source_format FROM {schema}.ingest_rejects")
    files = spark.sql(f"SELECT file, size, format, docs, rejects, skipped FROM {schema}.ingest_files")
    return {
        name: {(rel(r["file"]), *[v for k, v in r.asDict().items() if k != "file"]) for r in df.collect()}
        for name, df in (("docs", docs), ("rejects", rejects), ("files", files))
    }


def test_spark_listing_reads_the_same_rows_as_the_local_disk(spark, new_settings, tmp_path: Path) -> None:
    """job.listing: spark (Spark's filesystems and binary-file source, as for s3a:// or abfss://) against the local
    walk and stream, on the sample corpus with its broken files, plus a dangling link and a file too large."""
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("*.py", "seed", "source"))
    (root / "bad" / "gone.jsonl").symlink_to(root / "nowhere.jsonl")
    results, metrics = {}, {}
    for listing in ("local", "spark"):
        settings = new_settings(IngestConfig(inputs=sample_inputs(str(root)), listing=listing))
        metrics[listing] = run(spark, settings)
        results[listing] = ingested(spark, settings.tables.schema, str(root))
    # The dangling link: the local walk lists it and records why it cannot be read; Hadoop's listing skips it.
    gone = {r for r in results["local"]["rejects"] if r[0] == "/bad/gone.jsonl"}
    assert [r[2] for r in gone] == ["unreadable_file"]
    assert results["spark"]["docs"] == results["local"]["docs"]
    assert results["spark"]["rejects"] == results["local"]["rejects"] - gone
    assert results["spark"]["files"] == {r for r in results["local"]["files"] if r[0] != "/bad/gone.jsonl"}
    assert len(results["local"]["docs"]) > 50
    reasons = {r[2] for r in results["spark"]["rejects"]}
    assert {"truncated_gzip", "malformed_json"} <= reasons, reasons
    assert metrics["spark"]["docs_inserted"] == metrics["local"]["docs_inserted"] == len(results["local"]["docs"])

    settings = new_settings(IngestConfig(inputs=sample_inputs(str(root)), listing="spark", max_file_bytes=36_000))
    metrics = run(spark, settings)
    rejects = ingested(spark, settings.tables.schema, str(root))["rejects"]
    too_large = {r[0] for r in rejects if r[2] == "file_too_large"}
    assert too_large == {"/dolma/part-0000.json.gz", "/crawl.warc.gz"}  # 118 kB and 38 kB; web.jsonl has 34 kB
    assert metrics["rejects.file_too_large"] == 2
    assert metrics["docs_read"] == len([r for r in results["local"]["docs"] if r[0] not in too_large])


def test_spark_listing_of_a_missing_path_is_a_clear_error(spark, make_settings, tmp_path: Path) -> None:
    settings = make_settings(IngestConfig(inputs=[InputSpec(path=f"file://{tmp_path}/nope", format="jsonl")]))
    with pytest.raises(FileNotFoundError, match="nope \\(jsonl\\) matches no file"):
        run(spark, settings)


def hadoop_version() -> str:
    """The Hadoop client Spark ships with (hadoop-aws must match it)."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    (api,) = jars.glob("hadoop-client-api-*.jar")
    return api.name.removeprefix("hadoop-client-api-").removesuffix(".jar")


@pytest.fixture
def s3_endpoint():
    """A moto S3 server on a free loopback port holding the sample corpus under s3://corpus/sample/."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    s3.create_bucket(Bucket=BUCKET)
    for name in CORPUS_FILES:
        s3.upload_file(str(SAMPLE / name), BUCKET, f"sample/{name}")
    s3.put_object(Bucket=BUCKET, Key="sample/bad/_SUCCESS", Body=b"")  # a marker file: skipped, as on disk
    yield endpoint
    server.stop()


def test_s3a_ingest_over_connect_matches_the_local_disk(spark, new_settings, s3_endpoint, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    for name in CORPUS_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / name, root / name)
    local_settings = new_settings(IngestConfig(inputs=sample_inputs(str(root)), listing="local"))
    run(spark, local_settings)
    local = ingested(spark, local_settings.tables.schema, str(root))

    uri = f"s3a://{BUCKET}/sample"
    inputs = ", ".join(
        f"{{path: '{s.path}', format: {s.format}"
        + "".join(f", {k}: {v}" for k, v in (("source", s.source), ("id_field", s.id_field),
                                            ("text_field", s.text_field), ("url_field", s.url_field)) if v)
        + "}"
        for s in sample_inputs(uri)
    )  # fmt: skip
    hadoop = {
        "fs.s3a.endpoint": s3_endpoint,
        "fs.s3a.endpoint.region": "us-east-1",
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false",
    }
    data = tmp_path / "data"
    args = [
        sys.executable, "-m", "backforth.cli", "ingest", "--remote", "local[2]",
        "--set", f"data_dir={data}",
        "--set", f"job.inputs=[{inputs}]",
        "--set", f"spark.conf.spark.jars.packages=org.apache.hadoop:hadoop-aws:{hadoop_version()}",
        *[arg for key, value in hadoop.items() for arg in ("--set", f"spark.conf.spark.hadoop.{key}={value}")],
    ]  # fmt: skip
    # Credentials come from the environment (S3A's default provider chain), never from config or the command line.
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    env.pop("SPARK_REMOTE", None)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stderr[-4000:]

    spark.sql("CREATE SCHEMA IF NOT EXISTS s3view")
    for name in ("docs_raw", "ingest_rejects", "ingest_files"):
        spark.sql(f"CREATE OR REPLACE VIEW s3view.{name} AS SELECT * FROM delta.`{data}/warehouse/backforth.db/{name}`")
    remote = ingested(spark, "s3view", uri)
    assert remote["docs"] == local["docs"]
    assert remote["rejects"] == local["rejects"]
    assert remote["files"] == local["files"]
    assert len(local["docs"]) > 50 and {"truncated_gzip", "malformed_json"} <= {r[2] for r in local["rejects"]}
    assert {r[0] for r in remote["files"]} == {f"/{name}" for name in CORPUS_FILES}  # _SUCCESS skipped
