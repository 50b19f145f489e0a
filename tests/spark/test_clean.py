"""clean on real Spark: one document per rule, nothing lost, technical pages kept, re-runs and rule changes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from backforth.jobs.clean import CleanConfig, clean_documents, run

pytestmark = pytest.mark.spark
CORPUS = yaml.safe_load((Path(__file__).resolve().parents[2] / "data/sample/source/corpus.yaml").read_text())
BY_KIND: dict[str, list[str]] = {}
for _doc in CORPUS:
    BY_KIND.setdefault(_doc["kind"], []).append(_doc["text"])
ARTICLE = BY_KIND["article"][0]

CASES = {
    "good_article": (ARTICLE, None),
    "technical": (BY_KIND["technical"][0], None),
    "menu": ("\n".join(f"Home | About | Shop {i} | Contact | Login | Help" for i in range(40)), "navigation"),
    "repeated": ("\n".join(["Buy the best shoes online today at our store."] * 40), "dup_lines"),
    "soup": (" ".join(["#@!$ %% ^^ && ** ||| ~~ {}[] <> ;;"] * 30 + ["some words here"]), "symbol_soup"),
    "lorem": ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12, "lorem_ipsum"),
    "short": ("Just a few words.", "too_short"),
    "german": (" ".join(BY_KIND["non_english"][0].split()), "lang_mismatch"),
    "blank": ("   \n\t  ", "empty_text"),
    "null": (None, "missing_text"),
    "binary": ("\x00\x01\x02\ufffd\ufffd " * 200 + ARTICLE, "binary_junk"),
    "markup": ("<div class='a'><span><a href='#'>x</a></span></div>\n" * 80, "markup"),
    "huge": ("word " * 2_100_000, "too_long"),  # ~10 MB
    "unseen_script": (" ".join(["𒀀𒀁𒀂 𒀃𒀄𒀅 𒀆𒀇"] * 60), "any"),  # cuneiform: several rules fire, see below
}


def test_each_rule_names_its_drop_and_nothing_is_lost(spark) -> None:
    df = spark.createDataFrame([(k, t) for k, (t, _) in CASES.items()], "doc_id string, text string")
    out = {r["doc_id"]: r for r in clean_documents(df, CleanConfig()).collect()}
    assert set(out) == set(CASES)
    got = {k: out[k]["drop_reason"] for k in CASES if CASES[k][1] != "any"}
    assert got == {k: reason for k, (_, reason) in CASES.items() if reason != "any"}
    assert "lang_mismatch" in out["unseen_script"]["failed_rules"] and out["unseen_script"]["lang"] != "en"
    assert out["good_article"]["lang"] == "en" and out["good_article"]["failed_rules"] == []
    assert out["huge"]["n_tokens"] > CleanConfig().max_doc_tokens
    assert "too_many_tokens" in out["huge"]["failed_rules"]
    assert out["german"]["lang"] == "de"


def test_normalisation_keeps_original_only_when_more_than_whitespace_changed(spark) -> None:
    df = spark.createDataFrame([("ws", "a  \r\nb\n\n\n\nc  "), ("nfc", "cafe\u0301 x")], "doc_id string, text string")
    out = {r["doc_id"]: r for r in clean_documents(df, CleanConfig()).collect()}
    assert (out["ws"]["text"], out["ws"]["text_original"]) == ("a\nb\n\nc", None)
    assert (out["nfc"]["text"], out["nfc"]["text_original"]) == ("café x", "cafe\u0301 x")


def test_technical_pages_are_kept_and_junk_is_dropped(spark) -> None:
    rows = [(f"{d['kind']}-{i}", d["text"], d["kind"]) for i, d in enumerate(CORPUS)]
    df = spark.createDataFrame(rows, "doc_id string, text string, kind string")
    out = clean_documents(df.select("doc_id", "text"), CleanConfig()).join(df.select("doc_id", "kind"), "doc_id")
    stats = out.selectExpr("kind", "int(drop_reason IS NULL) AS kept").groupBy("kind").agg({"kept": "avg"}).collect()
    kept = {r["kind"]: r["avg(kept)"] for r in stats}
    assert kept["technical"] >= 0.85, kept
    assert kept["article"] >= 0.95, kept
    assert kept["junk"] == 0.0, kept
    assert kept["non_english"] == 0.0, kept


def make_raw(spark, schema: str, rows: list[tuple[str, str]]) -> None:
    df = spark.createDataFrame(rows, "doc_id string, text string")
    df.write.format("delta").mode("append").saveAsTable(f"{schema}.docs_raw")


def test_run_twice_incremental_and_rule_change(spark, make_settings) -> None:
    settings = make_settings(CleanConfig())
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA {schema}")
    make_raw(spark, schema, [("a", ARTICLE), ("b", "too short")])
    first = run(spark, settings)
    assert (first.metrics["docs_in"], first.metrics["docs_kept"], first.metrics["dropped.too_short"]) == (2, 1, 1)
    assert list(first.figures) == ["clean_drop_reasons.png"]
    assert run(spark, settings).metrics["docs_in"] == 0
    make_raw(spark, schema, [("c", BY_KIND["article"][1])])
    assert run(spark, settings).metrics["docs_in"] == 1
    assert spark.table(f"{schema}.docs_clean").count() == 3
    stricter = replace(
        settings, job=replace(settings.job, thresholds=replace(settings.job.thresholds, min_words=10_000))
    )
    again = run(spark, stricter).metrics
    assert (again["docs_in"], again["docs_kept"]) == (3, 0)
    versions = spark.table(f"{schema}.docs_clean").select("clean_version").distinct().collect()
    assert [r[0] for r in versions] == [stricter.job.fingerprint()]
    assert spark.table(f"{schema}.docs_clean").count() == 3
