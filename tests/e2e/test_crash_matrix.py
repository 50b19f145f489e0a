"""The crash matrix: every step that writes is killed with SIGKILL at its commit boundaries and in the middle of its
work, rerun, and the tables, exported files and registered models are then compared with an uninterrupted run's.

Each kill is real: the CLI waits at a named point (``BACKFORTH_PAUSE_AT``, backforth/crash.py) and the test sends
SIGKILL to its whole process group from outside — the Python driver, the JVM and the Python workers, with other
threads (shards generating and committing, Spark jobs) still running, as ``kill -9`` finds them. The kills are
chained in one data folder in pipeline order: the run after a kill resumes the killed step and goes on to the next
point, so every kill is followed by a rerun of the step it hit, and ``pipeline --check`` runs the consistency check
after every step that completes. A last pipeline over every step then finishes the folder and checks it again.

Slow by nature (~20 minutes on 2 cores: 25 CLI runs, each a JVM start, plus the reference pipeline): one test, the
pipeline's own fake engine, the bundled sample, a tiny random model for finetune. The suite runs it; while iterating,
``pytest -m "not slow"`` leaves it out. The README's "What survives what" table is this matrix's result."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

STEPS = ["ingest", "clean", "dedup", "seed", "backtranslate", "score", "filter", "rewrite", "distill", "export",
         "finetune", "report"]  # fmt: skip
# In pipeline order; (step, point). Commit boundaries of multi-commit steps, a shard boundary of every LLM step
# (other shards still generating), and "everything written, lineage not yet finished" for the rest.
POINTS = [
    "ingest.after_docs", "ingest.after_rejects",
    "clean.before_commit", "clean.before_finish",
    "dedup.after_docs", "dedup.before_finish",
    "seed.after_pairs", "seed.before_finish",
    "backtranslate.after_shard", "backtranslate.before_finish",
    "score.after_shard", "score.before_finish",
    "filter.started", "filter.before_finish",
    "rewrite.after_shard",
    "distill.after_shard", "distill.before_finish",
    "export.after_table", "export.after_jsonl",
    "finetune.after_log_model", "finetune.after_register", "finetune.after_direction",
    "report.before_finish",
]  # fmt: skip
# Columns that record when or in which batch a row was written, or how long the engine took: they differ between
# any two runs. Everything else must be equal.
VOLATILE = {"ingest_batch", "ingested_at", "cleaned_at", "deduped_at", "created_at", "engine_s", "batch_id",
            "seed_batch", "added_at", "exported_at"}  # fmt: skip
KEYS = {"docs_raw": ["doc_id"], "ingest_rejects": ["file", "position", "reason"], "ingest_files": ["file"],
        "docs_clean": ["doc_id"], "docs_dedup": ["doc_id"], "dedup_signatures": ["doc_id"],
        "seed_pairs": ["pair_id"], "seed_rejects": ["file", "position", "reason"],
        "instructions": ["doc_id", "step_version"], "scores": ["doc_id", "pair_kind", "step_version"],
        "pairs_filtered": ["doc_id", "step_version"], "responses": ["doc_id", "step_version"],
        "sft_pairs": ["pair_id", "step_version"]}  # fmt: skip


def settings_args(data: Path, tiny_model: Path) -> list[str]:
    return [
        "--set", f"data_dir={data}", "--set", "job.model=fake", "--set", "job.shard_rows=12",
        "--set", f"finetune.presets.cpu.base_model={tiny_model}", "--set", "finetune.presets.cpu.max_steps=2",
        "--set", "finetune.presets.cpu.batch_size=4", "--set", "finetune.presets.cpu.micro_batch_size=2",
        "--set", "finetune.limit=8",
    ]  # fmt: skip


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def pipeline(steps: list[str], data: Path, tiny_model: Path, log: Path, pause_at: str | None = None) -> bool:
    """Run ``backforth pipeline --check`` over ``steps``; with ``pause_at``, SIGKILL its process group when it gets
    there. True if it was killed; a run that ends on its own must succeed (and then must not have had a point)."""
    env = cli_env()
    marker = log.with_suffix(".paused")
    if pause_at:
        env.update(BACKFORTH_PAUSE_AT=pause_at, BACKFORTH_PAUSE_FILE=str(marker))
    cmd = [str(BIN / "backforth"), "pipeline", "--check", "--steps", ",".join(steps), *settings_args(data, tiny_model)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        while proc.poll() is None:
            if marker.exists():
                os.killpg(proc.pid, signal.SIGKILL)  # driver, JVM and workers: everything the run started
                proc.wait()
                _, name = marker.read_text().split()
                assert name == pause_at
                return True
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError(f"{cmd} still running after 600 s; log {log}")
            time.sleep(0.1)
    text = log.read_text()
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{text[-4000:]}"
    assert not pause_at, f"{pause_at} was never reached by {steps}:\n{text[-3000:]}"
    return False


def canonical(value):
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def tables(data: Path) -> dict[str, dict[tuple, str]]:
    """Every Delta table of the folder (read with delta-rs, no JVM): key → the row's deterministic columns as JSON."""
    from deltalake import DeltaTable

    out = {}
    for folder in sorted((data / "warehouse" / "backforth.db").iterdir()):
        if folder.name == "step_runs":
            continue
        rows = DeltaTable(str(folder)).to_pyarrow_table().to_pylist()
        key = KEYS[folder.name]
        by_key: dict[tuple, str] = {}
        for row in rows:
            k = tuple(row[c] for c in key)
            assert k not in by_key, f"{folder.name}: duplicate key {k}"
            by_key[k] = json.dumps(canonical({c: v for c, v in row.items() if c not in VOLATILE}), default=str)
        out[folder.name] = by_key
    return out


def finished_runs(data: Path) -> list[tuple[str, str]]:
    from deltalake import DeltaTable

    rows = DeltaTable(str(data / "warehouse" / "backforth.db" / "step_runs")).to_pyarrow_table().to_pylist()
    assert not [r for r in rows if r["status"] == "failed"]
    return sorted((r["step"], r["step_version"] or "") for r in rows if r["status"] == "finished")


def exported_files(data: Path) -> dict[str, list[str]]:
    """The export folder's files: JSONL lines and Parquet rows (sorted; part-file names differ), the card's text."""
    import pyarrow.parquet as pq

    out = {}
    for kind in (data / "export").iterdir():
        for split in ("train", "validation"):
            lines = [ln for f in sorted((kind / "jsonl" / split).glob("*.json")) for ln in f.read_text().splitlines()]
            out[f"{kind.name}/jsonl/{split}"] = sorted(lines)
            rows = [json.dumps(r, sort_keys=True, default=str) for f in sorted((kind / "parquet" / split).glob(
                "*.parquet")) for r in pq.read_table(f).to_pylist()]  # fmt: skip
            out[f"{kind.name}/parquet/{split}"] = sorted(rows)
        out[f"{kind.name}/README.md"] = [(kind / "README.md").read_text()]
    return out


def registry(data: Path) -> dict[str, list[tuple]]:
    """Registered models: per name, its versions' backforth tags (the run ids differ) and the alias's version."""
    db = sqlite3.connect(data / "mlflow.db")
    try:
        versions = db.execute("SELECT name, version, status FROM model_versions ORDER BY name, version").fetchall()
        tags = db.execute("SELECT name, version, key, value FROM model_version_tags WHERE key LIKE 'backforth.%' "
                          "AND key NOT IN ('backforth.steps')").fetchall()  # fmt: skip
        aliases = db.execute("SELECT name, alias, version FROM registered_model_aliases").fetchall()
    finally:
        db.close()
    out: dict[str, list[tuple]] = {}
    for name, version, status in versions:
        mine = sorted((k, v) for n, ver, k, v in tags if n == name and int(ver) == int(version))
        out.setdefault(name, []).append((int(version), status, tuple(mine)))
    for name, alias, version in aliases:
        out.setdefault(name, []).append(("alias", alias, int(version)))
    return out


def differences(reference: dict, other: dict) -> list[str]:
    found = []
    for name in sorted(set(reference) | set(other)):
        a, b = reference.get(name), other.get(name)
        if a == b:
            continue
        if not isinstance(a, dict) or not isinstance(b, dict):
            found.append(f"{name}: {str(a)[:300]} != {str(b)[:300]}")
            continue
        missing, extra = set(a) - set(b), set(b) - set(a)
        changed = [k for k in set(a) & set(b) if a[k] != b[k]]
        found.append(
            f"{name}: {len(missing)} missing (e.g. {sorted(missing)[:2]}), {len(extra)} extra "
            f"(e.g. {sorted(extra)[:2]}), {len(changed)} changed"
            + (f" (e.g. {changed[0]}: {a[changed[0]][:400]} != {b[changed[0]][:400]})" if changed else "")
        )
    return found


@pytest.mark.timeout(3600)
def test_kill_at_every_commit_boundary_then_rerun_gives_the_uninterrupted_result(
    tmp_path: Path, tiny_model: Path
) -> None:
    reference, crashed, logs = tmp_path / "reference", tmp_path / "crashed", tmp_path / "logs"
    logs.mkdir()
    assert not pipeline(STEPS, reference, tiny_model, logs / "reference.log")

    position = 0  # the step the next run starts at: the one the last kill hit
    for i, point in enumerate(POINTS):
        step = point.split(".")[0]
        steps = STEPS[position : STEPS.index(step) + 1]
        assert pipeline(steps, crashed, tiny_model, logs / f"{i:02d}-{point}.log", pause_at=point), point
        position = STEPS.index(step)
    assert not pipeline(STEPS[position:], crashed, tiny_model, logs / "resume.log")

    problems = differences(tables(reference), tables(crashed))
    problems += differences({"runs": finished_runs(reference)}, {"runs": finished_runs(crashed)})
    problems += differences(exported_files(reference), exported_files(crashed))
    problems += differences(registry(reference), registry(crashed))
    assert not problems, "\n".join(problems)
