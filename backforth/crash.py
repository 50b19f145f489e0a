"""A test hook: die at a named point of a step, as a kill there would, to test what the next run makes of it.

``BACKFORTH_CRASH_AT=dedup.after_docs`` (several names: comma-separated) makes :func:`point` SIGKILL the process
when the step reaches that point: no ``finally``, no lineage update, no clean-up, exactly what ``kill -9`` leaves.
``BACKFORTH_PAUSE_AT=<names>`` with ``BACKFORTH_PAUSE_FILE=<path>`` instead writes ``<pid> <name>`` to that file
and waits there for ever, for a test to ``kill -9`` the whole process group from outside (the JVM and the Python
workers with it, and other threads still running, as a real kill finds them). Without the variables every point is
a no-op. Points are named ``<step>.<where>``:

- ``<step>.started``: the step's ``step_runs`` row says running; nothing else written (every step).
- ``<step>.before_finish``: everything the step writes is committed and logged; its ``step_runs`` row and MLflow
  run still say running (every step).
- ``ingest.after_docs``: docs_raw committed; ingest_rejects and ingest_files not yet.
- ``ingest.after_rejects``: docs_raw and ingest_rejects committed; ingest_files not yet.
- ``clean.before_commit``: the documents are cleaned (kept in storage), docs_clean not yet written.
- ``dedup.after_docs``: docs_dedup committed, dedup_signatures not yet.
- ``seed.after_pairs``: seed_pairs committed, seed_rejects not yet.
- ``<llm step>.after_shard``: the step's first shard is committed; the others are generating or queued.
- ``export.after_table``: sft_pairs committed, no file written yet.
- ``export.after_jsonl``: the JSONL files of the train split written; Parquet and the dataset card not yet.
- ``finetune.after_log_model``: a direction's model is logged to its run, not registered yet.
- ``finetune.after_register``: its registry version exists with its tags; description and alias not set yet.
- ``finetune.after_direction``: a direction's version is registered and tagged; the next direction not started.
"""

from __future__ import annotations

import os
import signal
import sys
import time

ENV = "BACKFORTH_CRASH_AT"
PAUSE_ENV, PAUSE_FILE_ENV = "BACKFORTH_PAUSE_AT", "BACKFORTH_PAUSE_FILE"


def named(variable: str, name: str) -> bool:
    wanted = os.environ.get(variable)
    return bool(wanted) and name in {p.strip() for p in wanted.split(",")}


def point(name: str) -> None:
    """Kill this process now if ``BACKFORTH_CRASH_AT`` names ``name``, or wait to be killed if
    ``BACKFORTH_PAUSE_AT`` does; otherwise do nothing."""
    if named(ENV, name):
        print(f"[backforth] {ENV}={name}: killing this process", file=sys.stderr, flush=True)
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
    if named(PAUSE_ENV, name) and os.environ.get(PAUSE_FILE_ENV):
        print(f"[backforth] {PAUSE_ENV}={name}: waiting to be killed", file=sys.stderr, flush=True)
        marker = os.environ[PAUSE_FILE_ENV]
        with open(marker + ".tmp", "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {name}\n")
        os.replace(marker + ".tmp", marker)  # the waiting test sees the whole line or nothing
        while True:
            time.sleep(60)
