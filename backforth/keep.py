"""Intermediate results computed once and read back, cut loose from their lineage: a local checkpoint (executor
storage) where the compute allows it; a scratch Delta table in the job's schema where it does not (Databricks
Serverless refuses caching and checkpoints), dropped when the job ends.

``spark.checkpoint`` in the config picks: ``auto`` (a local checkpoint; the first refusal switches the process to
scratch tables, said once in the log), ``local`` or ``table``. Jobs call :func:`keep` and :func:`release`; the runner
calls :func:`configure` before a job and :func:`drop_scratch` after it, whatever happened.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from backforth.tables import quote

log = logging.getLogger("backforth.keep")
MODES = ("auto", "local", "table")
REFUSALS = ("NOT_SUPPORTED_WITH_SERVERLESS", "is not supported on serverless", "LOCAL_CHECKPOINT")


@dataclass
class State:
    mode: str = "auto"  # as configured
    refused: bool = False  # this process's compute refused a local checkpoint (auto then uses scratch tables)
    schema: str | None = None  # where scratch tables go; None = the session's current schema
    tables: dict[int, str] = field(default_factory=dict)  # id(DataFrame) → its scratch table, for release
    # every scratch table not yet dropped: an id above can be reused once its DataFrame is collected, so the
    # mapping alone could forget a table
    undropped: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


STATE = State()


def configure(mode: str, schema: str | None) -> None:
    """Before a job: the mode from the config and the schema its scratch tables go to."""
    if mode not in MODES:
        from backforth.errors import ConfigError

        raise ConfigError(f"spark.checkpoint: {mode!r} is not one of {', '.join(MODES)}")
    with STATE.lock:
        STATE.mode, STATE.schema = mode, schema


def keep(df: Any) -> Any:
    """``df`` computed now and read back from storage (eager, like ``localCheckpoint()``)."""
    if STATE.mode == "local" or (STATE.mode == "auto" and not STATE.refused):
        try:
            return df.localCheckpoint()
        except Exception as exc:
            if STATE.mode == "local" or not any(r.lower() in str(exc).lower() for r in REFUSALS):
                raise
            log.warning("this compute refuses local checkpoints: intermediate results go to scratch Delta tables")
            with STATE.lock:
                STATE.refused = True
    return to_table(df)


def to_table(df: Any) -> Any:
    """``df`` written to a scratch Delta table and read back from it."""
    spark = df.sparkSession
    schema = STATE.schema or spark.catalog.currentDatabase()
    name = quote(f"{schema}._backforth_scratch_{uuid.uuid4().hex[:12]}")
    df.write.format("delta").mode("overwrite").saveAsTable(name)
    kept = spark.table(name)
    with STATE.lock:
        STATE.tables[id(kept)] = name
        STATE.undropped.append(name)
    return kept


def release(df: Any) -> None:
    """Free what :func:`keep` holds for ``df``: its scratch table, or its checkpoint blocks."""
    with STATE.lock:
        name = STATE.tables.pop(id(df), None)
    if name is None:
        df.unpersist()
    else:
        df.sparkSession.sql(f"DROP TABLE IF EXISTS {name}")
        with STATE.lock:
            if name in STATE.undropped:
                STATE.undropped.remove(name)


def drop_scratch(spark: Any) -> list[str]:
    """After a job: drop the scratch tables it did not release; returns their names."""
    with STATE.lock:
        names, STATE.tables, STATE.undropped = list(STATE.undropped), {}, []
    for name in names:
        spark.sql(f"DROP TABLE IF EXISTS {name}")
    return names
