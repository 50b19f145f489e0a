"""PII redaction inside clean, on real Spark: technical pages (code blocks, URLs, git remotes, versions, dates,
hashes, shell prompts) with PII planted at known spots come out equal to their input with exactly those spans
replaced; the counts land in stats and in the job's metrics; text_original never keeps the PII unless asked to."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from backforth.catalog import TABLES
from backforth.jobs.clean import CleanConfig, clean_documents, run
from backforth.udfs.pii import PLACEHOLDERS, PiiConfig

pytestmark = pytest.mark.spark

# {type|value}: a planted span. Everything else on these pages must come through unchanged.
DEPLOY = """# Deploying the inventory service

The inventory service 2.14.3 runs behind a reverse proxy. This guide was last checked on 2024-03-18 at 09:15 UTC
against release v2.14.3 (commit 9f3c2a1b7d4e5f60718293a4b5c6d7e8f9a0b1c2). Questions go to the owner of the
service, {email|marta.lindqvist@northwind-freight.se}, or to the on-call phone {phone|+46 8 555 123 45}.

## Getting the code

Clone the repository over SSH and check out the tag:

```bash
git clone git@github.com:northwind/inventory.git
cd inventory && git checkout v2.14.3
git remote add mirror ssh://git@git.northwind.internal:2222/platform/inventory.git
```

## Running it locally

Start the service and check its health endpoint on the loopback address:

```console
[dev@laptop inventory]$ make run PORT=8080
[dev@laptop inventory]$ curl -s http://127.0.0.1:8080/healthz
{"status": "ok", "version": "2.14.3", "uptime_s": 12.5}
```

The container listens on 0.0.0.0:8080 and talks to the database at 10.20.30.40:5432. The production proxy has the
public address {ip_address|151.101.65.140}; the staging one uses 192.168.56.10. Never paste the deploy token
({api_key|ghp_Q7mW2xR9tK4vB8nJ3cL6pZ1yH5sD0fG2aE4u}) into tickets.

| setting | default | unit |
|---|---|---|
| pool_size | 16 | connections |
| timeout | 2.5 | seconds |
| retry_backoff | 0.125 | seconds |
"""

BILLING = """# Billing API: test mode

Payments in test mode never reach a bank. See https://docs.payments.example.com/v1/charges?limit=25 for the full
reference and https://status.example.org:8443/ for outages. The sandbox key in the snippet below is fake, but keys of
this shape are secrets: {api_key|sk_live_51HxQ2aLmN8pR4tV6wY0zB3cD5}.

```python
import requests

resp = requests.post(
    "https://api.payments.example.com/v1/charges",
    auth=("user", "pass"),
    data={"amount": 1999, "currency": "eur", "source": "tok_visa"},
    timeout=30,
)
print(resp.json()["id"])  # ch_3MqL2eLkdIwHu7ix0kz1x9GZ
```

A customer once mailed the card number {credit_card|4539 1488 0343 6467} in a support ticket, from
{email|j.okafor@lagos-textiles.ng}; they also left {phone|(415) 867-5309} as a callback number. Numbers like
1673784000 (a Unix time), 2023-11-05T14:22:31Z, the UUID 0b7e3d4a-5c6f-4a8b-9d0e-1f2a3b4c5d6e and version 1.2.3.4
of the SDK are not PII. The webhook secret is rotated every 90 days; IPv4 8.8.8.8 is used for DNS.
"""

CASES = {"deploy": DEPLOY, "billing": BILLING}
SPAN = re.compile(r"\{(\w+)\|([^}]+)\}")


def raw(page: str) -> str:
    return SPAN.sub(lambda m: m.group(2), page)


def expected(page: str) -> str:
    return SPAN.sub(lambda m: PLACEHOLDERS[m.group(1)], page)


def planted(page: str) -> dict[str, int]:
    counts = dict.fromkeys(PLACEHOLDERS, 0)
    for m in SPAN.finditer(page):
        counts[m.group(1)] += 1
    return counts


def docs(spark, extra: list[tuple[str, str]] = ()):
    rows = [(k, raw(v)) for k, v in CASES.items()] + list(extra)
    return spark.createDataFrame(rows, "doc_id string, text string")


def test_only_the_planted_pii_changes(spark) -> None:
    clean = "Plain page without anything personal, version 3.2.1, dated 2021-07-04.\n" * 10
    out = {r["doc_id"]: r for r in clean_documents(docs(spark, [("clean", clean)]), CleanConfig()).collect()}
    for name, page in CASES.items():
        row = out[name]
        assert row["text"] == expected(page).strip("\n"), name
        got = {t: row["stats"][f"pii_{t}"] for t in PLACEHOLDERS}
        assert got == planted(page), name
        assert row["text_original"] is None  # PII found, keep_original false: no copy of it anywhere
        assert row["drop_reason"] is None, row["failed_rules"]  # redaction is not a drop rule
    assert out["clean"]["stats"]["pii_email"] == 0 and out["clean"]["text_original"] is None


def test_keep_original_and_switching_off(spark) -> None:
    keeping = clean_documents(docs(spark), replace(CleanConfig(), pii=PiiConfig(keep_original=True))).collect()
    assert {r["doc_id"]: r["text_original"] for r in keeping} == {k: raw(v) for k, v in CASES.items()}
    only_ip = replace(CleanConfig(), pii=PiiConfig(types=["ip_address"]))
    row = clean_documents(docs(spark), only_ip).where("doc_id = 'deploy'").first()
    assert "<IP_ADDRESS>" in row["text"] and "marta.lindqvist@" in row["text"]
    assert (row["stats"]["pii_ip_address"], row["stats"]["pii_email"]) == (1, None)  # NULL: not looked for
    off = replace(CleanConfig(), pii=PiiConfig(redact=False))
    rows = clean_documents(docs(spark), off).collect()
    assert {r["doc_id"]: r["text"] for r in rows} == {k: raw(v).strip("\n") for k, v in CASES.items()}
    assert all(r["stats"]["pii_email"] is None for r in rows)
    assert CleanConfig().fingerprint() != off.fingerprint()


def test_fast_and_reference_redact_alike(spark) -> None:
    rows = {}
    for impl in ("fast", "reference"):
        out = clean_documents(docs(spark), CleanConfig(), impl=impl).drop("cleaned_at")
        rows[impl] = {r["doc_id"]: r.asDict(recursive=True) for r in out.collect()}
    assert rows["fast"] == rows["reference"]


def test_run_reports_pii_metrics_and_upgrades_an_old_table(spark, make_settings) -> None:
    settings = make_settings(CleanConfig())
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    docs(spark).write.format("delta").saveAsTable(f"{schema}.docs_raw")
    # a docs_clean written by clean-v3: its stats struct has no pii_* fields
    current = TABLES["docs_clean"].schema()
    old_stats = [f for f in current["stats"].dataType.fields if not f.name.startswith("pii_")]
    old = type(current)([f if f.name != "stats" else replace_type(f, type(current)(old_stats)) for f in current])
    spark.createDataFrame([], old).write.format("delta").saveAsTable(f"{schema}.docs_clean")
    metrics = run(spark, settings).metrics
    want = {t: sum(planted(p)[t] for p in CASES.values()) for t in PLACEHOLDERS}
    assert {t: metrics[f"pii.{t}"] for t in PLACEHOLDERS} == want
    assert metrics["docs_with_pii"] == 2
    stored = spark.sql(f"SELECT sum(stats.pii_email) AS n FROM {schema}.docs_clean").first()["n"]
    assert stored == want["email"]
    names = spark.table(f"{schema}.docs_clean").schema["stats"].dataType.fieldNames()
    assert names == current["stats"].dataType.fieldNames()


def replace_type(f, data_type):
    from pyspark.sql.types import StructField

    return StructField(f.name, data_type, f.nullable)
