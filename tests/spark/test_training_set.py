"""export as a training set: seed pairs mixed in with their tag, a seed share, nested subsets, and benchmark
decontamination by shared word n-grams (a Spark join), on hand-built tables and the bundled seed fixture."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from backforth import catalog, lineage
from backforth.catalog import SEED_TAG, WEB_TAG
from backforth.contamination import Benchmark, DecontaminationConfig, find_contaminated
from backforth.errors import UserError
from backforth.jobs.export import ExportConfig, SeedMix
from backforth.jobs.seed import SeedConfig, SeedInput
from backforth.lineage import InputRef, StepRun
from backforth.registry import get_job
from backforth.runner import run_job

pytestmark = pytest.mark.spark
SEED_FIXTURE = Path(__file__).resolve().parents[2] / "data" / "sample" / "seed"
FV, RW = "filter-ge3-ffff", "rw-v1-cccc"
T0 = datetime(2024, 1, 1)
MODEL = "struct<profile:string,backend:string,uri:string,version:string>"
N_DOCS = 40


def answer(i: int) -> str:
    """A response of 30 words no other response shares (w<i>x<j>)."""
    return "Here is how it works: " + " ".join(f"w{i}x{j}" for j in range(30)) + "."


def build_run(spark, schema: str) -> None:
    """docs_raw, pairs_filtered and responses of one filter → rewrite run, with its step_runs; scores 3-5."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    ids = [f"d{i:02d}" for i in range(N_DOCS)]
    docs = spark.createDataFrame([(d, f"https://example.org/{d}", "sample") for d in ids],
                                 "doc_id string, url string, source string")  # fmt: skip
    docs.write.format("delta").saveAsTable(f"{schema}.docs_raw")
    spark.createDataFrame(
        [(d, f"q{i}", "bt-v1", 3 + i % 3, FV) for i, d in enumerate(ids)],
        "doc_id string, instruction string, instruction_version string, score int, step_version string",
    ).write.format("delta").saveAsTable(f"{schema}.pairs_filtered")
    status = ["ok"] * 36 + ["truncated", "refusal", "ok_unclosed", "ok_untagged"]  # 38 accepted
    fake = ("fake", "fake", "none", None)
    spark.createDataFrame(
        [(d, "rewrite", RW, FV, f"How does thing {i} work?", answer(i), status[i], fake) for i, d in enumerate(ids)],
        f"doc_id string, kind string, step_version string, source_version string, instruction string, "
        f"response string, status string, model {MODEL}",
    ).write.format("delta").saveAsTable(f"{schema}.responses")
    runs = [
        StepRun("filter", step_version=FV, status="finished", output_table=f"{schema}.pairs_filtered",
                started_at=T0, finished_at=T0),
        StepRun("rewrite", step_version=RW, status="finished", output_table=f"{schema}.responses",
                inputs=[InputRef(f"{schema}.pairs_filtered", "filter", FV)], params={"kind": "rewrite"},
                started_at=T0, finished_at=T0),
    ]  # fmt: skip
    spark.createDataFrame([r.as_row() for r in runs], lineage.schema()).write.format("delta").saveAsTable(
        f"{schema}.step_runs"
    )


def lines_of(folder: Path) -> list[dict]:
    return [json.loads(x) for f in sorted((folder / "jsonl").glob("*/*.json")) for x in f.read_text().splitlines()]


def test_contamination_matches_word_runs_whatever_the_case_and_punctuation(spark) -> None:
    pairs = spark.createDataFrame(
        [("a", "Explain the tides.", "The Moon's pull, with the Sun's, raises two bulges of water on Earth each day!"),
         ("b", "Short one", "only twelve words are shared with the benchmark prompt here, no more."),
         ("c", None, None)],
        "pair_id string, instruction string, response string",
    )  # fmt: skip
    prompts = spark.createDataFrame(
        [("tides", "QUESTION: the moon s pull with the sun s raises two bulges of water on earth?"),
         ("other", "Only twelve words are shared with the benchmark prompt here; no more, nor less.")],
        "benchmark string, prompt string",
    )  # fmt: skip
    found = {r["pair_id"]: r["contamination"] for r in find_contaminated(pairs, prompts, 13).collect()}
    assert set(found) == {"a"}  # "b" shares 12 words in a row with the second prompt: under the 13-word run
    assert found["a"]["benchmark"] == "tides" and found["a"]["field"] == "response"
    shared = "the moon s pull with the sun s raises two bulges of water on earth".split()  # 15 words: 3 runs
    runs = {" ".join(shared[i : i + 13]) for i in range(3)}
    assert found["a"]["ngram"] == min(runs)  # the first run in text order of the n-gram (a stable choice)
    assert {r["pair_id"] for r in find_contaminated(pairs, prompts, 12).collect()} == {"a", "b"}


def test_export_mixes_seed_pairs_cuts_nested_subsets_and_drops_contaminated_pairs(
    spark, make_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(SeedConfig(inputs=[
        SeedInput(str(SEED_FIXTURE / "oasst_trees.jsonl.gz"), "oasst", "sample-oasst"),
        SeedInput(str(SEED_FIXTURE / "pairs.jsonl"), "jsonl", "sample-pairs")]))  # fmt: skip
    schema = settings.tables.schema
    build_run(spark, schema)
    assert run_job(get_job("seed"), settings, spark).metrics["pairs_new"] == 37
    long_seed = next(r for r in spark.table(f"{schema}.seed_pairs").orderBy("pair_id").collect()
                     if len(r["response"].split()) >= 20)  # fmt: skip
    # a table written by an export from before training sets: it gains the new columns, its rows stay
    spark.createDataFrame([("old", "export-old", "rewrite")], "pair_id string, step_version string, kind string") \
        .write.format("delta").saveAsTable(f"{schema}.sft_pairs")  # fmt: skip
    counted = catalog.stage_rows(spark, f"{schema}.sft_pairs", catalog.table("sft_pairs"), "export-old").collect()
    assert [tuple(r) for r in counted] == [("sft_pairs", None, 1)]  # the funnel reads it before it gains drop_reason

    bench = tmp_path / "bench" / "qa_prompts.jsonl"
    bench.parent.mkdir()
    prompts = [
        {"id": 1, "prompt": "Rewrite: " + " ".join(f"W5X{j}" for j in range(4, 17)).upper() + "!"},  # d05, 13 words
        {"id": 2, "prompt": " ".join(f"w7x{j}" for j in range(12)) + " and then something else"},  # 12: not enough
        {"id": 3, "prompt": "Please answer: " + " ".join(long_seed["response"].split()[2:17])},  # a seed pair
        {"id": 4, "prompt": "What is the capital of a country that does not exist?"},
    ]
    bench.write_text("".join(json.dumps(p) + "\n" for p in prompts), encoding="utf-8")
    out = tmp_path / "sets"
    cfg = ExportConfig(
        name="mixed", sizes=[10, 20, 100], seed=SeedMix(share=0.2), validation_fraction=0.2, output_dir=str(out),
        decontamination=DecontaminationConfig(benchmarks=[Benchmark(str(bench), field="prompt")]),
    )  # fmt: skip
    settings.job = cfg
    outcome = run_job(get_job("export"), settings, spark)
    m = outcome.metrics
    version = outcome.tags["backforth.export_version"]

    rows = spark.table(f"{schema}.sft_pairs").where(f"step_version = '{version}'").collect()
    dropped = {r["doc_id"] or r["instruction"]: r for r in rows if r["drop_reason"]}
    assert set(dropped) == {"d05", long_seed["instruction"]} and m["dropped.contaminated"] == 2
    assert dropped["d05"]["contamination"]["benchmark"] == "qa_prompts"
    assert dropped["d05"]["contamination"]["field"] == "response"
    assert dropped["d05"]["contamination"]["ngram"] == " ".join(f"w5x{j}" for j in range(4, 17))
    assert all(r["rank"] is None and not r["subsets"] for r in dropped.values())

    kept = [r for r in rows if not r["drop_reason"]]
    generated = [r for r in kept if r["kind"] == "rewrite"]
    seeds = [r for r in kept if r["kind"] == "seed"]
    assert len(generated) == 37 == m["pairs_exported"]  # 38 accepted responses, one contaminated
    assert len(seeds) == round(37 * 0.2 / 0.8) == 9 == m["seed_pairs_exported"]  # the share, of 36 clean seeds
    assert sorted(r["rank"] for r in generated) == list(range(1, 38))
    by_rank = sorted(generated, key=lambda r: r["rank"])
    assert [r["score"] for r in by_rank] == sorted((r["score"] for r in generated), reverse=True)  # best first
    assert all(r["messages"][0]["content"] == f"{r['instruction']}\n\n{WEB_TAG}" for r in generated)
    assert all(r["messages"][0]["content"] == f"{r['instruction']}\n\n{SEED_TAG}" and r["doc_id"] is None
               for r in seeds)  # fmt: skip
    assert outcome.tags["backforth.sizes_skipped"] == "100"  # only 37 generated pairs: no subset of 100

    # nested subsets: the best `size` generated pairs and seed pairs at the same share, each in its own folder
    members = {n: {r["pair_id"] for r in kept if n in (r["subsets"] or [])} for n in (10, 20)}
    assert members[10] < members[20] < {r["pair_id"] for r in kept}
    assert {r["pair_id"] for r in by_rank[:10]} <= members[10]
    for size, n_seed in ((10, round(10 * 0.25)), (20, round(20 * 0.25))):
        lines = lines_of(out / "subsets" / str(size))
        assert {x["pair_id"] for x in lines} == members[size]
        assert sum(x["kind"] == "seed" for x in lines) == n_seed and len(lines) == size + n_seed
        assert m[f"subset.{size}.rows"] == size + n_seed
        card = (out / "subsets" / str(size) / "README.md").read_text()
        assert f"subset {size}" in card
        assert_card_adds_up(card, size, n_seed)
    assert not (out / "subsets" / "100").exists()

    # the full set's files, card and funnel
    lines = lines_of(out)
    assert len(lines) == 37 + 9 == m["rows_exported"] and {x["split"] for x in lines} == {"train", "validation"}
    assert not any("drop_reason" in x or "contamination" in x for x in lines)
    card = (out / "README.md").read_text()
    assert_card_adds_up(card, 37, 9)
    assert "| contaminated | 2 |" in card and SEED_TAG in card and WEB_TAG in card
    this = StepRun("export", step_version=version, output_table=f"{schema}.sft_pairs", params={"kind": "rewrite"})
    stages = {s.label: s for s in catalog.funnel(spark, settings, {"export": this})}
    assert stages["pairs exported"].kept == 37 and stages["pairs exported"].reasons == {"contaminated": 1}
    old = spark.table(f"{schema}.sft_pairs").where("pair_id = 'old'").collect()
    assert len(old) == 1 and old[0]["drop_reason"] is None

    # the files load with `datasets` as they are: the card's YAML header names the splits (the Hub reads it too)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    import datasets

    loaded = datasets.load_dataset(str(out))
    assert {k: v.num_rows for k, v in loaded.items()} == {
        s: sum(x["split"] == s for x in lines) for s in ("train", "validation")
    }
    assert loaded["train"][0]["messages"][0]["role"] == "user"
    subset = datasets.load_dataset(str(out / "subsets" / "10"))
    assert sum(v.num_rows for v in subset.values()) == 10 + 2
    assert card.startswith("---\n") and "size_categories:\n- n<1K" in card and "license: other" in card

    # pushing to the Hub without a token fails before anything is written
    cfg.push_to_hub, cfg.hub_token_env = "someone/backforth-set", "BACKFORTH_TEST_UNSET_TOKEN"
    monkeypatch.delenv("BACKFORTH_TEST_UNSET_TOKEN", raising=False)
    with pytest.raises(UserError, match="no token in \\$BACKFORTH_TEST_UNSET_TOKEN"):
        run_job(get_job("export"), settings, spark)
    cfg.push_to_hub = None

    # the same settings give the same version and the same rows; every seed pair without a share
    again = run_job(get_job("export"), settings, spark)
    assert again.tags["backforth.export_version"] == version
    ranks = {r["pair_id"]: r["rank"] for r in spark.table(f"{schema}.sft_pairs").where(
        f"step_version = '{version}'").collect()}  # fmt: skip
    assert ranks == {r["pair_id"]: r["rank"] for r in rows}
    cfg.seed.share, cfg.sizes = None, []
    every = run_job(get_job("export"), settings, spark)
    assert every.tags["backforth.export_version"] != version and every.metrics["seed_pairs_exported"] == 36


def assert_card_adds_up(card: str, generated: int, seeds: int) -> None:
    """The card's mixture table: train + validation = total for each part, and the parts add up to the set."""
    row = r"^\| (?:\*\*)?(generated|seed|all)\b.*?\| (\d+) \| (\d+) \| (\d+) \|$"
    table = {m[1]: [int(m[2]), int(m[3]), int(m[4])] for m in re.finditer(row, card, re.M)}
    assert table["generated"][2] == generated and table["seed"][2] == seeds
    assert all(train + val == total for train, val, total in table.values())
    assert [sum(col) for col in zip(table["generated"], table["seed"], strict=True)] == table["all"]
