"""The whole method in one command on the sample corpus, with the fake engine: tables, files, MLflow run tree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from backforth.pipeline import run_pipeline, summary

pytestmark = pytest.mark.spark


def start_over_connect(overrides: list[str], data: Path, out: Path) -> subprocess.Popen:
    """The same pipeline as a CLI process over Spark Connect (an in-process Connect server with Delta: the jobs see
    only the Connect API), in a data folder of its own; it runs while the classic session runs its copy."""
    args = [o for o in overrides if not o.startswith(("data_dir=", "export.output_dir="))]
    args += [f"data_dir={data}", f"export.output_dir={out}"]
    cmd = [str(Path(sys.executable).with_name("backforth")), "pipeline", "--remote", "local[2]"]
    cmd += [x for o in args for x in ("--set", o)]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SPARK_REMOTE")}
    data.mkdir(parents=True)
    log = open(data / "connect.log", "w")  # noqa: SIM115 - closed by the reader below
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, text=True)


def same_tables_as(spark, schema: str, proc: subprocess.Popen, data: Path) -> None:
    """The Connect run finished and wrote every table the classic run wrote, with the same keys (lineage rows: the
    same count; their run ids differ by nature)."""
    from backforth import catalog

    proc.wait(timeout=900)
    log = (data / "connect.log").read_text()
    assert proc.returncode == 0, log[-6000:]
    assert "Spark Connect session (local[2])" in log  # the CLI said which kind of session it used
    compared = []
    for name, entry in catalog.TABLES.items():
        if not spark.catalog.tableExists(f"{schema}.{name}"):
            continue
        ours = spark.table(f"{schema}.{name}")
        theirs = spark.read.format("delta").load(str(data / "warehouse" / f"{schema}.db" / name))
        key = [k for k in entry.key if k in ours.columns] + (["step_version"] if entry.versioned else [])
        assert theirs.count() == ours.count(), name
        if name != "step_runs":
            assert theirs.select(*key).exceptAll(ours.select(*key)).count() == 0, name
            assert ours.select(*key).exceptAll(theirs.select(*key)).count() == 0, name
        compared.append(name)
    assert {"docs_raw", "docs_dedup", "instructions", "scores", "responses", "sft_pairs"} <= set(compared)


@pytest.mark.timeout(1200)  # twelve step runs (the pipeline, distill, a second partial pipeline), and the same
# pipeline over Spark Connect in a second process beside the first: ~10 min on 2 cores
def test_pipeline_runs_every_step_and_exports_sft_files(
    spark, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    schema = f"p_{uuid.uuid4().hex[:8]}"
    out = tmp_path / "export"
    overrides = [
        f"data_dir={data_dir}",
        f"tables.schema={schema}",
        "job.model=fake",
        "score.model_options.options.reply='The answer is on topic. Score: {digit}'",  # quoted: YAML-typed values
        "filter.mode=top_fraction",
        "filter.fraction=0.5",
        "rewrite.model_options.options.reply='Here it is. [RES] A clear answer about {words}. [/RES]'",
        f"export.output_dir={out}",
        "export.validation_fraction=0.2",
    ]
    connect_data = tmp_path / "over-connect"
    connect = start_over_connect(overrides, connect_data, tmp_path / "export-over-connect")
    result = run_pipeline("local", overrides, None)
    outcomes = result["outcomes"]
    assert list(outcomes) == ["ingest", "clean", "dedup", "seed", "backtranslate", "score", "filter", "rewrite",
                              "export", "report"]  # fmt: skip
    kept = outcomes["dedup"].metrics["docs_kept"]
    assert outcomes["backtranslate"].metrics["docs_rows"] == kept
    scores = spark.table(f"{schema}.scores").where("pair_kind = 'matched'")
    assert scores.count() == outcomes["backtranslate"].metrics["outcome.accepted"]
    assert outcomes["score"].metrics["valid_rate"] == 1.0
    filtered = spark.table(f"{schema}.pairs_filtered").count()
    assert filtered == round(0.5 * scores.count())
    responses = spark.table(f"{schema}.responses").collect()
    assert len(responses) == filtered and {r["status"] for r in responses} == {"ok"}
    assert all(r["response"].startswith("A clear answer about") for r in responses)
    exported = int(outcomes["export"].metrics["pairs_exported"])
    seeded = int(outcomes["export"].metrics["seed_pairs_exported"])
    assert exported == filtered and seeded == outcomes["seed"].metrics["pairs_new"] > 0  # every seed pair, mixed in

    # the files load as JSON lines / Parquet with chat messages and the papers' tag
    lines = [json.loads(x) for f in sorted((out / "jsonl").glob("*/*.json")) for x in f.read_text().splitlines()]
    assert len(lines) == exported + seeded and sum(x["kind"] == "seed" for x in lines) == seeded
    first = next(x for x in lines if x["kind"] == "rewrite")
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["messages"][0]["content"].endswith("Answer with knowledge from web search.")
    assert first["messages"][1]["content"] == first["response"] and first["doc_id"] and first["url"] is not None
    assert {x["split"] for x in lines} <= {"train", "validation"}
    import pyarrow.parquet as pq

    table = pq.read_table(str(out / "parquet" / "train"))
    assert table.num_rows == sum(1 for x in lines if x["split"] == "train")
    card = (out / "README.md").read_text()
    assert "| documents ingested |" in card and f"| pairs exported | {exported} |" in card

    # one parent run with a nested run per step
    import mlflow

    children = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{result['run_id']}'"
    )
    assert sorted(children["tags.backforth.job"]) == sorted(outcomes)
    text = summary(result)
    assert "pairs exported" in text and "Three sample pairs" in text and result["run_id"] in text
    # one catalog, one lineage: the summary, the dataset card and the funnel give the same numbers for this run
    from backforth import catalog

    funnel = catalog.counts(catalog.funnel(spark, result["settings"]))
    in_summary = {m[1]: int(m[2]) for m in re.finditer(r"^  (\S.*?)\s{2,}(\d+)", text, re.M)}
    stages = card.split("## Counts per stage")[1]
    in_card = {m[1]: int(m[2]) for m in re.finditer(r"^\| ([^|]+?) \| (\d+) \|$", stages, re.M)}
    assert funnel == in_summary == in_card and len(funnel) == 8 and funnel["pairs exported"] == exported
    assert funnel["kept after dedup"] == kept and funnel["pairs kept by the filter"] == filtered
    # the report: its page beside the exported files, its funnel ending at the exported pairs
    assert (out / "report.html").is_file() and f"Report: {out.resolve() / 'report.html'}" in text
    assert outcomes["report"].metrics["funnel.pairs_exported"] == exported

    # the same pipeline over Spark Connect wrote the same tables
    same_tables_as(spark, schema, connect, connect_data)

    # the distillation baseline answers the same instructions without documents, beside the rewrites
    distill = overrides + ["distill.model_options.options.reply='A direct answer about {words} from memory.'"]
    baseline = run_pipeline("local", distill, None, steps=["distill"])["outcomes"]["distill"]
    rows = spark.table(f"{schema}.responses").where("kind = 'distill'").collect()
    assert len(rows) == filtered == baseline.metrics["pairs_rows"]
    assert {r["status"] for r in rows} == {"ok_untagged"} and all("from memory" in r["response"] for r in rows)
    assert {r["instruction"] for r in rows} == {r["instruction"] for r in responses}

    # a second run adds nothing anywhere
    again = run_pipeline("local", overrides, None)["outcomes"]
    assert again["backtranslate"].metrics["docs_rows"] == 0 and again["score"].metrics["pairs_rows"] == 0
    assert again["rewrite"].metrics["pairs_rows"] == 0
    assert spark.table(f"{schema}.sft_pairs").where("kind <> 'seed'").count() == exported

    # the notebooks run here as plain Python files against the same tables (as `python notebooks/...` would)
    import runpy
    import sys

    flags = ["--set", f"data_dir={data_dir}", "--set", f"tables.schema={schema}"]
    printed = {}
    notebooks = Path(__file__).resolve().parents[2] / "notebooks"
    for name in ("explore/funnel", "explore/scores", "explore/samples", "run_job"):
        query = "SELECT count(*) AS exported_rows FROM sft_pairs WHERE kind <> 'seed'"
        extra = ["sql", query] if name == "run_job" else []
        monkeypatch.setattr(sys, "argv", [name, *extra, *flags])
        runpy.run_path(str(notebooks / f"{name}.py"), run_name="__main__")
        printed[name] = capsys.readouterr().out
    ingested = int(outcomes["ingest"].metrics["docs_inserted"])
    shown = " ".join(printed["explore/funnel"].split())
    for label, n in funnel.items():  # the notebook's funnel is the catalog's too
        assert f"{label} {n}" in shown
    assert f"ingested {ingested}" in shown and f"exported {exported}" in shown
    assert "dup_exact" in printed["explore/funnel"] and "matched" in printed["explore/scores"]
    assert (data_dir / "notebooks" / "score_histogram.png").stat().st_size > 1000
    accepted = int(outcomes["backtranslate"].metrics["outcome.accepted"])
    samples = printed["explore/samples"]
    assert f"{min(5, accepted)} sample pairs" in samples and "INSTRUCTION" in samples
    assert f"|{exported}|" in printed["run_job"].replace(" ", "")
