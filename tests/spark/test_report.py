"""The dataset report on hand-built pipeline tables: funnel, lengths, diversity, judge, MAUVE, samples, MLflow, HTML;
and MAUVE's sanity on real sentence embeddings (the report's featuriser)."""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import numpy as np
import pytest

from backforth import lineage
from backforth.jobs.report import ReportConfig
from backforth.lineage import InputRef, StepRun
from backforth.registry import get_job
from backforth.runner import run_job
from backforth.udfs.report_metrics import embed_texts, frontier_area, mauve_score, trigram_diversity
from backforth.udfs.tokens import count_tokens

pytestmark = pytest.mark.spark

BT, SC, FV = "bt-v1-aaaa", "score-v1-bbbb", "filter-ge4-ffff"
RW, DS, EX = "rw-v1-cccc", "ds-v1-dddd", "export-gggg"
T0 = datetime(2024, 1, 1)
MODEL = "struct<profile:string,backend:string,uri:string,version:string>"
FAKE = ("fake", "fake", "none", None)
TOPICS = ["bees", "tides", "granite", "comets", "moss", "gears", "clocks", "lenses", "rain", "kelp", "owls", "salt"]


def doc(i: int) -> str:
    return f"A long explanation about {TOPICS[i]}, written for curious readers of all ages. " * (2 + i)


def step_runs(schema: str) -> list[StepRun]:
    """The finished runs that wrote the tables below, each reading the one before (an older logprob scoring too)."""

    def run(step, version, table, reads=None, at=T0, rows_out=None, **params):
        inputs = [InputRef(f"{schema}.{reads[1]}", reads[0], reads[2])] if reads else []
        return StepRun(step, step_version=version, status="finished", inputs=inputs, output_table=f"{schema}.{table}",
                       model={"profile": "fake", "backend": "fake", "uri": "none", "version": None}, params=params,
                       rows_out=rows_out, started_at=at, finished_at=at)  # fmt: skip

    return [
        run("backtranslate", BT, "instructions"),
        run(
            "score",
            "score-v1-eeee",
            "scores",
            ("backtranslate", "instructions", BT),
            T0 - timedelta(days=1),
            mode="logprob",
        ),
        run("score", SC, "scores", ("backtranslate", "instructions", BT), mode="text"),
        run("filter", FV, "pairs_filtered", ("score", "scores", SC), rows_out=3, text="threshold 4"),
        run("rewrite", RW, "responses", ("filter", "pairs_filtered", FV), kind="rewrite"),
        run("distill", DS, "responses", ("filter", "pairs_filtered", FV), kind="distill"),
        run("export", EX, "sft_pairs", ("rewrite", "responses", RW), kind="rewrite"),
    ]


def seed_run(spark, schema: str) -> None:
    """12 documents and 2 rejected records through every stage; the counts are chosen by hand (see the test)."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    frames = []

    def save(rows, ddl: str, name: str) -> None:
        frames.append((spark.createDataFrame(rows, ddl), f"{schema}.{name}"))

    ids = [f"d{i:02d}" for i in range(12)]
    save(
        [(d, doc(i), f"https://example.org/{d}", "sample") for i, d in enumerate(ids)],
        "doc_id string, text string, url string, source string",
        "docs_raw",
    )
    save(
        [("f1", 3, "malformed_json"), ("f1", 9, "duplicate_id")],
        "file string, position long, reason string",
        "ingest_rejects",
    )
    # clean: d09, d10 too short, d11 another language → 9 kept; dedup: d08 an exact copy → 8 kept
    drops = {"d09": "too_short", "d10": "too_short", "d11": "lang"}
    save(
        [(d, doc(i), drops.get(d)) for i, d in enumerate(ids)],
        "doc_id string, text string, drop_reason string",
        "docs_clean",
    )
    save(
        [(d, d != "d08", "dup_exact" if d == "d08" else None) for d in ids[:9]],
        "doc_id string, is_kept boolean, dup_reason string",
        "docs_dedup",
    )
    # backtranslate: d00-d05 accepted, d06 describes the text, d07 an engine error
    instr = [(d, BT, f"How do {TOPICS[i]} work in everyday life?", None, None, FAKE, T0, "stop")
             for i, d in enumerate(ids[:6])]  # fmt: skip
    instr += [("d06", BT, None, "describes_text", None, FAKE, T0, "stop"),
              ("d07", BT, None, None, "empty input", FAKE, T0, "error")]  # fmt: skip
    save(instr, f"doc_id string, step_version string, instruction string, reject_reason string, error string, "
                f"model {MODEL}, created_at timestamp, finish_reason string", "instructions")  # fmt: skip
    # score (text mode): d00-d04 valid, d05 no score; 4 control pairs whose scores sit below the matched ones
    scores = [(d, d, "matched", SC, BT, "text", s, float(s), True, None, FAKE, T0)
              for d, s in zip(ids[:5], [5, 5, 4, 3, 2], strict=True)]  # fmt: skip
    scores.append(("d05", "d05", "matched", SC, BT, "text", None, None, False, "no_score", FAKE, T0))
    scores += [(f"{d}:control", d, "control", SC, BT, "text", 1, 1.0, True, None, FAKE, T0) for d in ids[:4]]
    # an older logprob-mode scoring of the same instructions, all valid: the per-mode table shows both
    scores += [(d, d, "matched", "score-v1-eeee", BT, "logprob", 3, 3.2, True, None, FAKE,
                T0 - timedelta(days=1)) for d in ids[:6]]  # fmt: skip
    save(scores, f"pair_id string, doc_id string, pair_kind string, step_version string, instruction_version string, "
                 f"mode string, score int, expected_score double, valid boolean, invalid_reason string, model {MODEL}, "
                 "created_at timestamp", "scores")  # fmt: skip
    # filter score >= 4: d00, d01, d02
    save([(d, f"How do {TOPICS[i]} work in everyday life?", BT, s, float(s), SC, FV, "threshold", 4.0, T0)
          for i, (d, s) in enumerate(zip(ids[:3], [5, 5, 4], strict=True))],
         "doc_id string, instruction string, instruction_version string, score int, expected_score double, "
         "score_version string, step_version string, filter_mode string, filter_value double, created_at timestamp",
         "pairs_filtered")  # fmt: skip
    # rewrite: d00, d01 ok, d02 truncated; distill: all three ok_untagged
    rewrite = [("d00", "rewrite", RW, FV, "q0", "Bees dance to share where flowers are, and the hive follows.", "ok"),
               ("d01", "rewrite", RW, FV, "q1", "Tides rise and fall twice a day because the moon pulls the sea.",
                "ok"),
               ("d02", "rewrite", RW, FV, "q2", "Granite forms when", "truncated")]  # fmt: skip
    distill = [(d, "distill", DS, FV, f"q{i}", f"From memory: {TOPICS[i]} are a broad topic with many sides.",
                "ok_untagged") for i, d in enumerate(ids[:3])]  # fmt: skip
    # d02's rewrite stopped at its 16-token cap (finish_reason 'length'): 1 of 3 rewrites, above the 5 % warning
    save([(*r, FAKE, T0, None, "length" if r[-1] == "truncated" else "stop", (16,)) for r in rewrite + distill],
         f"doc_id string, kind string, step_version string, source_version string, instruction string, "
         f"response string, status string, model {MODEL}, created_at timestamp, error string, finish_reason string, "
         "sampling struct<max_tokens:int>", "responses")  # fmt: skip
    save(
        [("p0", EX, "rewrite", None), ("p1", EX, "rewrite", None), ("s0", EX, "seed", None)],  # seed: not counted
        "pair_id string, step_version string, kind string, drop_reason string",
        "sft_pairs",
    )
    # lineage: which run read which (what the report selects its run from)
    save([r.as_row() for r in step_runs(schema)], lineage.schema(), "step_runs")
    with ThreadPoolExecutor(4) as pool:  # ten small tables: concurrent Spark jobs take a third of the time
        list(pool.map(lambda item: item[0].write.format("delta").saveAsTable(item[1]), frames))


def test_report_on_a_hand_built_run(spark, make_settings, tmp_path) -> None:
    out = tmp_path / "export"
    cfg = ReportConfig(tokenizer="embedded", diversity_examples=2, mauve_min_samples=2, output_dir=str(out))
    settings = make_settings(cfg)
    seed_run(spark, settings.tables.schema)
    outcome = run_job(get_job("report"), settings, spark)
    m = outcome.metrics

    # funnel: 14 records → 12 documents → 9 → 8 → 6 instructions → 5 valid scores → 3 kept → 2 rewrites → 2 exported
    expected = {"records_read": 14, "documents_ingested": 12, "kept_after_cleaning": 9, "kept_after_dedup": 8,
                "instructions_accepted": 6, "pairs_with_a_valid_score": 5, "pairs_kept_by_the_filter": 3,
                "rewritten_responses_accepted": 2, "pairs_exported": 2}  # fmt: skip
    assert {k: m[f"funnel.{k}"] for k in expected} == expected
    assert (
        m["funnel.documents_ingested.drop.malformed_json"] == 1
        and m["funnel.documents_ingested.drop.duplicate_id"] == 1
    )
    assert m["funnel.kept_after_cleaning.drop.too_short"] == 2 and m["funnel.kept_after_cleaning.drop.lang"] == 1
    assert m["funnel.instructions_accepted.drop.engine_error"] == 1
    assert (
        m["funnel.pairs_with_a_valid_score.drop.no_score"] == 1
        and m["funnel.pairs_kept_by_the_filter.drop.below_filter"] == 2
    )
    assert m["funnel.rewritten_responses_accepted.drop.truncated"] == 1
    drops = sum(v for k, v in m.items() if k.startswith("funnel.") and ".drop." in k and "documents_ingested" not in k)
    assert m["funnel.documents_ingested"] == m["funnel.pairs_exported"] + drops  # the funnel adds up

    # token lengths with SmolLM2's tokenizer, per kind (raw = the 3 filtered pairs with their documents)
    from backforth.models import resolve_tokenizer

    ref = resolve_tokenizer("embedded")
    raw_tokens, _ = count_tokens([doc(i) for i in range(3)], ref, 10**6)
    assert m["pairs.raw"] == 3 and m["pairs.rewrite"] == 2 and m["pairs.distill"] == 3
    assert m["tokens.raw.response.mean"] == pytest.approx(sum(raw_tokens) / 3, abs=0.01)
    assert m["tokens.raw.response.max"] == max(raw_tokens)
    rewrites = ["Bees dance to share where flowers are, and the hive follows.",
                "Tides rise and fall twice a day because the moon pulls the sea."]  # fmt: skip
    rw_tokens, _ = count_tokens(rewrites, ref, 10**6)
    assert m["tokens.rewrite.response.mean"] == pytest.approx(sum(rw_tokens) / 2, abs=0.01)

    # diversity at N = 2 (the configured N); distilled responses share a template, so fewer unique trigrams
    assert m["diversity.n"] == 2
    assert m["diversity.rewrite.response_trigrams"] == trigram_diversity(rewrites)["unique_trigrams"]
    assert m["diversity.distill.response_trigrams"] < m["diversity.rewrite.response_trigrams"]

    # judge: 5 of 6 valid, kept 3 of 6 scored, matched (5, 5, 4, 3) vs control 1 → AUC 1; both modes listed
    assert m["judge.valid_rate"] == pytest.approx(5 / 6, abs=1e-4) and m["judge.kept_share"] == 0.5
    assert m["judge.sanity_auc"] == 1.0 and m["judge.valid_rate.text"] == pytest.approx(5 / 6, abs=1e-4)
    assert m["judge.valid_rate.logprob"] == 1.0 and m["judge.score.5"] == 2

    # MAUVE: with a minimum of 2 per set, distill (3) vs rewrite (2) is computed; a kind's halves of 2 and 1 are not
    assert 0.0 <= m["mauve.distill_vs_rewrite"] <= 1.0 and 0.0 <= m["mauve.distill_vs_raw"] <= 1.0
    assert "mauve.rewrite_vs_rewrite" not in m

    # MLflow: every figure as a PNG, the tables, and the HTML page
    import mlflow

    client = mlflow.MlflowClient()
    plots = {a.path.split("/")[-1] for a in client.list_artifacts(outcome.run_id, "plots")}
    assert plots == {"funnel.png", "token_lengths.png", "diversity.png", "judge_scores.png", "mauve.png"}
    tables = {a.path.split("/")[-1] for a in client.list_artifacts(outcome.run_id, "tables")}
    assert tables == {f"{t}.json" for t in ("funnel", "token_lengths", "truncation", "diversity", "judge", "mauve",
                                            "samples")}  # fmt: skip
    assert [a.path for a in client.list_artifacts(outcome.run_id, "report")] == ["report/report.html"]
    tags = mlflow.get_run(outcome.run_id).data.tags
    assert "fake" in tags["backforth.quality_note"] and "plumbing, not quality" in tags["backforth.quality_note"]
    assert "too few samples" in tags["backforth.report.mauve_skipped"]

    # outputs cut at the token cap, per LLM step beside the lengths: backtranslate 0 of 7 generated (d07 was an engine
    # error; its rows carry no cap, the run none either), rewrite 1 of 3 at 16 tokens → warned; the score table has no
    # finish_reason (not listed)
    assert m["truncated.backtranslate"] == 0 and m["truncated_share.backtranslate"] == 0.0
    assert m["truncated.rewrite"] == 1 and m["truncated_share.rewrite"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["truncated_share.distill"] == 0.0 and "truncated.score" not in m
    assert "rewrite: 1 of 3 outputs (33.3%) stopped at the 16-token cap" in tags["backforth.report.truncation_warning"]
    assert "distill" not in tags["backforth.report.truncation_warning"]

    # the page: beside the export, every promised figure inline, nothing fetched from the network
    page = (out / "report.html").read_text(encoding="utf-8")
    for name in plots:
        assert re.search(rf'<img alt="{re.escape(name)}" src="data:image/png;base64,', page)
    assert not re.search(r"(src|href)=\"(https?:|//)", page)
    assert "Data produced by" in page and "fake" in page and "0.34" in page and "How do bees work" in page
    assert "(rejected: truncated)" in page  # d02's rewrite, shown beside its distillation
    lengths = page.split('id="token-lengths')[1].split("<h2")[0]  # the truncation table and warning sit there
    assert "Outputs that stopped at the token cap" in lengths
    assert '<p class="warning">rewrite: 1 of 3 outputs' in lengths
    assert "--set rewrite.sampling.max_tokens=32" in lengths and "<td>backtranslate</td>" in lengths
    assert m["pairs.raw"] == 3 and math.isfinite(m["tokens.raw.instruction.mean"])


def test_report_without_llm_steps_says_so(spark, make_settings, tmp_path) -> None:
    settings = make_settings(ReportConfig(tokenizer=None, output_dir=str(tmp_path)))
    schema = settings.tables.schema
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    spark.createDataFrame([("d0", "text one"), ("d1", "text two")], "doc_id string, text string").write.format(
        "delta"
    ).saveAsTable(f"{schema}.docs_raw")
    outcome = run_job(get_job("report"), settings, spark)
    assert outcome.metrics["funnel.documents_ingested"] == 2 and "pairs.raw" not in outcome.metrics
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "No generated data found" in page and "No rows for: raw document, rewritten, distilled" in page


def test_mauve_sanity_on_sentence_embeddings() -> None:
    """A set against itself is 1, two halves of one set score high, an unrelated set scores clearly lower."""
    import mauve

    nature = [f"The {a} near the {b} changes with the seasons, and walkers notice it in {c}."
              for a in ("river", "forest", "meadow", "hill", "lake", "marsh") for b in ("village", "coast", "valley")
              for c in ("spring", "autumn", "winter")]  # fmt: skip
    code = [f"def {f}(x): return x {op} {n}  # python helper number {n}"
            for f in ("scale", "shift", "clip") for op in ("*", "+", "-") for n in range(6)]  # fmt: skip
    a, b = embed_texts(nature), embed_texts(code)
    assert a.shape == (54, 384) and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    same = mauve_score(a, a, min_samples=20)
    halves_ = mauve_score(a[0::2], a[1::2], min_samples=20)
    other = mauve_score(a, b, min_samples=20)
    assert same.value == pytest.approx(1.0) and halves_.value > 0.5 and other.value < 0.2
    assert other.value < halves_.value <= same.value
    # without ties the area equals the reference implementation's own value
    out = mauve.compute_mauve(p_features=a, q_features=b, num_buckets=4, verbose=False)
    assert frontier_area(out.divergence_curve) == pytest.approx(out.mauve, abs=1e-9)
