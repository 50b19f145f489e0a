"""Seed pairs for the backward and forward models: OASST1 trees or instruction/response JSONL → seed_pairs.

Input: files named by ``job.inputs``: ``oasst`` (OpenAssistant OASST1's published tree layout, JSONL or gzipped
JSONL: one tree per line, a prompter root message with nested ``replies``) or ``jsonl`` (one pair per line, fields
named by ``instruction_field`` and ``response_field``). From a tree the job keeps what the papers keep (METHOD step
0): the first turn, in one of ``languages``, answered by the assistant reply ranked 0. Output: ``seed_pairs`` keyed by
``pair_id`` (a hash of instruction and response) and ``seed_rejects`` keyed by (file, position, reason): every input
that gives no pair is a row there with its reason and raw text, and a ``rejects.<reason>`` metric. Re-running adds
nothing. Seed sets are small (OASST1 has about 10,000 trees), so files are read on the driver.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from backforth import crash
from backforth.config import ConfigError
from backforth.readers import json_objects, plan_files, reject
from backforth.registry import JobResult, job
from backforth.tables import ensure_table, insert_new, qualify

log = logging.getLogger("backforth.seed")

PAIRS_SCHEMA = (
    "pair_id string not null, instruction string, response string, source string, source_format string, "
    "source_id string, reply_id string, lang string, file string, position long, seed_batch string, "
    "added_at timestamp"
)
REJECTS_SCHEMA = (
    "file string, position long, reason string, detail string, raw string, source_format string, "
    "seed_batch string, added_at timestamp"
)


@dataclass
class SeedInput:
    """One input file, folder or glob in one format."""

    path: str
    format: Literal["oasst", "jsonl"]
    source: str | None = None  # label stored in seed_pairs.source (default: the format)
    instruction_field: str = "instruction"  # jsonl only
    response_field: str = "response"
    id_field: str | None = "id"


@dataclass
class SeedConfig:
    inputs: list[SeedInput] = field(default_factory=list)
    output_table: str = "seed_pairs"
    rejects_table: str = "seed_rejects"
    languages: list[str] = field(default_factory=lambda: ["en"])  # OASST lang codes kept (papers: English only)
    best_rank: int = 0  # the reply rank kept (0 = the reviewers' best)


# -- pure rules (unit-tested without Spark) ----------------------------------------------------------------------
def pair_id(instruction: str, response: str) -> str:
    """128-bit hex id of a pair's text: the same pair from two files or two trees is one row."""
    return hashlib.sha256(f"{instruction}\x00{response}".encode()).hexdigest()[:32]


def refuse(reason: str, detail: str) -> dict[str, Any]:
    return {"kind": "reject", "reason": reason, "detail": detail}


def pair_from_tree(obj: dict[str, Any], languages: list[str], best_rank: int = 0) -> dict[str, Any]:
    """One OASST tree → ``{"kind": "pair", ...}`` (first turn, language kept, reply of ``best_rank``) or a reject.

    Accepts the published tree layout (``{"message_tree_id", "prompt": {root message}}``) or a bare root message.
    Reasons: ``not_a_tree``, ``deleted``, ``other_language``, ``empty_text``, ``no_reply``, ``missing_rank``."""
    root = obj.get("prompt") if isinstance(obj.get("prompt"), dict) else obj
    if not isinstance(root, dict) or "replies" not in root or "role" not in root:
        return refuse("not_a_tree", "no root message with 'role' and 'replies' (expected OASST's tree layout)")
    if root.get("role") != "prompter":
        return refuse("not_a_tree", f"root message role is {root.get('role')!r}, not 'prompter'")
    tree_id = str(obj.get("message_tree_id") or root.get("message_tree_id") or root.get("message_id") or "")
    if root.get("deleted"):
        return refuse("deleted", "the prompter's first message is deleted")
    if root.get("lang") not in languages:
        return refuse("other_language", f"first message lang {root.get('lang')!r} not in {languages}")
    instruction = root.get("text")
    if not isinstance(instruction, str) or not instruction.strip():
        return refuse("empty_text", "the prompter's first message has no text")
    replies = [r for r in root.get("replies") or [] if isinstance(r, dict) and r.get("role") == "assistant"]
    if not replies:
        return refuse("no_reply", "no assistant reply to the first message")
    live = [r for r in replies if not r.get("deleted")]
    if not live:
        return refuse("deleted", f"all {len(replies)} assistant replies are deleted")
    ranked = [r for r in replies if isinstance(r.get("rank"), int) and not isinstance(r.get("rank"), bool)]
    best = [r for r in ranked if r["rank"] == best_rank]
    if not best:
        ranks = sorted({r["rank"] for r in ranked})
        detail = f"no reply ranked {best_rank} (ranks: {ranks})" if ranks else f"{len(replies)} replies, none ranked"
        return refuse("missing_rank", detail)
    reply = best[0]
    if reply.get("deleted"):
        return refuse("deleted", f"the reply ranked {best_rank} is deleted")
    if reply.get("lang", root.get("lang")) not in languages:
        return refuse("other_language", f"the reply ranked {best_rank} has lang {reply.get('lang')!r}")
    response = reply.get("text")
    if not isinstance(response, str) or not response.strip():
        return refuse("empty_text", f"the reply ranked {best_rank} has no text")
    return {
        "kind": "pair",
        "instruction": instruction.strip(),
        "response": response.strip(),
        "source_id": tree_id or None,
        "reply_id": None if reply.get("message_id") is None else str(reply.get("message_id")),
        "lang": root.get("lang"),
    }


def pair_from_plain(obj: dict[str, Any], spec: SeedInput) -> dict[str, Any]:
    """One JSON object with instruction and response fields → a pair, or ``missing_field``, ``bad_field_type``,
    ``empty_text``."""
    values = {}
    for name in (spec.instruction_field, spec.response_field):
        value = obj.get(name)
        if value is None:
            return refuse("missing_field", f"no '{name}' field")
        if not isinstance(value, str):
            return refuse("bad_field_type", f"'{name}' is {type(value).__name__}")
        if not value.strip():
            return refuse("empty_text", f"'{name}' is blank")
        values[name] = value.strip()
    source_id = obj.get(spec.id_field) if spec.id_field else None
    return {
        "kind": "pair",
        "instruction": values[spec.instruction_field],
        "response": values[spec.response_field],
        "source_id": None if source_id is None else str(source_id),
        "reply_id": None,
        "lang": obj.get("lang"),
    }


def read_seed_file(path: str, spec: SeedInput, languages: list[str], best_rank: int) -> Iterator[dict[str, Any]]:
    """Pairs and rejects of one file, each with its 1-based line number as ``position``."""
    for number, obj, text, rejected in json_objects(path):
        if obj is None:
            yield rejected
            continue
        out = pair_from_tree(obj, languages, best_rank) if spec.format == "oasst" else pair_from_plain(obj, spec)
        if out["kind"] == "reject":
            yield reject(number, out["reason"], out["detail"], text)
        else:
            yield {**out, "position": number}


def collect(cfg: SeedConfig) -> tuple[list[dict], list[dict], Counter]:
    """Every input's pairs (first occurrence of each pair_id) and rejects (``duplicate_pair`` for later copies)."""
    pairs: list[dict] = []
    rejects: list[dict] = []
    counts: Counter = Counter()
    seen: dict[str, tuple[str, int]] = {}
    for spec, path, _, _ in plan_files(cfg.inputs):
        for rec in read_seed_file(path, spec, cfg.languages, cfg.best_rank):
            counts["records"] += 1
            base = {"file": path, "source_format": spec.format}
            if rec["kind"] == "reject":
                rejects.append({**rec, **base})
                continue
            pid = pair_id(rec["instruction"], rec["response"])
            if pid in seen:
                first = seen[pid]
                detail = f"same pair as {first[0]}:{first[1]}"
                rejects.append({**reject(rec["position"], "duplicate_pair", detail, json.dumps(rec)), **base})
                continue
            seen[pid] = (path, rec["position"])
            pairs.append({**rec, **base, "pair_id": pid, "source": spec.source or spec.format})
    return pairs, rejects, counts


def as_row(record: dict[str, Any], schema: str, batch: str, now: datetime) -> tuple:
    """A record as a tuple in ``schema``'s column order; the batch id and time fill the last two columns."""
    names = [c.split(" ")[0] for c in schema.split(", ")]
    return tuple(record.get(n) for n in names[:-2]) + (batch, now)


@job("seed", config=SeedConfig)
def run(spark: Any, settings: Any) -> JobResult:
    """Read the seed inputs, insert new pairs into seed_pairs and every rejected input into seed_rejects."""
    cfg: SeedConfig = settings.job
    if not cfg.inputs:
        raise ConfigError("job.inputs is empty: name at least one seed file (see conf/jobs/seed.yaml)")
    pairs, rejects, counts = collect(cfg)
    batch, now = uuid.uuid4().hex, datetime.now(timezone.utc)
    target, rejects_fqn = qualify(settings, cfg.output_table), qualify(settings, cfg.rejects_table)
    ensure_table(spark, target, spark.createDataFrame([], PAIRS_SCHEMA).schema, "seed (instruction, response) pairs")
    ensure_table(spark, rejects_fqn, spark.createDataFrame([], REJECTS_SCHEMA).schema, "seed inputs without a pair")
    inserted = 0
    if pairs:
        df = spark.createDataFrame([as_row(p, PAIRS_SCHEMA, batch, now) for p in pairs], PAIRS_SCHEMA)
        inserted = insert_new(spark, df, target, ["pair_id"]).get("num_inserted_rows", 0)
    crash.point("seed.after_pairs")
    if rejects:
        df = spark.createDataFrame([as_row(r, REJECTS_SCHEMA, batch, now) for r in rejects], REJECTS_SCHEMA)
        insert_new(spark, df, rejects_fqn, ["file", "position", "reason"])
    reasons = Counter(r["reason"] for r in rejects)
    metrics: dict[str, float] = {
        "records_read": counts["records"],
        "pairs_read": len(pairs),
        "pairs_new": inserted,
        "pairs_total": spark.table(target).count(),
        "rejects": len(rejects),
        **{f"rejects.{k}": v for k, v in reasons.items()},
    }
    log.info("seed: %d pairs (%d new), %d rejected: %s", len(pairs), inserted, len(rejects), dict(reasons))
    return JobResult(metrics, tags={"backforth.seed_languages": ",".join(cfg.languages)})
