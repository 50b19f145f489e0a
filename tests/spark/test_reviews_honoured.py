"""People's reviews flow back: labels written the way the review app writes them (delta-rs, no JVM) are read by
filter (a rejected pair is not selected, its slot goes to the next pair, the pair stays with reason human_reject)
and export (the rejected response dropped as human_reject, an edit exported instead of the original, with the review
that made it), on the real steps with the fake engine; every response keeps the pair it answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_run import FILTER_TOP_HALF, REWRITE_REPLY, fake

from backforth import reviews as review_table
from backforth.jobs.export import ExportConfig, SeedMix
from backforth.jobs.filter import FilterConfig
from backforth.jobs.respond import RewriteConfig
from backforth.review.store import Store

pytestmark = pytest.mark.spark


def test_filter_and_export_honour_rejections_and_edits(spark, make_settings, answered, tmp_path) -> None:
    settings = make_settings()
    run = answered(settings)
    schema = settings.tables.schema
    top, rewrite = (
        FilterConfig(**FILTER_TOP_HALF),
        RewriteConfig(model="fake", model_options=fake(tmp_path, reply=REWRITE_REPLY)),
    )
    first = run("filter", top)
    export = ExportConfig(seed=SeedMix(include=False))
    run("export", export)
    responses = spark.table(f"{schema}.responses").where("status LIKE 'ok%'").orderBy("doc_id").collect()
    assert len(responses) == first["pairs_kept"] >= 3

    store = Store(review_table.local_path(settings).parent)
    rejected, edited = store.pair(responses[0]["doc_id"], responses[0]["step_version"]), None
    store.add_review(rejected, "reject", "ann", reason="bad_instruction")
    edited = store.pair(responses[1]["doc_id"], responses[1]["step_version"])
    store.add_review(edited, "edit", "bob", instruction="A clearer question?", response="A better answer, edited.")
    store.add_review(store.pair(responses[2]["doc_id"], responses[2]["step_version"]), "accept", "ann")

    again = run("filter", top)
    assert again["human_reject"] == 1 and again["pairs_kept"] == first["pairs_kept"]  # the slot went on
    pairs = spark.table(f"{schema}.pairs_filtered").collect()
    assert [r["doc_id"] for r in pairs if r["drop_reason"] == "human_reject"] == [rejected.doc_id]
    newcomer = run("rewrite", rewrite)  # the same filter version: only the pair that took the slot is answered
    assert newcomer["pairs_rows"] == 1
    out = run("export", export)
    assert out["dropped.human_reject"] == 1
    assert spark.table(f"{schema}.sft_pairs").select("step_version").distinct().count() == 2  # reviews: a new version
    newest = max(spark.table(f"{schema}.sft_pairs").select("step_version", "exported_at").collect(),
                 key=lambda r: r["exported_at"])["step_version"]  # fmt: skip
    current = {r["doc_id"]: r for r in spark.table(f"{schema}.sft_pairs").where(f"step_version = '{newest}'").collect()}
    assert current[rejected.doc_id]["drop_reason"] == "human_reject"
    fixed = current[edited.doc_id]
    assert fixed["drop_reason"] is None and fixed["response"] == "A better answer, edited."
    assert fixed["instruction"] == "A clearer question?" and fixed["messages"][1]["content"] == fixed["response"]
    assert fixed["review"]["label"] == "edit" and fixed["review"]["reviewer"] == "bob"
    assert current[responses[2]["doc_id"]]["review"]["label"] == "accept"
    untouched = [r for d, r in current.items() if d not in (rejected.doc_id, edited.doc_id, responses[2]["doc_id"])]
    assert untouched and all(r["review"] is None and r["drop_reason"] is None for r in untouched)
    exported = (Path(settings.data_dir) / "export" / "rewrite" / "jsonl").rglob("*.json")
    text = "".join(p.read_text() for p in exported)
    assert "A better answer, edited." in text and rejected.instruction not in text
    # the generated rows were never changed
    assert spark.table(f"{schema}.responses").where("response = 'A better answer, edited.'").count() == 0
    # every response still has the pair it answers (what `backforth check` verifies): the rejected pair stayed
    orphans = spark.sql(f"SELECT r.doc_id FROM {schema}.responses r LEFT ANTI JOIN {schema}.pairs_filtered p "
                        "ON r.doc_id = p.doc_id AND r.source_version = p.step_version")  # fmt: skip
    assert orphans.count() == 0
