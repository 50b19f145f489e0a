"""Seed rules without Spark: OASST trees → (first turn, rank-0 reply) or a counted reason; plain JSONL; the fixture."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest

from backforth.jobs.seed import SeedConfig, SeedInput, collect, pair_from_plain, pair_from_tree, pair_id

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "sample" / "seed"
EN = ["en"]


def msg(role: str, text: str, rank: int | None = None, lang: str = "en", replies=(), **extra) -> dict:
    return {"message_id": f"id-{text[:6]}", "role": role, "text": text, "rank": rank, "lang": lang,
            "deleted": False, "replies": list(replies), **extra}  # fmt: skip


def tree(*replies, lang: str = "en", text: str = "How do tides work?", **root) -> dict:
    return {"message_tree_id": "t1", "tree_state": "ready_for_export",
            "prompt": msg("prompter", text, lang=lang, replies=replies, **root)}  # fmt: skip


def test_keeps_the_first_turn_and_the_reply_ranked_0_whatever_the_order():
    follow_up = msg("prompter", "And neap tides?", replies=[msg("assistant", "They are weaker.", rank=0)])
    obj = tree(msg("assistant", "Second best.", rank=1),
               msg("assistant", "The moon's pull raises bulges.", rank=0, replies=[follow_up]),
               msg("assistant", "Worst.", rank=2))  # fmt: skip
    out = pair_from_tree(obj, EN)
    assert out["kind"] == "pair"
    assert (out["instruction"], out["response"]) == ("How do tides work?", "The moon's pull raises bulges.")
    assert out["source_id"] == "t1" and out["reply_id"] == "id-The mo" and out["lang"] == "en"
    # a bare root message (no tree wrapper) is read the same way; a non-zero best_rank picks that reply
    assert pair_from_tree(obj["prompt"], EN)["response"] == out["response"]
    assert pair_from_tree(obj, EN, best_rank=1)["response"] == "Second best."


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (tree(), "no_reply"),
        (tree(msg("prompter", "Only a prompter follow-up")), "no_reply"),
        (tree(msg("assistant", "Unranked."), msg("assistant", "Also unranked.")), "missing_rank"),
        (tree(msg("assistant", "Ranked 1 only.", rank=1)), "missing_rank"),
        (tree(msg("assistant", "Antwort.", rank=0, lang="de"), lang="de"), "other_language"),
        (tree(msg("assistant", "Risposta.", rank=0, lang="it")), "other_language"),
        (tree(msg("assistant", "Fine.", rank=0), deleted=True), "deleted"),
        (tree(msg("assistant", "Gone.", rank=0, deleted=True)), "deleted"),
        (tree(msg("assistant", "Gone.", rank=0, deleted=True), msg("assistant", "Here.", rank=1)), "deleted"),
        (tree(msg("assistant", "   ", rank=0)), "empty_text"),
        (tree(msg("assistant", "Fine.", rank=0), text=""), "empty_text"),
        ({"message_tree_id": "x", "prompt": msg("assistant", "No prompter.", replies=[])}, "not_a_tree"),
        ({"id": 1, "text": "a Dolma document, not a tree"}, "not_a_tree"),
    ],
)
def test_bad_trees_get_a_reason(obj, reason):
    out = pair_from_tree(copy.deepcopy(obj), EN)
    assert out["kind"] == "reject" and out["reason"] == reason and out["detail"]


def test_plain_pairs_and_their_reasons():
    spec = SeedInput(path="x", format="jsonl", instruction_field="q", response_field="a", id_field="key")
    ok = pair_from_plain({"q": " Why? ", "a": "Because.", "key": 7}, spec)
    assert (ok["instruction"], ok["response"], ok["source_id"]) == ("Why?", "Because.", "7")
    assert pair_from_plain({"q": "Why?"}, spec)["reason"] == "missing_field"
    assert pair_from_plain({"q": "Why?", "a": 4}, spec)["reason"] == "bad_field_type"
    assert pair_from_plain({"q": " ", "a": "x"}, spec)["reason"] == "empty_text"
    assert pair_id("a", "b") != pair_id("ab", "") and len(pair_id("a", "b")) == 32


def test_the_fixture_yields_its_pairs_and_counts_every_bad_input():
    cfg = SeedConfig(inputs=[SeedInput(str(FIXTURE / "oasst_trees.jsonl.gz"), "oasst", "sample-oasst"),
                             SeedInput(str(FIXTURE / "pairs.jsonl"), "jsonl", "sample-pairs")])  # fmt: skip
    pairs, rejects, counts = collect(cfg)
    by_format = Counter(p["source_format"] for p in pairs)
    assert by_format == {"oasst": 32, "jsonl": 5}
    reasons = Counter((r["source_format"], r["reason"]) for r in rejects)
    assert reasons == {
        ("oasst", "malformed_json"): 1, ("oasst", "not_an_object"): 1, ("oasst", "duplicate_pair"): 1,
        ("oasst", "no_reply"): 1, ("oasst", "missing_rank"): 1, ("oasst", "other_language"): 3,
        ("oasst", "deleted"): 2, ("oasst", "empty_text"): 1, ("oasst", "not_a_tree"): 1,
        ("jsonl", "missing_field"): 1, ("jsonl", "empty_text"): 1, ("jsonl", "bad_field_type"): 1,
    }  # fmt: skip
    assert counts["records"] == len(pairs) + len(rejects)  # nothing read is lost
    assert all(r["raw"] and r["position"] > 0 for r in rejects)
    assert len({p["pair_id"] for p in pairs}) == len(pairs)
    bees = next(p for p in pairs if p["instruction"].startswith("How do honey bees"))
    assert bees["response"].startswith("Honey bees form a tight winter cluster")  # rank 0, not the listed-first
